"""Round trips and failure modes of node.image_conversion on messages built in memory."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="needs the ROS 2 sensor_msgs Python package")

from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image

from alpamayo_ros.node.image_conversion import (
    ImageConversionError,
    array_to_image,
    compressed_to_rgb8,
    image_to_array,
    image_to_rgb8,
    parse_compressed_format,
    rgb8_to_compressed,
    to_rgb8,
)


def _rgb(height: int = 6, width: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _smooth_rgb(height: int = 64, width: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) % 256], -1).astype(np.uint8)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 1]


def _widen(values8: np.ndarray, seed: int = 1) -> np.ndarray:
    """uint8 -> uint16 whose high byte is the input and low byte is noise (>> 8 recovers it)."""
    low = np.random.default_rng(seed).integers(0, 256, values8.shape, dtype=np.uint16)
    return (values8.astype(np.uint16) << 8) | low


def _cdr_round_trip(msg):
    return deserialize_message(serialize_message(msg), type(msg))


# encoding -> (pixels in that encoding's layout from an RGB image, expected RGB output)
_LAYOUTS = {
    "rgb8": lambda rgb: (rgb, rgb),
    "bgr8": lambda rgb: (rgb[..., ::-1], rgb),
    "rgba8": lambda rgb: (np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]), rgb),
    "bgra8": lambda rgb: (np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]), rgb),
    "mono8": lambda rgb: (_gray(rgb), np.repeat(_gray(rgb)[..., None], 3, -1)),
    "8UC1": lambda rgb: (_gray(rgb), np.repeat(_gray(rgb)[..., None], 3, -1)),
    "8UC3": lambda rgb: (rgb[..., ::-1], rgb),
    "rgb16": lambda rgb: (_widen(rgb), rgb),
    "bgr16": lambda rgb: (_widen(rgb[..., ::-1]), rgb),
    "rgba16": lambda rgb: (_widen(np.dstack([rgb, rgb[..., :1]])), rgb),
    "bgra16": lambda rgb: (_widen(np.dstack([rgb[..., ::-1], rgb[..., :1]])), rgb),
    "mono16": lambda rgb: (_widen(_gray(rgb)), np.repeat(_gray(rgb)[..., None], 3, -1)),
    "16UC1": lambda rgb: (_widen(_gray(rgb)), np.repeat(_gray(rgb)[..., None], 3, -1)),
}


@pytest.mark.parametrize("encoding", sorted(_LAYOUTS))
@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("big_endian", [False, True])
def test_raw_encodings_round_trip_through_cdr(encoding, padding, big_endian):
    rgb = _rgb()
    pixels, expected = _LAYOUTS[encoding](rgb)
    msg = array_to_image(
        pixels,
        encoding,
        stamp_ns=12_345_000_000_001,
        row_padding_bytes=padding,
        big_endian=big_endian,
    )
    back = _cdr_round_trip(msg)
    assert back.step == msg.step
    assert back.header.stamp.sec == 12_345 and back.header.stamp.nanosec == 1
    out = image_to_rgb8(back)
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out, expected)
    # The unconverted values survive exactly (incl. the 16-bit low byte).
    raw = image_to_array(back)
    np.testing.assert_array_equal(raw.reshape(pixels.shape), pixels)


def test_padded_rows_are_skipped_not_read_as_pixels():
    rgb = _rgb(3, 4)
    rows = np.full((3, 4 * 3 + 5), 255, np.uint8)  # 5 bytes of 0xFF padding per row
    rows[:, :12] = rgb.reshape(3, 12)
    msg = Image(height=3, width=4, encoding="rgb8", step=17, data=rows.tobytes())
    np.testing.assert_array_equal(image_to_rgb8(msg), rgb)


def test_big_endian_mono16_by_hand():
    # Two pixels 0x1234 and 0xABCD stored most-significant byte first.
    msg = Image(
        height=1,
        width=2,
        encoding="mono16",
        step=4,
        is_bigendian=1,
        data=bytes([0x12, 0x34, 0xAB, 0xCD]),
    )
    assert image_to_array(msg)[0, :, 0].tolist() == [0x1234, 0xABCD]
    assert image_to_rgb8(msg)[0, :, 0].tolist() == [0x12, 0xAB]
    msg.is_bigendian = 0
    assert image_to_array(msg)[0, :, 0].tolist() == [0x3412, 0xCDAB]


def test_data_shorter_than_height_times_step_raises():
    msg = array_to_image(_rgb(4, 4), "rgb8")
    msg.data = msg.data[:-1]
    with pytest.raises(ImageConversionError, match="expected height\\*step"):
        image_to_rgb8(msg)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"encoding": "weird42"}, "unsupported image encoding"),
        ({"encoding": "32FC1"}, "unsupported image encoding"),
        ({"step": 5}, "step 5 is smaller"),
        ({"height": 0}, "empty image"),
    ],
)
def test_bad_headers_raise_clear_errors(fields, match):
    msg = array_to_image(_rgb(4, 4), "rgb8")
    for key, value in fields.items():
        setattr(msg, key, value)
    with pytest.raises(ImageConversionError, match=match):
        to_rgb8(msg)


def test_huge_claimed_size_is_rejected_before_allocating():
    msg = Image(height=100_000, width=100_000, encoding="rgb8", step=300_000, data=b"\0" * 16)
    with pytest.raises(ImageConversionError, match="max_pixels"):
        image_to_rgb8(msg)


def test_error_is_a_value_error():
    assert issubclass(ImageConversionError, ValueError)


def test_bayer_uniform_colour_demosaics_to_that_colour():
    colour = np.array([200, 120, 40], np.uint8)  # R, G, B
    mosaic = np.empty((8, 8), np.uint8)  # RGGB: R at (even, even), B at (odd, odd)
    mosaic[0::2, 0::2], mosaic[1::2, 1::2] = colour[0], colour[2]
    mosaic[0::2, 1::2] = mosaic[1::2, 0::2] = colour[1]
    out = image_to_rgb8(array_to_image(mosaic, "bayer_rggb8"))
    np.testing.assert_array_equal(out[2:-2, 2:-2], np.broadcast_to(colour, (4, 4, 3)))
    bggr = image_to_rgb8(array_to_image(mosaic, "bayer_bggr8"))  # same bytes, other pattern
    assert bggr[4, 4, 0] == colour[2] and bggr[4, 4, 2] == colour[0]


def test_yuv422_grey_keeps_luma():
    luma = np.array([[16, 100, 180, 235]], np.uint8)
    uyvy = np.stack([np.full(4, 128, np.uint8), luma[0]], -1)[None]  # (1, 4, 2): U/V, Y
    out = image_to_rgb8(array_to_image(uyvy, "uyvy"))
    assert out.shape == (1, 4, 3)
    assert np.all(np.abs(out.astype(int) - out[..., :1].astype(int)) <= 1)  # grey
    assert np.all(np.diff(out[0, :, 0].astype(int)) > 0)  # brighter left to right


def test_jpeg_round_trip_is_close_and_rgb_ordered():
    rgb = _smooth_rgb()
    msg = _cdr_round_trip(rgb8_to_compressed(rgb, "jpeg", stamp_ns=5, jpeg_quality=95))
    assert msg.format == "rgb8; jpeg compressed bgr8"
    out = compressed_to_rgb8(msg)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 2.0
    # Channel order: the red ramp runs along x, not the blue one.
    assert out[32, 90, 0] > 200 and out[32, 5, 0] < 30


def test_png_round_trip_is_exact():
    rgb = _rgb(20, 30)
    out = to_rgb8(_cdr_round_trip(rgb8_to_compressed(rgb, "png")))
    np.testing.assert_array_equal(out, rgb)


def test_png_16bit_gray_and_bgra_and_rgb_target():
    gray16 = _widen(_gray(_rgb(5, 7)))
    msg = CompressedImage(
        format="mono16; png compressed mono16", data=cv2.imencode(".png", gray16)[1].tobytes()
    )
    np.testing.assert_array_equal(compressed_to_rgb8(msg)[..., 1], gray16 >> 8)
    rgb = _rgb(5, 7)
    bgra = np.dstack([rgb[..., ::-1], np.full((5, 7), 9, np.uint8)])
    msg = CompressedImage(
        format="bgra8; png compressed bgra8", data=cv2.imencode(".png", bgra)[1].tobytes()
    )
    np.testing.assert_array_equal(compressed_to_rgb8(msg), rgb)
    # A publisher that wrote RGB bytes straight into the PNG says so with "compressed rgb8".
    msg = CompressedImage(
        format="rgb8; png compressed rgb8", data=cv2.imencode(".png", rgb)[1].tobytes()
    )
    np.testing.assert_array_equal(compressed_to_rgb8(msg), rgb)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_jpeg_raises(cut):
    msg = rgb8_to_compressed(_smooth_rgb(), "jpeg")
    msg.data = msg.data[: int(len(msg.data) * cut)]
    with pytest.raises(ImageConversionError, match="corrupt or truncated"):
        compressed_to_rgb8(msg)


@pytest.mark.parametrize(
    ("fmt", "data", "match"),
    [
        ("jpeg", b"", "no data"),
        ("jpeg", bytes(range(256)) * 4, "corrupt or truncated"),
        ("16UC1; compressedDepth png", b"\x00" * 32, "depth image"),
        ("bgr8; tiff compressed bgr8", b"\x00" * 32, "unsupported CompressedImage format"),
    ],
)
def test_bad_compressed_messages_raise(fmt, data, match):
    with pytest.raises(ImageConversionError, match=match):
        compressed_to_rgb8(CompressedImage(format=fmt, data=data))


def test_parse_compressed_format():
    assert parse_compressed_format("rgb8; jpeg compressed bgr8") == ("rgb8", "jpeg", "bgr8")
    assert parse_compressed_format("png") == ("", "png", "")
    assert parse_compressed_format("") == ("", "", "")


def test_duck_typed_message_with_numpy_data():
    """rosbags messages carry numpy arrays, not array.array."""
    rgb = _rgb()
    msg = SimpleNamespace(
        height=6,
        width=5,
        encoding="bgr8",
        step=15,
        is_bigendian=0,
        data=np.ascontiguousarray(rgb[..., ::-1]).reshape(-1),
    )
    np.testing.assert_array_equal(to_rgb8(msg), rgb)
    with pytest.raises(ImageConversionError, match="not an image message"):
        to_rgb8(SimpleNamespace(data=b""))


def test_array_to_image_rejects_mismatched_dtype():
    with pytest.raises(ImageConversionError, match="do not fit mono16"):
        array_to_image(np.zeros((2, 2), np.uint8), "mono16")


def test_hdr_file_labelled_jpeg_raises_its_own_error():
    """A float (Radiance HDR) image behind a jpeg label: ImageConversionError, not TypeError."""
    ok, data = cv2.imencode(".hdr", np.full((8, 12, 3), 0.5, np.float32))
    assert ok
    msg = CompressedImage(format="rgb8; jpeg compressed bgr8", data=data.tobytes())
    with pytest.raises(ImageConversionError, match=r"float32 pixels \(HDR"):
        to_rgb8(msg)


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_odd_width_422_raises_its_own_error(encoding):
    """4:2:2 packs pixel pairs: an odd width is ImageConversionError, not cv2.error."""
    msg = SimpleNamespace(encoding=encoding, height=4, width=5, step=10, is_bigendian=0,
                          data=bytes(40))
    with pytest.raises(ImageConversionError, match="width must be even, got 5"):
        to_rgb8(msg)
