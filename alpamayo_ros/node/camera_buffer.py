"""Per-camera frame buffers and timestamp-based frame selection around a plan time t0.

Subscriptions call `add()` with the raw message (Image or CompressedImage): cheap, no decoding.
`select(t0_ns)` picks, per camera, the frame whose header stamp is nearest each target time
t0 + offset (default offsets -0.3, -0.2, -0.1, 0 s) within a tolerance, and decodes only those
frames (decoded frames are cached, so overlapping plans decode each frame once). t0 is normally
the newest stamp of the reference camera (`reference_t0_ns()`). Never "the last N messages".

Dimension glossary: C cameras (config order = model order), F frames per camera (offsets),
H, W image size.

When a camera cannot deliver, `select` raises `FrameSelectionError` listing every failing camera
with a `SelectionFailure` reason (no frames yet, stale, gap at an offset, not enough history,
undecodable frame). Out-of-order and duplicated stamps are dropped and counted; a large backwards
jump (bag loop, sim-time restart) clears that camera's buffer and is counted.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from alpamayo_ros.node.image_conversion import ImageConversionError, to_rgb8
from alpamayo_ros.node.input_stats import (
    DECODE_FAILURES,
    AddResult,
    InputStats,
    RateSnapshot,
    classify_stamp,
)

DEFAULT_CAMERAS = (
    "cross_left_120fov",
    "front_wide_120fov",
    "cross_right_120fov",
    "front_tele_30fov",
)


@dataclass(frozen=True)
class CameraBufferConfig:
    """Frame buffering and selection settings (times in seconds).

    Attributes:
        cameras: camera names in model order.
        reference_camera: camera whose newest stamp defines t0.
        offsets_s: target times relative to t0, oldest first (F values, <= 0).
        tolerance_s: largest |frame stamp - target| accepted.
        max_reference_age_s: with `now_ns` given, a t0 older than this is stale.
        window_s: frames kept behind each camera's newest stamp.
        max_frames: hard cap of frames kept per camera (bounds memory for raw images).
        clock_jump_s: a stamp this much older than the newest clears that camera's buffer.
        max_t0_lag_s: how far `plan_t0_ns` may fall back from the newest reference frame to a
            stamp every camera has delivered (cameras are not triggered together: a camera
            stamped a few ms after the reference may not have arrived when a plan starts).
    """

    cameras: tuple[str, ...] = DEFAULT_CAMERAS
    reference_camera: str = "front_wide_120fov"
    offsets_s: tuple[float, ...] = (-0.3, -0.2, -0.1, 0.0)
    tolerance_s: float = 0.05
    max_reference_age_s: float = 0.5
    window_s: float = 1.0
    max_frames: int = 32
    clock_jump_s: float = 1.0
    max_t0_lag_s: float = 0.2

    def __post_init__(self) -> None:
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras must be non-empty and unique, got {self.cameras}")
        if self.reference_camera not in self.cameras:
            raise ValueError(
                f"reference_camera {self.reference_camera!r} is not one of cameras {self.cameras}"
            )
        offsets = self.offsets_s
        if not offsets or any(o > 0 for o in offsets) or list(offsets) != sorted(offsets):
            raise ValueError(f"offsets_s must be ascending and <= 0, got {offsets}")
        for name in ("tolerance_s", "max_reference_age_s", "clock_jump_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_t0_lag_s < 0:
            raise ValueError(f"max_t0_lag_s must be >= 0, got {self.max_t0_lag_s}")
        if self.window_s < -offsets[0] + self.tolerance_s:
            raise ValueError(
                f"window_s={self.window_s} must be >= -offsets_s[0] + tolerance_s = "
                f"{-offsets[0] + self.tolerance_s}"
            )
        if self.max_frames < len(offsets):
            raise ValueError(f"max_frames must be >= len(offsets_s), got {self.max_frames}")


class SelectionFailure(enum.Enum):
    """Why a camera could not deliver frames for a t0."""

    UNKNOWN_CAMERA = "unknown camera"
    NO_FRAMES = "no frames received yet"
    STALE = "stale"
    NOT_COVERED = "not enough history yet"
    GAP = "no frame near a target time"
    UNDECODABLE = "frame cannot be decoded"


@dataclass(frozen=True)
class CameraFailure:
    """One camera's failure: which camera, why, and the details (times, error text)."""

    camera: str
    reason: SelectionFailure
    detail: str

    def __str__(self) -> str:
        return f"camera {self.camera}: {self.reason.value} ({self.detail})"


class FrameSelectionError(RuntimeError):
    """No complete frame set for t0; `failures` lists every camera that failed."""

    def __init__(self, failures: list[CameraFailure]) -> None:
        super().__init__("; ".join(str(f) for f in failures))
        self.failures = tuple(failures)


@dataclass(frozen=True)
class FrameSelection:
    """Frames picked for one t0.

    Attributes:
        t0_ns: plan time.
        cameras: C camera names (model order).
        stamps_ns: (C, F) int64 header stamps of the chosen frames.
        offset_errors_s: (C, F) chosen stamp minus target time, seconds.
        images_rgb: C tuples of F RGB uint8 (H, W, 3) arrays (sizes may differ per camera);
            read-only, because later selections share them (copy before editing in place).
    """

    t0_ns: int
    cameras: tuple[str, ...]
    stamps_ns: np.ndarray
    offset_errors_s: np.ndarray
    images_rgb: tuple[tuple[np.ndarray, ...], ...]



class _Frame:
    """A buffered message; `rgb` is filled on first decode."""

    __slots__ = ("msg", "rgb", "stamp_ns")

    def __init__(self, stamp_ns: int, msg: object) -> None:
        self.stamp_ns = stamp_ns
        self.msg = msg
        self.rgb: np.ndarray | None = None


def stamp_ns_of(msg: object) -> int:
    """Header stamp of a message in nanoseconds."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


class CameraBuffer:
    """Thread-safe frame buffers of all cameras: `add` from callbacks, `select` from planning."""

    def __init__(
        self,
        config: CameraBufferConfig | None = None,
        decode: Callable[[object], np.ndarray] = to_rgb8,
    ) -> None:
        self.config = config or CameraBufferConfig()
        self._decode = decode
        self._lock = threading.Lock()
        self._frames = {c: deque(maxlen=self.config.max_frames) for c in self.config.cameras}
        self._stats = {c: InputStats() for c in self.config.cameras}
        self._decode_errors: dict[str, str] = {}  # camera -> error of its last failed decode

    def add(self, camera: str, msg: object, arrival_ns: int | None = None) -> AddResult:
        """Buffer a raw Image/CompressedImage of `camera` (no decoding here)."""
        if camera not in self._frames:
            raise ValueError(f"unknown camera {camera!r}; configured: {self.config.cameras}")
        stamp_ns = stamp_ns_of(msg)
        with self._lock:
            frames, stats = self._frames[camera], self._stats[camera]
            newest = frames[-1].stamp_ns if frames else None
            result = classify_stamp(stamp_ns, newest, self.config.clock_jump_s)
            stats.count_result(result)
            if not result.kept:
                return result
            if result is AddResult.RESET:
                frames.clear()
            frames.append(_Frame(stamp_ns, msg))
            oldest_kept = stamp_ns - int(self.config.window_s * 1e9)
            while frames[0].stamp_ns < oldest_kept:
                frames.popleft()
            stats.record_accepted(stamp_ns, arrival_ns)
            return result

    def reference_t0_ns(self) -> int | None:
        """Newest stamp of the reference camera (the next plan's t0), None before any frame."""
        with self._lock:
            frames = self._frames[self.config.reference_camera]
            return frames[-1].stamp_ns if frames else None

    def plan_t0_ns(self, tolerance_s: float | None = None) -> int | None:
        """The plan time: the newest reference stamp that every camera has caught up with.

        A camera has caught up with t when its newest frame is at most `tolerance_s` before t.
        Looks back at most `max_t0_lag_s` from the newest reference frame; if no stamp there
        qualifies (a camera is really late or stopped), returns the newest one, so that frame
        selection reports which camera fails. None before any reference frame.
        """
        tol_ns = round((self.config.tolerance_s if tolerance_s is None else tolerance_s) * 1e9)
        with self._lock:
            reference = [f.stamp_ns for f in self._frames[self.config.reference_camera]]
            newest = [f[-1].stamp_ns if f else None for f in self._frames.values()]
        if not reference:
            return None
        if None in newest:
            return reference[-1]
        caught_up_to = min(newest) + tol_ns  # every camera has a frame near stamps <= this
        oldest_allowed = reference[-1] - round(self.config.max_t0_lag_s * 1e9)
        for stamp in reversed(reference):
            if stamp < oldest_allowed:
                break
            if stamp <= caught_up_to:
                return stamp
        return reference[-1]

    def newest_stamps_ns(self) -> dict[str, int | None]:
        """Newest buffered stamp per camera (None for cameras with no frame)."""
        with self._lock:
            return {c: (f[-1].stamp_ns if f else None) for c, f in self._frames.items()}

    def stats(self, now_arrival_ns: int | None = None) -> dict[str, RateSnapshot]:
        """Receive statistics per camera."""
        with self._lock:
            return {c: s.snapshot(now_arrival_ns) for c, s in self._stats.items()}

    def clear(self) -> None:
        with self._lock:
            for frames in self._frames.values():
                frames.clear()

    def select(
        self,
        t0_ns: int,
        offsets_s: tuple[float, ...] | None = None,
        tolerance_s: float | None = None,
        now_ns: int | None = None,
    ) -> FrameSelection:
        """Frames nearest t0 + each offset, per camera, decoded to RGB.

        Args:
            t0_ns: plan time (usually `reference_t0_ns()`).
            offsets_s: F target offsets (default from the config).
            tolerance_s: max |stamp - target| (default from the config).
            now_ns: node clock now; if given, t0 older than max_reference_age_s is stale.
        Raises:
            FrameSelectionError: listing each camera that has no valid frame for some target.
        """
        offsets = self.config.offsets_s if offsets_s is None else tuple(offsets_s)
        tol_s = self.config.tolerance_s if tolerance_s is None else float(tolerance_s)
        targets_ns = int(t0_ns) + np.round(np.asarray(offsets) * 1e9).astype(np.int64)  # (F,)
        with self._lock:
            snapshot = {c: list(f) for c, f in self._frames.items()}
        failures: list[CameraFailure] = []
        if now_ns is not None and (now_ns - t0_ns) * 1e-9 > self.config.max_reference_age_s:
            age_s = (now_ns - t0_ns) * 1e-9
            failures.append(
                CameraFailure(
                    self.config.reference_camera,
                    SelectionFailure.STALE,
                    f"t0 is {age_s:.3f} s old (max_reference_age_s "
                    f"{self.config.max_reference_age_s})",
                )
            )
        chosen: dict[str, list[_Frame]] = {}
        for camera in self.config.cameras:
            picked = _pick_frames(camera, snapshot[camera], t0_ns, targets_ns, tol_s, failures)
            if picked is not None:
                chosen[camera] = picked
        if failures:
            raise FrameSelectionError(failures)
        return self._decode_selection(int(t0_ns), chosen, targets_ns)

    def decode_errors(self) -> dict[str, str]:
        """Camera -> error text, for cameras whose most recent decode failed."""
        with self._lock:
            return dict(self._decode_errors)

    def _decode_frame(self, camera: str, frame: _Frame) -> str:
        """Decode into `frame.rgb`; "" on success, else the error (counted per camera).

        Any exception of the decoder counts as undecodable (the decoders raise
        `ImageConversionError`; anything else is a decoder bug, still not a dead plan)."""
        try:
            rgb = self._decode(frame.msg)
        except Exception as exc:
            error = str(exc) if isinstance(exc, ImageConversionError) else (
                f"{type(exc).__name__}: {exc}")
            with self._lock:
                self._decode_errors[camera] = error
                self._stats[camera].count(DECODE_FAILURES)
            return error
        rgb.flags.writeable = False  # shared by later plans: no in-place edits
        frame.rgb = rgb
        with self._lock:
            self._decode_errors.pop(camera, None)
        return ""

    def _decode_selection(
        self, t0_ns: int, chosen: dict[str, list[_Frame]], targets_ns: np.ndarray
    ) -> FrameSelection:
        failures: list[CameraFailure] = []
        images: list[tuple[np.ndarray, ...]] = []
        for camera in self.config.cameras:
            decoded = []
            for frame in chosen[camera]:
                if frame.rgb is None:
                    error = self._decode_frame(camera, frame)
                    if error:
                        failures.append(CameraFailure(
                            camera, SelectionFailure.UNDECODABLE,
                            f"frame at {frame.stamp_ns} ns: {error}"))
                        break
                decoded.append(frame.rgb)
            images.append(tuple(decoded))
        if failures:
            raise FrameSelectionError(failures)
        stamps = np.array([[f.stamp_ns for f in chosen[c]] for c in self.config.cameras])
        return FrameSelection(
            t0_ns=t0_ns,
            cameras=self.config.cameras,
            stamps_ns=stamps.astype(np.int64),
            offset_errors_s=(stamps - targets_ns[None, :]) * 1e-9,
            images_rgb=tuple(images),
        )


def _pick_frames(
    camera: str,
    frames: list[_Frame],
    t0_ns: int,
    targets_ns: np.ndarray,
    tol_s: float,
    failures: list[CameraFailure],
) -> list[_Frame] | None:
    """Nearest frame to each target within tolerance; appends a failure and returns None if
    any target has none."""
    if not frames:
        failures.append(CameraFailure(camera, SelectionFailure.NO_FRAMES, "buffer empty"))
        return None
    stamps = np.array([f.stamp_ns for f in frames], dtype=np.int64)  # (M,) ascending
    tol_ns = int(tol_s * 1e9)
    picked = []
    for target in targets_ns:
        idx = int(np.argmin(np.abs(stamps - target)))
        if abs(int(stamps[idx]) - int(target)) <= tol_ns:
            picked.append(frames[idx])
            continue
        offset_s = (int(target) - t0_ns) * 1e-9
        if stamps[-1] < target - tol_ns:
            reason = SelectionFailure.STALE
            detail = f"newest frame is {(t0_ns - int(stamps[-1])) * 1e-9:.3f} s older than t0"
        elif stamps[0] > target + tol_ns:
            reason = SelectionFailure.NOT_COVERED
            detail = f"oldest frame is after t0{offset_s:+.2f} s + tolerance"
        else:
            reason = SelectionFailure.GAP
            detail = (
                f"nearest frame to t0{offset_s:+.2f} s is "
                f"{abs(int(stamps[idx]) - int(target)) * 1e-9:.3f} s away (tolerance {tol_s} s)"
            )
        failures.append(CameraFailure(camera, reason, detail))
        return None
    return picked
