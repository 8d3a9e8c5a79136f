"""Training: the stage-3 objective (reasoning cross-entropy + flow matching on unicycle
actions) on the real architecture, and the loop that fits it (AdamW, warm-up, clipping,
resumable checkpoints in the released layout, CSV losses, DistributedDataParallel).

Modules: `config` (TrainConfig), `sample` (a training example and its encoding), `objective`
(the losses), `schedule` (warm-up + cosine learning rate), `trainer` (the loop, checkpoints,
resume), `distributed` (torchrun / DDP set-up). Data comes in as already-decoded arrays
(`TrainSample`); building them from bags and synthetic drives is `alpamayo_ros.tools.train_data`.
"""
