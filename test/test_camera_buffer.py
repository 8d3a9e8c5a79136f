"""Frame selection by timestamp in alpamayo_ros.node.camera_buffer, on messages built in memory."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="needs the ROS 2 sensor_msgs Python package")

from alpamayo_ros.node.camera_buffer import (
    DEFAULT_CAMERAS,
    CameraBuffer,
    CameraBufferConfig,
    FrameSelectionError,
    SelectionFailure,
)
from alpamayo_ros.node.image_conversion import array_to_image, rgb8_to_compressed, to_rgb8
from alpamayo_ros.node.input_stats import AddResult

T0_NS = 1_800_000_000_000_000_000
MS = 1_000_000


def _frame(stamp_ns: int, value: int, camera: str = "cam"):
    """Tiny bgr8 image whose pixels all equal `value` (frame id), stamped `stamp_ns`."""
    return array_to_image(
        np.full((4, 6, 3), value % 256, np.uint8), "bgr8", stamp_ns=stamp_ns, frame_id=camera
    )


def _stream(rate_hz=30.0, start_s=-1.0, end_s=0.0, phase_s=0.0):
    rel = np.arange(start_s, end_s + 1e-9, 1.0 / rate_hz) + phase_s
    return [T0_NS + round(r * 1e9) for r in rel if r <= end_s + 1e-9]


class CountingDecoder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, msg):
        self.calls += 1
        return to_rgb8(msg)


def _filled(streams: dict[str, list[int]] | None = None, decoder=None, **config) -> CameraBuffer:
    buffer = CameraBuffer(CameraBufferConfig(**config), decode=decoder or to_rgb8)
    for camera, stamps in (streams or {c: _stream() for c in DEFAULT_CAMERAS}).items():
        for i, stamp in enumerate(stamps):
            assert buffer.add(camera, _frame(stamp, i, camera)) is AddResult.ACCEPTED
    return buffer


def _failures(buffer: CameraBuffer, t0_ns: int = T0_NS, **kwargs):
    with pytest.raises(FrameSelectionError) as info:
        buffer.select(t0_ns, **kwargs)
    return {f.camera: f for f in info.value.failures}


def test_picks_the_frame_nearest_each_target_per_camera():
    # Camera clocks are offset by up to 12 ms; each must still get the nearest frame.
    phases = dict(zip(DEFAULT_CAMERAS, (0.0, 0.0, 0.012, -0.009), strict=True))
    streams = {c: _stream(phase_s=p) for c, p in phases.items()}
    buffer = _filled(streams)
    assert buffer.reference_t0_ns() == T0_NS
    selection = buffer.select(buffer.reference_t0_ns())
    assert selection.stamps_ns.shape == (4, 4)
    targets = T0_NS + np.array([-300, -200, -100, 0]) * MS
    for c, camera in enumerate(DEFAULT_CAMERAS):
        stamps = np.array(streams[camera])
        for f, target in enumerate(targets):
            nearest = stamps[np.argmin(np.abs(stamps - target))]
            assert selection.stamps_ns[c, f] == nearest
    assert np.all(np.abs(selection.offset_errors_s) <= 0.05)
    assert [len(frames) for frames in selection.images_rgb] == [4, 4, 4, 4]
    assert {f.shape for frames in selection.images_rgb for f in frames} == {(4, 6, 3)}
    # Frame ids survive: pixel value = index of the chosen frame in its stream.
    for c, camera in enumerate(DEFAULT_CAMERAS):
        for f, stamp in enumerate(selection.stamps_ns[c]):
            assert selection.images_rgb[c][f][0, 0, 0] == streams[camera].index(int(stamp)) % 256


def test_decoding_is_lazy_and_cached():
    decoder = CountingDecoder()
    buffer = _filled(decoder=decoder)
    assert decoder.calls == 0  # adding 4 x 31 frames decoded nothing
    buffer.select(T0_NS)
    assert decoder.calls == 16
    buffer.select(T0_NS)
    assert decoder.calls == 16  # same frames: cached
    buffer.select(T0_NS - 100 * MS)  # three of four frames per camera overlap
    assert decoder.calls == 20


def test_no_frames_for_one_camera_names_it():
    streams = {c: _stream() for c in DEFAULT_CAMERAS[:3]}
    failures = _failures(_filled(streams))
    assert set(failures) == {"front_tele_30fov"}
    assert failures["front_tele_30fov"].reason is SelectionFailure.NO_FRAMES


def test_stale_camera():
    streams = {c: _stream() for c in DEFAULT_CAMERAS}
    streams["cross_left_120fov"] = _stream(end_s=-0.5)
    failure = _failures(_filled(streams))["cross_left_120fov"]
    assert failure.reason is SelectionFailure.STALE
    assert "0.500 s older than t0" in str(failure)


def test_gap_at_an_offset_is_reported_with_the_offset():
    streams = {c: _stream() for c in DEFAULT_CAMERAS}
    streams["front_wide_120fov"] = [
        s for s in _stream() if not T0_NS - 290 * MS < s < T0_NS - 110 * MS
    ]
    failures = _failures(_filled(streams))
    assert set(failures) == {"front_wide_120fov"}
    assert failures["front_wide_120fov"].reason is SelectionFailure.GAP
    assert "t0-0.20 s" in failures["front_wide_120fov"].detail


def test_start_up_without_enough_history():
    streams = {c: _stream(start_s=-0.15) for c in DEFAULT_CAMERAS}
    failures = _failures(_filled(streams))
    assert len(failures) == 4
    assert all(f.reason is SelectionFailure.NOT_COVERED for f in failures.values())


def test_reference_too_old_for_the_clock():
    buffer = _filled()
    failure = _failures(buffer, now_ns=T0_NS + 2_000 * MS)["front_wide_120fov"]
    assert failure.reason is SelectionFailure.STALE and "t0 is 2.000 s old" in failure.detail
    assert buffer.select(T0_NS, now_ns=T0_NS + 100 * MS).t0_ns == T0_NS


def test_out_of_order_duplicate_and_clock_jump():
    buffer = _filled()
    camera = "front_wide_120fov"
    assert buffer.add(camera, _frame(T0_NS, 0)) is AddResult.DROPPED_DUPLICATE
    assert buffer.add(camera, _frame(T0_NS - 20 * MS, 0)) is AddResult.DROPPED_OUT_OF_ORDER
    stats = buffer.stats()[camera].counters
    assert stats["dropped_duplicate"] == 1 and stats["dropped_out_of_order"] == 1
    assert buffer.add(camera, _frame(T0_NS - 5_000 * MS, 0)) is AddResult.RESET  # bag loop
    assert buffer.stats()[camera].counters["clock_resets"] == 1
    assert buffer.reference_t0_ns() == T0_NS - 5_000 * MS
    assert buffer.newest_stamps_ns()["cross_left_120fov"] == T0_NS  # other cameras untouched


def test_corrupt_frame_is_reported_not_raised_raw():
    streams = {c: _stream() for c in DEFAULT_CAMERAS}
    buffer = _filled(streams)
    bad = rgb8_to_compressed(np.zeros((8, 8, 3), np.uint8), "jpeg", stamp_ns=T0_NS + 10 * MS)
    bad.data = bad.data[:20]
    buffer.add("front_tele_30fov", bad)
    failure = _failures(buffer, T0_NS + 10 * MS)["front_tele_30fov"]
    assert failure.reason is SelectionFailure.UNDECODABLE
    assert "corrupt or truncated" in failure.detail


def test_buffer_is_bounded_and_rates_are_measured():
    buffer = CameraBuffer(CameraBufferConfig(window_s=0.5, max_frames=100))
    stamps = _stream(rate_hz=30.0, start_s=-3.0)
    for i, stamp in enumerate(stamps):
        buffer.add("front_wide_120fov", _frame(stamp, i), arrival_ns=i * 40 * MS)  # 25 Hz arrival
    assert len(buffer._frames["front_wide_120fov"]) == 16  # 0.5 s at 30 Hz, both ends
    snap = buffer.stats(now_arrival_ns=len(stamps) * 40 * MS)["front_wide_120fov"]
    assert snap.rate_hz_by_stamp == pytest.approx(30.0, rel=1e-3)
    assert snap.rate_hz_by_arrival == pytest.approx(25.0, rel=1e-3)
    assert snap.as_dict()["accepted"] == len(stamps)


def test_unknown_camera_raises():
    with pytest.raises(ValueError, match="unknown camera"):
        CameraBuffer().add("rear", _frame(T0_NS, 0))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"reference_camera": "rear"}, "reference_camera"),
        ({"offsets_s": (0.0, -0.1)}, "offsets_s"),
        ({"tolerance_s": 0.0}, "tolerance_s"),
        ({"window_s": 0.2}, "window_s"),
        ({"cameras": ("a", "a"), "reference_camera": "a"}, "cameras"),
        ({"max_frames": 2}, "max_frames"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        CameraBufferConfig(**kwargs)


def test_plan_t0_waits_for_cameras_that_have_not_delivered_this_cycle():
    """10 Hz cameras triggered 0/30/60/90 ms after the reference: the newest reference frame
    (t0) is not yet matched by the later cameras, so t0 falls back one cycle."""
    cycle = [T0_NS + round(r * 1e9) for r in np.arange(-1.0, 1e-9, 0.1)]
    streams = {c: [s + k * 30 * MS for s in cycle] for k, c in enumerate(DEFAULT_CAMERAS)}
    streams[DEFAULT_CAMERAS[2]] = streams[DEFAULT_CAMERAS[2]][:-1]  # not arrived yet
    streams[DEFAULT_CAMERAS[3]] = streams[DEFAULT_CAMERAS[3]][:-1]
    buffer = _filled(streams, reference_camera=DEFAULT_CAMERAS[1])
    newest_reference = streams[DEFAULT_CAMERAS[1]][-1]
    assert buffer.reference_t0_ns() == newest_reference
    t0 = buffer.plan_t0_ns()
    assert t0 == newest_reference - 100 * MS
    assert buffer.select(t0).stamps_ns.shape == (4, 4)  # every camera covered at that t0


def test_plan_t0_is_the_newest_reference_frame_when_cameras_are_in_sync():
    buffer = _filled()
    assert buffer.plan_t0_ns() == buffer.reference_t0_ns() == T0_NS


def test_plan_t0_does_not_hide_a_stopped_camera():
    """A camera silent for longer than max_t0_lag_s: t0 stays the newest reference frame and
    selection names the stopped camera."""
    streams = {c: _stream(rate_hz=10.0) for c in DEFAULT_CAMERAS}
    streams[DEFAULT_CAMERAS[0]] = _stream(rate_hz=10.0, end_s=-0.5)
    buffer = _filled(streams)
    assert buffer.plan_t0_ns() == T0_NS
    assert DEFAULT_CAMERAS[0] in _failures(buffer)
