"""Model folders: load one offline, or write a self-contained one.

A model folder is the released layout plus what the release leaves out:

    config.json                          released keys (+ `vlm_config`, embedded by our tools)
    model-0000k-of-0000n.safetensors     weights (or model.safetensors)
    model.safetensors.index.json
    tokenizer.json, tokenizer_config.json, ...   the EXTENDED tokenizer (our tools write it)
    preprocessor_config.json             image-processor sizes (informational; config.json rules)

Loading builds the module tree on the meta device (no 22 GB of random init), materialises it on
the target device in the compute dtype, recomputes the non-persistent rotary buffers, and copies
the shards in. The released folder has no tokenizer: `alpamayo-prepare` adds one from a base
Qwen3-VL tokenizer folder the user supplies.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from alpamayo_core.io import checkpoint
from alpamayo_core.io.config_io import load_config, to_released_json
from alpamayo_core.model.alpamayo import AlpamayoR1, reset_nonpersistent_buffers
from alpamayo_core.model.config import RELEASED_VOCAB_SIZE, ModelConfig
from alpamayo_core.model.vocabulary import TokenIds, extend_tokenizer

LOG = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A model ready for inference, with everything needed to build its inputs."""

    model: AlpamayoR1
    tokenizer: PreTrainedTokenizerBase
    cfg: ModelConfig
    token_ids: TokenIds
    model_id: str


def default_dtype(device: torch.device | str) -> torch.dtype:
    """float32 on CPU (bf16 matmuls are slow there), bfloat16 on CUDA (the release's dtype)."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device | str) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return default_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)} or 'auto', got {dtype!r}")
    return _DTYPES[dtype]


def checked_token_ids(tokenizer: PreTrainedTokenizerBase, cfg: ModelConfig,
                      source: str | Path) -> TokenIds:
    """Extend `tokenizer` if needed (in place), resolve its ids and check them against `cfg`
    (and against the released layout for the released vocabulary size)."""
    if "<i0>" not in tokenizer.get_vocab():
        extend_tokenizer(tokenizer, cfg.tokens, cfg.variant)
    ids = TokenIds.from_tokenizer(tokenizer, cfg.tokens)
    if ids.vocab_size != cfg.text.vocab_size:
        raise ValueError(f"tokenizer from {source} has {ids.vocab_size} tokens once extended, "
                         f"the weights {cfg.text.vocab_size}: wrong base tokenizer, or "
                         "tokenizer and weights do not belong together")
    if cfg.text.vocab_size == RELEASED_VOCAB_SIZE:
        ids.check_released_layout()
    return ids


def load_tokenizer(folder: str | Path, cfg: ModelConfig) -> tuple[PreTrainedTokenizerBase,
                                                                  TokenIds]:
    """The (extended) tokenizer of a folder and its resolved, checked ids."""
    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.json").is_file():
        raise FileNotFoundError(
            f"{folder} has no tokenizer files; the released checkpoint ships none. Run "
            f"`alpamayo-prepare --weights {folder} --base-processor <Qwen3-VL folder> --out DIR`")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return tokenizer, checked_token_ids(tokenizer, cfg, folder)


def build_empty(cfg: ModelConfig, token_ids: TokenIds, device: torch.device | str,
                dtype: torch.dtype) -> AlpamayoR1:
    """The module tree on `device` without random init (values are garbage until loaded)."""
    name = next(k for k, v in _DTYPES.items() if v == dtype)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            model = AlpamayoR1(cfg.replace(dtype=name), token_ids)
    finally:
        torch.set_default_dtype(previous)
    model = model.to_empty(device=device)
    reset_nonpersistent_buffers(model)
    return model.eval().requires_grad_(False)


def load_model(model_dir: str | Path, device: torch.device | str = "cpu",
               dtype: str | torch.dtype | None = None) -> LoadedModel:
    """Load a model folder offline (see the module docstring for the layout)."""
    folder = Path(model_dir)
    cfg = load_config(folder)
    tokenizer, token_ids = load_tokenizer(folder, cfg)
    model = build_empty(cfg, token_ids, device, resolve_dtype(dtype, device))
    checkpoint.load_into(model, folder)
    model_id = f"{cfg.name}@{checkpoint.fingerprint(folder)}"
    LOG.info("loaded %s on %s (%s)", model_id, device, model.compute_dtype)
    return LoadedModel(model=model, tokenizer=tokenizer, cfg=cfg, token_ids=token_ids,
                       model_id=model_id)


def save_model_folder(model: AlpamayoR1, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path,
                      max_shard_bytes: int = 4 * 1024**3) -> Path:
    """Write a self-contained model folder (config, shards, tokenizer, processor sizes)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    released = to_released_json(cfg, {"traj_token_start_idx": model.token_ids.traj_token_start})
    (out / "config.json").write_text(json.dumps(released, indent=2) + "\n")
    checkpoint.save_sharded(model, out, max_shard_bytes=max_shard_bytes)
    tokenizer.save_pretrained(str(out))
    processor = {"image_processor_type": "Qwen2VLImageProcessor",
                 "min_pixels": cfg.images.min_pixels, "max_pixels": cfg.images.max_pixels,
                 "patch_size": cfg.vision.patch_size, "merge_size": cfg.vision.spatial_merge_size,
                 "temporal_patch_size": cfg.vision.temporal_patch_size,
                 "image_mean": list(cfg.images.image_mean),
                 "image_std": list(cfg.images.image_std)}
    (out / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n")
    return out
