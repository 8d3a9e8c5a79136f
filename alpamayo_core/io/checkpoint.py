"""Sharded safetensors checkpoints in the released layout (no pickle, no remote code).

A model folder holds `model-0000k-of-0000n.safetensors` shards plus `model.safetensors.index.json`
(`{"metadata": {...}, "weight_map": {key: shard}}`), or a single `model.safetensors`. Loading
copies each shard's tensors into an already-built module in place (one shard in memory at a
time; values are cast to the destination dtype, which is how the reference's bf16 buffers end up
bf16), and fails with a message naming the folder, file and key for anything missing, extra,
misshapen or corrupt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

LOG = logging.getLogger(__name__)

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class CheckpointError(ValueError):
    """A model folder is missing, partial, corrupt or does not match the model."""


def weight_map(model_dir: str | Path) -> dict[str, str]:
    """{tensor key: shard file name} for a model folder (index or single file)."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise CheckpointError(f"model folder {folder} does not exist")
    index = folder / INDEX_NAME
    if index.is_file():
        try:
            mapping = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as err:
            raise CheckpointError(f"{index} is not a valid safetensors index: {err}") from err
    elif (folder / SINGLE_NAME).is_file():
        with _open(folder / SINGLE_NAME) as f:
            mapping = {key: SINGLE_NAME for key in f.keys()}  # noqa: SIM118 (not a dict)
    else:
        pickles = [p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES]
        hint = (f" (found pickle files {pickles}: only safetensors are loaded, for safety)"
                if pickles else "")
        raise CheckpointError(f"{folder} has neither {INDEX_NAME} nor {SINGLE_NAME}{hint}")
    missing = sorted({s for s in mapping.values() if not (folder / s).is_file()})
    if missing:
        raise CheckpointError(f"{folder} is partial: shard files {missing} are missing "
                              "(re-download or re-run alpamayo-prepare)")
    return mapping


def _open(path: Path):
    try:
        return safe_open(str(path), framework="pt")
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err


def _by_shard(mapping: dict[str, str]) -> dict[str, list[str]]:
    shards: dict[str, list[str]] = {}
    for key, shard in mapping.items():
        shards.setdefault(shard, []).append(key)
    return shards


def check_keys(mapping: dict[str, str], expected: Iterable[str], folder: Path) -> None:
    """Raise `CheckpointError` listing missing and unexpected keys (first few of each)."""
    expected = set(expected)
    have = set(mapping)
    missing, extra = sorted(expected - have), sorted(have - expected)
    if missing or extra:
        raise CheckpointError(
            f"{folder} does not match the model: {len(missing)} missing keys "
            f"{missing[:5]}, {len(extra)} unexpected keys {extra[:5]} "
            "(wrong model preset or config.json?)")


def non_persistent_buffer_keys(module: torch.nn.Module) -> frozenset[str]:
    """State-dict-style names of `module`'s non-persistent buffers (never saved or read)."""
    return frozenset(f"{prefix}.{name}" if prefix else name
                     for prefix, sub in module.named_modules()
                     for name in getattr(sub, "_non_persistent_buffers_set", ()))


def load_into(module: torch.nn.Module, model_dir: str | Path) -> None:
    """Copy a folder's tensors into `module` (strict: every key, exact shapes).

    Keys naming one of `module`'s non-persistent buffers are skipped, not errors: an Alpamayo
    1.5 model rebuilds its statistics and Fourier frequencies from the config, so it reads an R1
    folder (which stores them) as the 1.5 code does, ignoring the stored values.
    """
    folder = Path(model_dir)
    mapping = weight_map(folder)
    skipped = sorted(set(mapping) & non_persistent_buffer_keys(module))
    if skipped:
        LOG.info("%s: not reading %d stored buffers the model rebuilds from its config: %s",
                 folder, len(skipped), skipped)
        mapping = {k: v for k, v in mapping.items() if k not in skipped}
    targets = module.state_dict(keep_vars=True)
    check_keys(mapping, targets, folder)
    for shard, keys in _by_shard(mapping).items():
        with _open(folder / shard) as f, torch.no_grad():
            for key in keys:
                dst = targets[key]
                try:
                    src = f.get_tensor(key)
                except (SafetensorError, OSError) as err:
                    raise CheckpointError(f"{folder / shard}: cannot read {key}: {err}") from err
                if tuple(src.shape) != tuple(dst.shape):
                    raise CheckpointError(
                        f"{folder / shard}: {key} has shape {tuple(src.shape)}, the model "
                        f"expects {tuple(dst.shape)} (wrong preset or vocabulary?)")
                dst.copy_(src)
        LOG.info("loaded %d tensors from %s", len(keys), shard)


def save_sharded(module: torch.nn.Module, model_dir: str | Path,
                 max_shard_bytes: int = 4 * 1024**3) -> list[Path]:
    """Write `module.state_dict()` as safetensors shards + index; returns the shard paths."""
    folder = Path(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(state):
        nbytes = state[key].numel() * state[key].element_size()
        if groups[-1] and size + nbytes > max_shard_bytes:
            groups.append({})
            size = 0
        groups[-1][key] = state[key].clone() if _shares_storage(state, key) else state[key]
        size += nbytes
    paths, mapping = [], {}
    for i, group in enumerate(groups, start=1):
        name = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        save_file(group, str(folder / name), metadata={"format": "pt"})
        mapping.update(dict.fromkeys(group, name))
        paths.append(folder / name)
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total,
                          "total_parameters": sum(p.numel() for p in module.parameters())},
             "weight_map": dict(sorted(mapping.items()))}
    (folder / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return paths


def _shares_storage(state: dict[str, torch.Tensor], key: str) -> bool:
    ptr = state[key].untyped_storage().data_ptr()
    return sum(1 for t in state.values() if t.untyped_storage().data_ptr() == ptr) > 1


def fingerprint(model_dir: str | Path) -> str:
    """Short stable id of a folder's weights (index content + shard sizes), cheap to compute."""
    folder = Path(model_dir)
    digest = hashlib.sha256()
    for key, shard in sorted(weight_map(folder).items()):
        digest.update(f"{key}:{shard}".encode())
    for shard in sorted(set(weight_map(folder).values())):
        digest.update(f"{shard}:{(folder / shard).stat().st_size}".encode())
    return digest.hexdigest()[:12]
