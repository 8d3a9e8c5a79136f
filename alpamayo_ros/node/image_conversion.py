"""Camera messages <-> numpy images, without cv_bridge.

`sensor_msgs/Image` (raw) and `sensor_msgs/CompressedImage` (JPEG/PNG, image_transport `format`
convention "<orig encoding>; <jpeg|png> compressed <encoding>") become RGB uint8 arrays (H, W, 3).
Messages may be rclpy objects or anything with the same attributes (e.g. rosbags messages).

Own implementation, not `rosbags-image` (0.10.4, tried): it ignores `step` row padding (wrong
pixels), raises a bare TypeError on truncated data and has no numpy -> message direction. The
PyPI `cv-bridge` is broken with numpy 2 / OpenCV 5 and 16-bit data (environment.md).

Every malformed input (unknown encoding, data shorter than height * step, corrupt or truncated
JPEG/PNG, an HDR/float image behind a jpeg/png label, odd-width 4:2:2 frames, absurd sizes)
raises `ImageConversionError` with a message that names the problem; OpenCV's own errors never
leave this module.
"""

from __future__ import annotations

import array
from dataclasses import dataclass

import cv2
import numpy as np


class ImageConversionError(ValueError):
    """A camera message cannot be turned into an RGB image (bad encoding, size or data)."""


@dataclass(frozen=True)
class _Encoding:
    """Layout of one `sensor_msgs/Image` encoding.

    channels: values per pixel in the message; bits: 8 or 16 per value; to_rgb: cv2 colour
    conversion code to RGB (None: already RGB); drop_alpha: keep the first 3 channels after it.
    """

    channels: int
    bits: int
    to_rgb: int | None


_ENCODINGS: dict[str, _Encoding] = {
    "rgb8": _Encoding(3, 8, None),
    "bgr8": _Encoding(3, 8, cv2.COLOR_BGR2RGB),
    "rgba8": _Encoding(4, 8, cv2.COLOR_RGBA2RGB),
    "bgra8": _Encoding(4, 8, cv2.COLOR_BGRA2RGB),
    "mono8": _Encoding(1, 8, cv2.COLOR_GRAY2RGB),
    "8UC1": _Encoding(1, 8, cv2.COLOR_GRAY2RGB),
    "8UC3": _Encoding(3, 8, cv2.COLOR_BGR2RGB),  # OpenCV default channel order
    "8UC4": _Encoding(4, 8, cv2.COLOR_BGRA2RGB),
    "rgb16": _Encoding(3, 16, None),
    "bgr16": _Encoding(3, 16, cv2.COLOR_BGR2RGB),
    "rgba16": _Encoding(4, 16, cv2.COLOR_RGBA2RGB),
    "bgra16": _Encoding(4, 16, cv2.COLOR_BGRA2RGB),
    "mono16": _Encoding(1, 16, cv2.COLOR_GRAY2RGB),
    "16UC1": _Encoding(1, 16, cv2.COLOR_GRAY2RGB),
    "16UC3": _Encoding(3, 16, cv2.COLOR_BGR2RGB),
    "16UC4": _Encoding(4, 16, cv2.COLOR_BGRA2RGB),
    # ROS bayer names give the colour of the top-left 2x2 cell; cv2 spells them out the same way.
    "bayer_rggb8": _Encoding(1, 8, cv2.COLOR_BayerRGGB2RGB),
    "bayer_bggr8": _Encoding(1, 8, cv2.COLOR_BayerBGGR2RGB),
    "bayer_gbrg8": _Encoding(1, 8, cv2.COLOR_BayerGBRG2RGB),
    "bayer_grbg8": _Encoding(1, 8, cv2.COLOR_BayerGRBG2RGB),
    "bayer_rggb16": _Encoding(1, 16, cv2.COLOR_BayerRGGB2RGB),
    "bayer_bggr16": _Encoding(1, 16, cv2.COLOR_BayerBGGR2RGB),
    "bayer_gbrg16": _Encoding(1, 16, cv2.COLOR_BayerGBRG2RGB),
    "bayer_grbg16": _Encoding(1, 16, cv2.COLOR_BayerGRBG2RGB),
    "yuv422": _Encoding(2, 8, cv2.COLOR_YUV2RGB_UYVY),  # ROS "yuv422" is UYVY byte order
    "uyvy": _Encoding(2, 8, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": _Encoding(2, 8, cv2.COLOR_YUV2RGB_YUYV),
    "yuyv": _Encoding(2, 8, cv2.COLOR_YUV2RGB_YUYV),
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(sorted(_ENCODINGS))

#: Largest accepted image (pixels); a corrupt header must not make us allocate gigabytes.
DEFAULT_MAX_PIXELS = 8192 * 8192


def _as_uint8_buffer(data: object) -> np.ndarray:
    """View a message's `data` field (bytes, array.array('B'), numpy, list) as flat uint8."""
    try:
        return np.frombuffer(memoryview(data), dtype=np.uint8)  # zero-copy for buffer types
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def image_to_array(msg: object, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Pixel values of a raw `sensor_msgs/Image`, unconverted.

    Returns:
        (H, W, C) uint8 or uint16 in native byte order (C channels of the encoding), honouring
        `step` row padding and `is_bigendian`. May be a view into `msg.data`.
    """
    encoding = str(msg.encoding)
    layout = _ENCODINGS.get(encoding)
    if layout is None:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty image: height={height}, width={width}")
    if height * width > max_pixels:
        raise ImageConversionError(
            f"image {width}x{height} has more than max_pixels={max_pixels} pixels"
        )
    if layout.channels == 2 and width % 2:
        raise ImageConversionError(
            f"{encoding} packs two pixels per 4 bytes: width must be even, got {width}")
    bytes_per_value = layout.bits // 8
    row_bytes = width * layout.channels * bytes_per_value
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width*channels*bytes = {row_bytes} ({encoding})"
        )
    buf = _as_uint8_buffer(msg.data)
    if buf.size < height * step:
        raise ImageConversionError(
            f"image data has {buf.size} bytes, expected height*step = {height}*{step} = "
            f"{height * step} ({width}x{height} {encoding})"
        )
    rows = buf[: height * step].reshape(height, step)[:, :row_bytes]  # drop row padding
    if bytes_per_value == 1:
        return rows.reshape(height, width, layout.channels)
    byte_order = ">" if msg.is_bigendian else "<"
    values = np.ascontiguousarray(rows).view(np.dtype(np.uint16).newbyteorder(byte_order))
    return values.reshape(height, width, layout.channels).astype(np.uint16, copy=False)


def image_to_rgb8(msg: object, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Convert a raw `sensor_msgs/Image` to RGB uint8 (H, W, 3); 16-bit values are shifted >> 8.

    An unpadded rgb8 image comes back as a view of `msg.data` (no copy).
    """
    layout = _ENCODINGS.get(str(msg.encoding))
    pixels = image_to_array(msg, max_pixels=max_pixels)
    if layout.bits == 16 and layout.to_rgb is not None and str(msg.encoding).startswith("bayer"):
        # Demosaic at full depth, then scale.
        return _to_8bit(_cvt(pixels[..., 0], layout.to_rgb, msg.encoding))
    pixels = _to_8bit(pixels)
    if layout.to_rgb is None:
        return np.ascontiguousarray(pixels)
    source = pixels[..., 0] if layout.channels == 1 else pixels
    return _cvt(source, layout.to_rgb, msg.encoding)


def _cvt(pixels: np.ndarray, code: int, what: str) -> np.ndarray:
    """cv2.cvtColor with OpenCV's errors turned into `ImageConversionError`."""
    try:
        return cv2.cvtColor(np.ascontiguousarray(pixels), code)
    except cv2.error as exc:
        raise ImageConversionError(f"cannot convert {what} {pixels.shape} to RGB: {exc}") from exc


def _to_8bit(pixels: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 by keeping the high byte; uint8 passes through; anything else (float HDR,
    signed) is not a camera image this node can use."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return (pixels >> 8).astype(np.uint8)
    raise ImageConversionError(
        f"{pixels.dtype} pixels (HDR or float image?) are not supported: send 8- or 16-bit")


def parse_compressed_format(fmt: str) -> tuple[str, str, str]:
    """Split an image_transport `format` string.

    "rgb8; jpeg compressed bgr8" -> ("rgb8", "jpeg", "bgr8"); "jpeg" / "png" -> ("", codec, "");
    "" -> ("", "", ""). Codec is lower case ("jpeg", "png", "compresseddepth", ...).
    """
    text = fmt.strip()
    if ";" not in text:
        return "", text.lower(), ""
    original, _, rest = text.partition(";")
    words = rest.split()
    codec = words[0].lower() if words else ""
    target = words[-1] if len(words) >= 3 and words[1] == "compressed" else ""
    return original.strip(), codec, target


def compressed_to_rgb8(msg: object, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a JPEG/PNG `sensor_msgs/CompressedImage` to RGB uint8 (H, W, 3).

    The decoded file is taken as BGR (what image_transport writes) unless `format` says the
    target encoding was RGB ("...; png compressed rgb8"). 16-bit PNGs are shifted >> 8.
    """
    _, codec, target = parse_compressed_format(str(msg.format))
    if codec in ("compresseddepth", "rvl"):
        raise ImageConversionError(f"depth image codec {msg.format!r} is not a camera image")
    if codec and codec not in ("jpeg", "jpg", "png"):
        raise ImageConversionError(f"unsupported CompressedImage format {msg.format!r}")
    buf = _as_uint8_buffer(msg.data)
    if buf.size == 0:
        raise ImageConversionError("CompressedImage has no data")
    try:
        decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageConversionError(
            f"cannot decode CompressedImage ({msg.format!r}): {exc}"
        ) from exc
    if decoded is None:
        raise ImageConversionError(
            f"cannot decode CompressedImage ({msg.format!r}, {buf.size} bytes): "
            "corrupt or truncated data"
        )
    if decoded.shape[0] * decoded.shape[1] > max_pixels:
        raise ImageConversionError(
            f"decoded image {decoded.shape} exceeds max_pixels={max_pixels}"
        )
    decoded = _to_8bit(decoded)
    what = f"CompressedImage ({msg.format!r})"
    if decoded.ndim == 2 or decoded.shape[2] == 1:
        return _cvt(decoded.reshape(decoded.shape[:2]), cv2.COLOR_GRAY2RGB, what)
    stored_rgb = target.startswith("rgb")
    if decoded.shape[2] == 4:
        return _cvt(decoded, cv2.COLOR_RGBA2RGB if stored_rgb else cv2.COLOR_BGRA2RGB, what)
    if decoded.shape[2] != 3:
        raise ImageConversionError(f"{what} decoded to {decoded.shape[2]} channels")
    return decoded if stored_rgb else _cvt(decoded, cv2.COLOR_BGR2RGB, what)


def to_rgb8(msg: object, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Convert an `Image` or a `CompressedImage` to RGB uint8 (H, W, 3)."""
    if hasattr(msg, "encoding") and hasattr(msg, "step"):
        return image_to_rgb8(msg, max_pixels=max_pixels)
    if hasattr(msg, "format"):
        return compressed_to_rgb8(msg, max_pixels=max_pixels)
    raise ImageConversionError(f"not an image message: {type(msg).__name__}")


def _to_byte_array(values: np.ndarray) -> array.array:
    """One copy into array.array('B'), which rclpy stores in a uint8[] field without copying."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(values).view(np.uint8).reshape(-1))
    return out


def _set_header(msg: object, stamp_ns: int, frame_id: str) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    msg.header.frame_id = frame_id


def array_to_image(
    pixels: np.ndarray,
    encoding: str = "rgb8",
    *,
    stamp_ns: int = 0,
    frame_id: str = "",
    row_padding_bytes: int = 0,
    big_endian: bool = False,
) -> object:
    """Build a `sensor_msgs/Image` from (H, W, C) or (H, W) pixels already in `encoding`'s layout.

    The dtype must match the encoding (uint8 for 8-bit, uint16 for 16-bit). `row_padding_bytes`
    adds zero bytes after every row (step > width * bytes per pixel); `big_endian` stores 16-bit
    values most-significant byte first.
    """
    from sensor_msgs.msg import Image

    layout = _ENCODINGS.get(encoding)
    if layout is None:
        raise ImageConversionError(f"unsupported image encoding {encoding!r}")
    values = pixels if pixels.ndim == 3 else pixels[..., np.newaxis]
    want_dtype = np.uint8 if layout.bits == 8 else np.uint16
    if values.dtype != want_dtype or values.shape[2] != layout.channels:
        raise ImageConversionError(
            f"pixels {pixels.dtype} {pixels.shape} do not fit {encoding} "
            f"({np.dtype(want_dtype).name} x{layout.channels})"
        )
    height, width = values.shape[:2]
    raw = values.astype(values.dtype.newbyteorder(">" if big_endian else "<"), copy=False)
    rows = np.ascontiguousarray(raw).view(np.uint8).reshape(height, -1)
    if row_padding_bytes:
        rows = np.pad(rows, ((0, 0), (0, row_padding_bytes)))
    msg = Image(check_fields=True)
    _set_header(msg, stamp_ns, frame_id)
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.is_bigendian = int(big_endian)
    msg.step = rows.shape[1]
    msg.data = _to_byte_array(rows)
    return msg


def rgb8_to_compressed(
    rgb: np.ndarray,
    fmt: str = "jpeg",
    *,
    stamp_ns: int = 0,
    frame_id: str = "",
    jpeg_quality: int = 90,
) -> object:
    """Encode RGB uint8 (H, W, 3) as an image_transport-style `sensor_msgs/CompressedImage`.

    `fmt` is "jpeg" or "png"; `format` becomes "rgb8; <fmt> compressed bgr8".
    """
    from sensor_msgs.msg import CompressedImage

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError(f"expected RGB uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if fmt not in ("jpeg", "png"):
        raise ImageConversionError(f"fmt must be 'jpeg' or 'png', got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == "jpeg" else []
    ext = ".jpg" if fmt == "jpeg" else ".png"
    ok, encoded = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageConversionError(f"cv2.imencode failed for {fmt}")
    msg = CompressedImage()
    _set_header(msg, stamp_ns, frame_id)
    msg.format = f"rgb8; {fmt} compressed bgr8"
    msg.data = _to_byte_array(encoded)
    return msg
