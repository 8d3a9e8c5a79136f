"""`alpamayo-make-tiny`: build the embedded default model, a tiny random-init Alpamayo-R1.

Same topology as the release (preset `tiny`, performance_anchors.md §0b sizes) and the same code
path as a real checkpoint: the model is saved as a model folder (config.json, safetensors shards,
extended tokenizer) and every consumer loads it back with `load_model`. Deterministic for a seed,
so the demo and the tests rebuild the same weights anywhere without downloading anything.

Random weights never end their reasoning, so every plan would condition on a truncated
reasoning (DEGRADED). `_end_reasoning_at_once` gives the text model one fixed direction that
makes `<|traj_future_start|>` the overwhelming first choice at the reference temperature (0.6)
and a rare one at temperature 10: the reasoning ends like a trained model's, and a very high
temperature still exercises the truncated-reasoning path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from alpamayo_core.inputs.tiny_tokenizer import tiny_base_tokenizer
from alpamayo_core.io.model_io import save_model_folder
from alpamayo_core.model.alpamayo import AlpamayoR1
from alpamayo_core.model.config import preset, with_vocab_size
from alpamayo_core.model.vocabulary import TokenIds, extend_tokenizer


def make_tiny(out_dir: str | Path, seed: int = 0, preset_name: str = "tiny") -> Path:
    """Write a tiny random-init model folder to `out_dir`; returns the folder."""
    base_cfg = preset(preset_name)
    tokenizer = extend_tokenizer(tiny_base_tokenizer(), base_cfg.tokens, base_cfg.variant)
    cfg = with_vocab_size(base_cfg, len(tokenizer))
    token_ids = TokenIds.from_tokenizer(tokenizer, cfg.tokens)
    torch.manual_seed(seed)
    model = AlpamayoR1(cfg, token_ids).eval()
    _end_reasoning_at_once(model, token_ids.traj_future_start)
    # Small shards on purpose: the tiny folder exercises the sharded-index path of the release.
    return save_model_folder(model, tokenizer, out_dir, max_shard_bytes=2 * 1024**2)


#: Residual-stream value of the reserved hidden dimension 0, and the lm_head weight that turns
#: it into the `<|traj_future_start|>` logit (about 25 after the final RMSNorm).
_STOP_DIM_VALUE, _STOP_LOGIT_WEIGHT = 0.05, 20.0


@torch.no_grad()
def _end_reasoning_at_once(model: AlpamayoR1, stop_id: int) -> None:
    """Hidden dimension 0 carries a constant (every token embedding holds it, no attention or
    MLP output writes it), and only the stop token's lm_head row reads it."""
    text = model.vlm.model.language_model
    text.embed_tokens.weight[:, 0] = _STOP_DIM_VALUE
    for layer in text.layers:
        layer.self_attn.o_proj.weight[0, :] = 0.0
        layer.mlp.down_proj.weight[0, :] = 0.0
    head = model.vlm.lm_head.weight
    head[:, 0] = 0.0
    head[stop_id, :] = 0.0
    head[stop_id, 0] = _STOP_LOGIT_WEIGHT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="tiny", choices=("tiny", "tiny-1.5"),
                        help="tiny (Alpamayo-R1 profile) or tiny-1.5 (Alpamayo 1.5 profile)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if (out / "config.json").exists() and not args.force:
        print(f"{out} already holds a model (use --force to rebuild)")
        return 0
    make_tiny(out, seed=args.seed, preset_name=args.preset)
    print(f"wrote tiny model to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
