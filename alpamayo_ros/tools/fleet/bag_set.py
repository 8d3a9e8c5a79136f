"""Which bags a fleet evaluation covers, and the scene tag of each.

A bag set is given as one bag folder, a folder of bags (every direct sub-folder holding a rosbag2
`metadata.yaml`), a glob pattern matching bag folders, or a list file (one bag folder per line;
blank lines and `#` comments skipped; relative paths are relative to the list file).

A bag's scene tag comes from, in order: a sidecar `<bag>.tags.yaml` next to the bag folder
(`scene: highway_merge`), the bag's own `metadata.yaml` (`custom_data: {scene: ...}`, which
`alpamayo-synth` writes), else `untagged`.
"""

from __future__ import annotations

import glob
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

UNTAGGED = "untagged"
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class BagEntry:
    """One bag of the set: its folder, a unique short name (output sub-folder), its scene."""

    path: Path
    name: str
    scene: str = UNTAGGED

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"BagEntry.name: must be a plain folder name, got {self.name!r}")
        if not self.scene:
            raise ValueError("BagEntry.scene: must not be empty")


def is_bag(path: Path | str) -> bool:
    """A rosbag2 folder (has metadata.yaml)."""
    return (Path(path) / "metadata.yaml").is_file()


def is_bag_set(source: str) -> bool:
    """True when `source` names several bags (folder of bags, glob or list file), not one bag."""
    path = Path(source)
    return bool(_GLOB_CHARS & set(source)) or path.is_file() or (
        path.is_dir() and not is_bag(path))


def resolve(source: str) -> list[BagEntry]:
    """The bags of `source` in a stable (sorted) order, with unique names and scene tags."""
    paths = _bag_paths(source)
    if not paths:
        raise ValueError(f"no rosbag2 folders (with metadata.yaml) found in {source!r}")
    missing = [str(p) for p in paths if not is_bag(p)]
    if missing:
        raise ValueError(f"not rosbag2 folders (no metadata.yaml): {', '.join(missing)}")
    return [BagEntry(path, name, scene_tag(path))
            for path, name in zip(paths, _unique_names(paths), strict=True)]


def _bag_paths(source: str) -> list[Path]:
    path = Path(source)
    if _GLOB_CHARS & set(source):
        return sorted(Path(p) for p in glob.glob(source) if Path(p).is_dir())
    if path.is_file():
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        return [path.parent / line for line in lines if line]  # (an absolute line stays)
    if path.is_dir():
        return [path] if is_bag(path) else sorted(p for p in path.iterdir() if is_bag(p))
    raise FileNotFoundError(f"{source}: no such folder, list file or matching glob")


def _unique_names(paths: list[Path]) -> list[str]:
    """Folder names; a name shared by several bags gets its position appended (`drive_2`)."""
    counts = Counter(p.name for p in paths)
    return [p.name if counts[p.name] == 1 else f"{p.name}_{i}" for i, p in enumerate(paths)]


def scene_tag(bag: Path | str) -> str:
    """The bag's scene: the sidecar's, else the metadata's custom_data, else `untagged`."""
    bag = Path(bag)
    sidecar = bag.parent / f"{bag.name}.tags.yaml"
    if sidecar.is_file():
        tags = yaml.safe_load(sidecar.read_text(encoding="utf-8")) or {}
        if not isinstance(tags, dict) or not str(tags.get("scene", "")).strip():
            raise ValueError(f"{sidecar}: expected a mapping with a non-empty 'scene'")
        return str(tags["scene"]).strip()
    meta = yaml.safe_load((bag / "metadata.yaml").read_text(encoding="utf-8")) or {}
    custom = (meta.get("rosbag2_bagfile_information") or {}).get("custom_data") or {}
    return str(custom.get("scene") or UNTAGGED)
