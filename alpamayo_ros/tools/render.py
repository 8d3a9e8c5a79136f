"""Pictures of plans: a camera mosaic over a bird's-eye view (BEV) and the reasoning text.

One figure per plan (matplotlib, Agg backend, no display needed):
    top     the newest frame of each camera (model order), with its name
    bottom  BEV in the ego frame at t0 (x forward = up, y left = left; metres): the ego
            history, every trajectory sample, the selected one, the ground truth (recorded
            odometry) and the constant-velocity baseline
    right   status, t0, meta-action and reasoning text, and the plan's errors per horizon
`write_animation` turns the figures into a GIF of the drive (imageio).

Dimension glossary: C cameras, K samples, T waypoints, N history poses, H, W pixels.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_TEXT_CHARS = 420  # reasoning text shown per picture (the rest is in the output bag)
_THUMB_WIDTH_PX = 400


@dataclass(frozen=True)
class PlanPicture:
    """Everything one picture shows (arrays in the ego frame at t0, metres).

    Attributes:
        camera_names: C names; images_rgb: C newest frames (H, W, 3) uint8 (sizes may differ).
        samples_xyz_m: (K, T, 3) trajectory samples; selected: index of the followed sample.
        ground_truth_xyz_m: (T, 3) recorded future (NaN rows where none).
        baseline_xyz_m: (T, 3) constant-velocity baseline (NaN if unavailable).
        history_xyz_m: (N, 3) ego history given to the model.
        title: first text line (status, t0); texts: (label, text) pairs shown below it.
        errors: lines of per-horizon errors.
    """

    camera_names: Sequence[str]
    images_rgb: Sequence[np.ndarray]
    samples_xyz_m: np.ndarray
    selected: int
    ground_truth_xyz_m: np.ndarray
    baseline_xyz_m: np.ndarray
    history_xyz_m: np.ndarray
    title: str
    texts: Sequence[tuple[str, str]] = ()
    errors: Sequence[str] = field(default_factory=tuple)


def render_plan(picture: PlanPicture, dpi: int = 80) -> np.ndarray:
    """(H, W, 3) uint8 RGB picture of one plan."""
    fig = Figure(figsize=(14, 8.5), dpi=dpi, layout="constrained")
    grid = fig.add_gridspec(2, max(len(picture.images_rgb), 2), height_ratios=(1, 2.2))
    for c, (name, image) in enumerate(zip(picture.camera_names, picture.images_rgb,
                                          strict=True)):
        ax = fig.add_subplot(grid[0, c])
        ax.imshow(_thumbnail(image))
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    half = max(len(picture.images_rgb), 2) // 2
    _draw_bev(fig.add_subplot(grid[1, :half]), picture)
    _draw_text(fig.add_subplot(grid[1, half:]), picture)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def _thumbnail(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    if w <= _THUMB_WIDTH_PX:
        return image
    return cv2.resize(image, (_THUMB_WIDTH_PX, round(h * _THUMB_WIDTH_PX / w)),
                      interpolation=cv2.INTER_AREA)


def _plot_xy(ax, xyz: np.ndarray, *args, **kwargs) -> None:
    """Plot ego-frame points with x forward up and y left to the left."""
    ax.plot(-xyz[..., 1], xyz[..., 0], *args, **kwargs)


def _draw_bev(ax, p: PlanPicture) -> None:
    for k, sample in enumerate(p.samples_xyz_m):
        if k != p.selected:
            _plot_xy(ax, sample, color="tab:blue", alpha=0.35, lw=1.0,
                     label="samples" if k == (1 if p.selected == 0 else 0) else None)
    _plot_xy(ax, p.history_xyz_m, color="0.4", lw=2.0, label="history")
    _plot_xy(ax, p.ground_truth_xyz_m, "k--", lw=2.0, label="ground truth (odometry)")
    if np.any(np.isfinite(p.baseline_xyz_m)):
        _plot_xy(ax, p.baseline_xyz_m, color="tab:orange", lw=1.5, label="constant velocity")
    _plot_xy(ax, p.samples_xyz_m[p.selected], color="tab:green", lw=2.5, label="selected")
    ax.plot([0.0], [0.0], marker="^", color="tab:red", ms=10, ls="none", label="ego at t0")
    points = np.concatenate([p.samples_xyz_m.reshape(-1, 3), p.history_xyz_m,
                             p.ground_truth_xyz_m])
    points = points[np.all(np.isfinite(points), axis=1)]
    x_lo, x_hi = min(points[:, 0].min(), -5.0) - 3.0, max(points[:, 0].max(), 10.0) + 3.0
    half_width = max(np.abs(points[:, 1]).max() + 3.0, 0.3 * (x_hi - x_lo))
    ax.set_xlim(-half_width, half_width)
    ax.set_ylim(x_lo, x_hi)
    ax.set_aspect("equal", adjustable="box")
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("-y, metres (left of the ego is left)")
    ax.set_ylabel("x forward, metres")
    ax.set_title("bird's-eye view, ego frame at t0", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)


def _draw_text(ax, p: PlanPicture) -> None:
    ax.axis("off")
    lines = [p.title, ""]
    for label, text in p.texts:
        shown = text if len(text) <= _TEXT_CHARS else text[:_TEXT_CHARS] + " ..."
        wrapped = textwrap.fill(" ".join(shown.split()), 70) or "(none)"
        lines += [f"{label}:", wrapped, ""]
    lines += list(p.errors)
    ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8.5,
            transform=ax.transAxes)


def save_png(path: Path | str, image: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image as PNG."""
    iio.imwrite(path, image)
    return Path(path)


def write_animation(path: Path | str, frames: Sequence[np.ndarray], fps: float = 2.0,
                    max_width_px: int = 800) -> Path:
    """A looping GIF of the frames (each (H, W, 3) uint8, resized to <= max_width_px)."""
    if not frames:
        raise ValueError("write_animation: no frames to write")
    h, w = frames[0].shape[:2]
    scale = min(1.0, max_width_px / w)
    size = (round(w * scale), round(h * scale))
    small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    iio.imwrite(path, small, duration=1000.0 / fps, loop=0)
    return Path(path)


def error_lines(model: Mapping[float, object], baseline: Mapping[float, object]) -> list[str]:
    """Per-horizon text: model minADE / FDE (selected) vs the constant-velocity baseline."""
    lines = ["horizon  minADE   FDE      CV ADE   CV FDE"]
    for h, score in model.items():
        cv = baseline.get(h)
        if score is None:
            lines.append(f"{h:>5g} s  (no ground truth this far)")
            continue
        cv_text = "-" if cv is None else f"{cv.ade_m:6.2f} m {cv.fde_m:6.2f} m"
        lines.append(f"{h:>5g} s {score.min_ade_m:6.2f} m {score.fde_m:6.2f} m {cv_text}")
    return lines
