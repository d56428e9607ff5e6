"""The demo-corpus builder behind the fetch_demo stage, one module per job.

- `common`: the build record (metadata rows, SOURCES entries), FetchError and small file helpers;
- `apt`: `apt-get download` + `dpkg-deb -x` as an ordinary user, and licences from copyright files;
- `debian`: which clips of the Debian speech packages (asterisk prompts, klettres, codec2) are kept;
- `packs`: the asterisk-prompt-* voice packs and ktuberling-data;
- `tts`: the offline TTS attack engines (piper, espeak-ng), training vs unseen attack systems and the
  attack loop over bona fide transcripts (a TTS clip takes its source clip's speaker);
- `festival`: Festival voices run from unpacked Debian packages (training attacks);
- `synthetic`: formant-synthesised voices and spoof systems (the tiny profile: no apt, no TTS).

Every helper takes plain values (counts, bounds, an rng), never the stage's params class, so that
nothing here imports `pipeline.fetch_demo`. Writes only inside the build directory it is given.
"""
