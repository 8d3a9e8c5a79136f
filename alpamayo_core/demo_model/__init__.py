"""The embedded demo model: the `demo` preset (released topology, small dims) trained on
synthetic drives by this project's own training code, committed as a model folder here
(config.json, safetensors, tokenizer) and loaded like any checkpoint.

Reproduce it (seed 0, one torch thread; README "Training"):

    alpamayo-train --preset demo --out runs/demo --threads 1   # then copy runs/demo/model here

It drives the synthetic scenes (`alpamayo_core.sim`) and says why; it has never seen a real
road. `./scripts/demo.sh` and the node (an empty `model_dir`) use it by default.
"""

from __future__ import annotations

from pathlib import Path

#: The training command that produced the committed weights.
TRAIN_COMMAND = "alpamayo-train --preset demo --out runs/demo --threads 1"


def demo_model_dir() -> Path:
    """The folder of the embedded demo model; FileNotFoundError if its files are missing."""
    folder = Path(__file__).resolve().parent
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: the embedded demo model's files are missing (a "
                                f"partial install?); rebuild it with `{TRAIN_COMMAND}`")
    return folder
