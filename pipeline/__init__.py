"""hardset: an offline, DVC-driven data-curation pipeline for audio deepfake detection.

Each DVC stage is one module (`python -m pipeline <stage>`); shared pieces live in
small modules beside them (schema, io, audio, metrics, losses, models, sampling).
"""

__version__ = "0.1.0"
