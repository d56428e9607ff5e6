"""hardset: an offline, DVC-driven data-curation pipeline for audio deepfake detection.

The top of the package is the DVC graph: one module per stage (`python -m pipeline <stage>`, the dvc.yaml stage
and params section of the same name), the commands `score` and `import_model`, and the few modules that many
stages share (params, schema, io, audio, metrics, logs, chain, embstore, resume). Everything else lives in a
package named for what it holds: detector/ (clip batches, inference, the training loop, fine-tuning, class
means, augmentation, losses), models/, resynth/, sampling/, reporting/, corpora/, demo/ and runtime/.
"""

__version__ = "0.1.0"
