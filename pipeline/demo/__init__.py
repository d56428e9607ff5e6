"""The demo-corpus builder behind the fetch_demo stage, one module per job.

- `common`: the build record (metadata rows, SOURCES entries), FetchError, the bona fide `Clip`s a source
  offers and their per-speaker selection, small file helpers;
- `apt`: `apt-get download` + `dpkg-deb -x` as an ordinary user, and licences from copyright files;
- `debarchive`: one file of a .deb read in place (random access into its multi-block data.tar.xz);
- `reserved`: the sources reserved for independent evaluation, and the guard that refuses them;
- `speakers`: folder voices merged into one speaker id where one person recorded several;
- `debian`: the asterisk G.722 prompts, klettres and codec2; `packs`: the asterisk-prompt-* voice packs and
  ktuberling-data (with the CereVoice TTS of its nn folder); `tuxpaint`: Tux Paint's spoken descriptions;
  `fillets`: Fish Fillets dialogue; `gamevoices`: Warzone 2100 and 0 A.D. voices;
- `tts`: the offline TTS engines (piper, espeak-ng) and the attack loop over bona fide transcripts (a training
  attack takes its parent's speaker); `festival`: Festival voices run from unpacked Debian packages;
  `kokoro`: Kokoro-82M from wheels with espeak-ng phonemes; `neural`: espeak-ng + HiFi-GAN and WORLD voice
  conversion + HiFi-GAN; `attacks`: which systems, from which engines, as jobs run in worker processes;
- `synthetic`: formant-synthesised voices and spoof systems (the tiny profile: no apt, no TTS).

Every helper takes plain values (counts, bounds, an rng, the AttackPlan), never the stage's params class, so
that nothing here imports `pipeline.fetch_demo`. Writes only inside the build directory it is given.
"""
