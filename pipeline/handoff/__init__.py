"""Hand-off: what leaves the pipeline for other tools and people.

- `files`: stable file ids, audio placement (hard link, symlink or copy) and the output-folder guard;
- `asvspoof`, `lhotse_set`, `hf`: a curated subset in the ASVspoof 2019 LA layout, as lhotse manifests and as a
  Hugging Face dataset (the `export` stage and command);
- `licences`: the licences of the corpora a model or subset was made from;
- `card`: the model card (MODEL_CARD.md and the same facts in config.json) of every model folder.
"""
