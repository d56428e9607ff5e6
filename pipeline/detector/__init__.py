"""The detector's own machinery, used by pretrain, embed, train, evaluate and score.

- `batches`: clip audio for torch (pools, crops, the training Dataset, balanced sampling, batch streams);
- `inference`: batch scoring and embeddings of a detector (the one scoring path);
- `loop`: the one training loop for every model the pipeline fits (teachers, the detector, the codec and
  diffusion generators);
- `finetune`: starting the detector from a pretrained model dir (`train.init`);
- `class_means`: nearest-class-mean maths on embeddings (SupCon's dev score and head warm start);
- `augment`: training-time waveform augmentation (RawBoost, codec round trips, gain);
- `losses`: the detector's training objectives (CE, BCE, SupCon, RACL).
The architectures and checkpoints are pipeline.models'. Imports nothing itself.
"""
