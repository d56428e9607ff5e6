"""The demo-corpus builder behind the fetch_demo stage, one module per job.

- `common`: the build record (metadata rows, SOURCES entries), FetchError and small file helpers;
- `apt`: `apt-get download` + `dpkg-deb -x` as an ordinary user, and licences from copyright files;
- `debian`: which clips of the Debian speech packages (asterisk prompts, klettres, codec2) are kept;
- `tts`: the offline TTS attack engines (piper, espeak-ng) and the clip loop over transcripts;
- `synthetic`: formant-synthesised voices and spoof systems (the tiny profile: no apt, no TTS).

Every helper takes plain values (counts, bounds, an rng), never the stage's params class, so that
nothing here imports `pipeline.fetch_demo`. Writes only inside the build directory it is given.
"""
