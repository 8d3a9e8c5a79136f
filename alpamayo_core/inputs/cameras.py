"""Alpamayo camera ids (0-6), their dataset names and the display names of the 1.5 prompt.

Alpamayo 1.5 names each camera in its prompt by id (`"<name>: "` before the camera's first
frame); ids must be sorted ascending (the training template asserts it). R1 takes no ids: its
checkpoint's four cameras in fixed order, which are ids (0, 1, 2, 6).
"""

from __future__ import annotations

from collections.abc import Sequence

#: id -> (dataset camera name, prompt display name).
CAMERAS: dict[int, tuple[str, str]] = {
    0: ("camera_cross_left_120fov", "Front left camera"),
    1: ("camera_front_wide_120fov", "Front camera"),
    2: ("camera_cross_right_120fov", "Front right camera"),
    3: ("camera_rear_left_70fov", "Rear left camera"),
    4: ("camera_rear_tele_30fov", "Rear camera"),
    5: ("camera_rear_right_70fov", "Rear right camera"),
    6: ("camera_front_tele_30fov", "Front telephoto camera"),
}
#: The default (trained) four-camera rig.
DEFAULT_CAMERA_IDS: tuple[int, ...] = (0, 1, 2, 6)
MAX_CAMERAS = len(CAMERAS)


def display_name(camera_id: int) -> str:
    """The prompt name of a camera id ("Camera <id>" for an id outside the table)."""
    return CAMERAS[camera_id][1] if camera_id in CAMERAS else f"Camera {camera_id}"


def camera_ids_for_names(names: Sequence[str]) -> tuple[int, ...]:
    """Ids of dataset camera names (a checkpoint's `images.cameras`); ValueError if unknown."""
    by_name = {name: cid for cid, (name, _) in CAMERAS.items()}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"cameras {unknown} have no Alpamayo camera id; known: {sorted(by_name)}")
    return tuple(by_name[n] for n in names)


def check_camera_ids(camera_ids: Sequence[int], field: str = "camera_ids") -> tuple[int, ...]:
    """`camera_ids` as a tuple after checking: 1-7 unique ids in 0-6, ascending."""
    ids = tuple(int(i) for i in camera_ids)
    if not 1 <= len(ids) <= MAX_CAMERAS:
        raise ValueError(f"{field}: needs 1 to {MAX_CAMERAS} camera ids, got {list(ids)}")
    if any(i not in CAMERAS for i in ids):
        raise ValueError(f"{field}: ids must lie in 0-6 ({_table()}), got {list(ids)}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{field}: ids must be unique, got {list(ids)}")
    if list(ids) != sorted(ids):
        raise ValueError(f"{field}: ids must be ascending (the model was trained so), got "
                         f"{list(ids)}; sort them and the images with them")
    return ids


def _table() -> str:
    return ", ".join(f"{i} {name}" for i, (_, name) in CAMERAS.items())
