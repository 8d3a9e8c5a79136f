"""`alpamayo-prepare`: make a self-contained, offline model folder from the released weights.

    alpamayo-prepare --weights Alpamayo-R1-10B/ --base-processor Qwen3-VL-2B-Instruct/ --out DIR

The release ships weights and config.json but no tokenizer or processor (the reference fetches
them from the hub at run time). This command, run once where those folders exist:
  1. parses the released config.json (VLM architecture from `--vlm-config`, else from the
     folder `vlm_name_or_path` names when it is a local directory with a config.json, else from
     the known-model registry by that name; the base *processor* folder is often a
     different size, e.g. Qwen3-VL-2B, so its config.json is never used for the backbone),
  2. checks every tensor key and shape of the shards against the model (reads headers only),
  3. extends the base tokenizer with the Alpamayo tokens and checks the released ids
     (`<|traj_future_start|>` = 155681, vocabulary 155,697),
  4. writes config.json (with the VLM config embedded), the extended tokenizer and the image
     processor sizes to `--out`, and links (default) or copies the shards and index there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open

from alpamayo_core.io import checkpoint
from alpamayo_core.io.config_io import load_config, to_released_json
from alpamayo_core.io.model_io import load_tokenizer
from alpamayo_core.model.alpamayo import AlpamayoR1
from alpamayo_core.model.config import ModelConfig
from alpamayo_core.model.vocabulary import TokenIds


def check_shards(cfg: ModelConfig, token_ids: TokenIds, weights: Path) -> int:
    """Compare the shards' keys and shapes with the model built on meta; returns #tensors."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in AlpamayoR1(cfg, token_ids).state_dict().items()}
    mapping = checkpoint.weight_map(weights)
    checkpoint.check_keys(mapping, expected, weights)
    for shard, keys in checkpoint._by_shard(mapping).items():
        with safe_open(str(weights / shard), framework="pt") as f:
            for key in keys:
                shape = tuple(f.get_slice(key).get_shape())
                if shape != expected[key]:
                    raise checkpoint.CheckpointError(
                        f"{weights / shard}: {key} has shape {shape}, expected {expected[key]}")
    return len(mapping)


def prepare(args: argparse.Namespace) -> Path:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.weights, args.vlm_config)
    print(f"[1/4] config: {cfg.name}: VLM {cfg.text.num_hidden_layers} layers x "
          f"{cfg.text.hidden_size}, expert {cfg.expert.num_hidden_layers} x "
          f"{cfg.expert.hidden_size}, vocab {cfg.text.vocab_size}")
    tokenizer, ids = load_tokenizer(args.base_processor, cfg)
    print(f"[2/4] tokenizer: {ids.vocab_size} tokens, <|traj_future_start|> = "
          f"{ids.traj_future_start}")
    n = check_shards(cfg, ids, args.weights)
    print(f"[3/4] weights: {n} tensors, keys and shapes match")
    released = to_released_json(cfg, {"traj_token_start_idx": ids.traj_token_start})
    (out / "config.json").write_text(json.dumps(released, indent=2) + "\n")
    tokenizer.save_pretrained(str(out))
    mapping = checkpoint.weight_map(args.weights)
    for name in sorted({*mapping.values(), checkpoint.INDEX_NAME} & {
            p.name for p in args.weights.iterdir()}):
        src, dst = (args.weights / name).resolve(), out / name
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if args.copy:
            shutil.copy2(src, dst)
        else:
            dst.symlink_to(src)
    print(f"[4/4] wrote {out} ({'copied' if args.copy else 'linked'} weights)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="alpamayo-prepare", description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, required=True, help="released checkpoint folder")
    p.add_argument("--base-processor", type=Path, required=True,
                   help="local Qwen3-VL tokenizer/processor folder (e.g. Qwen3-VL-2B-Instruct)")
    p.add_argument("--vlm-config", type=Path, help="Qwen3-VL config.json of the backbone")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--copy", action="store_true", help="copy the shards instead of linking")
    args = p.parse_args(argv)
    try:
        prepare(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"alpamayo-prepare: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
