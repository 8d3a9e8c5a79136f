"""ROS 2 bags with rosbags (pure Python, no rclpy): write synthetic drives, read bags back.

Writing: `write_drive_bag` stores a `SyntheticDrive` as a rosbag2 directory (metadata.yaml v9)
with MCAP (`.mcap`) or SQLite3 (`.db3`) storage. Topics:
    /cameras/<name>/image_raw             sensor_msgs/msg/Image, rgb8, frame_id <name>
    /cameras/<name>/image_raw/compressed  sensor_msgs/msg/CompressedImage, JPEG (with --compressed)
    /odom                                 nav_msgs/msg/Odometry, odom -> base_link, twist in
                                          base_link
Messages are serialised with the rosbags typestore (`Stores.ROS2_KILTED`); the bag receive time
equals the header stamp.

Reading: `iter_raw` yields (topic, msgtype, t_ns, CDR bytes) in time order from any rosbag2
directory (or a bare .mcap file); `decode` turns CDR bytes into rosbags message objects;
`register_msg_dir` adds the project's `msg/*.msg` types to a typestore.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from alpamayo_core.sim.drive import OdomSample, SyntheticDrive
from alpamayo_ros.tools.bag_writer import BagWriter

LOG = logging.getLogger(__name__)

ODOM_TOPIC = "/odom"
#: The node's navigation-text input (Alpamayo 1.5), as the default node name resolves `~/route`.
ROUTE_TOPIC = "/alpamayo/route"
STRING_MSGTYPE = "std_msgs/msg/String"
IMAGE_MSGTYPE = "sensor_msgs/msg/Image"
COMPRESSED_MSGTYPE = "sensor_msgs/msg/CompressedImage"
ODOM_MSGTYPE = "nav_msgs/msg/Odometry"
# image_transport's compressed format string: "<raw encoding>; jpeg compressed <jpeg encoding>".
JPEG_FORMAT = "rgb8; jpeg compressed bgr8"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def image_topic(camera: str, compressed: bool) -> str:
    """Topic of a camera's images (`/cameras/<name>/image_raw[/compressed]`)."""
    return f"/cameras/{camera}/image_raw" + ("/compressed" if compressed else "")


def make_typestore(msg_dir: Path | str | None = None, package: str = "alpamayo") -> Typestore:
    """A kilted typestore, plus the `msg_dir/*.msg` types of `package` when msg_dir exists."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    if msg_dir is not None and Path(msg_dir).is_dir():
        register_msg_dir(typestore, msg_dir, package)
    return typestore


def register_msg_dir(
    typestore: Typestore, msg_dir: Path | str, package: str = "alpamayo"
) -> list[str]:
    """Register every `msg_dir/*.msg` as `<package>/msg/<Stem>`; returns the type names.

    All files are registered together, so messages may reference each other (unqualified names
    resolve to `package`).
    """
    msg_dir = Path(msg_dir)
    if not msg_dir.is_dir():
        raise FileNotFoundError(f"message directory {msg_dir} does not exist")
    types: dict[str, Any] = {}
    sources: dict[str, Path] = {}
    for path in sorted(msg_dir.glob("*.msg")):
        name = f"{package}/msg/{path.stem}"
        try:
            types.update(get_types_from_msg(path.read_text(encoding="utf-8"), name))
        except Exception as exc:  # rosbags raises its own parse errors
            raise ValueError(f"cannot parse {path} as a ROS 2 message: {exc}") from exc
        sources[name] = path
    _check_references(types, sources, typestore)
    typestore.register(types)
    LOG.debug("registered %d message types from %s", len(types), msg_dir)
    return sorted(types)


def _check_references(types: dict[str, Any], sources: dict[str, Path],
                      typestore: Typestore) -> None:
    """Raise ValueError naming the file when a field's message type is unknown."""
    for name, (_, fields) in types.items():
        for field_name, (node_type, detail) in fields:
            ref = detail[0] if node_type.name in ("ARRAY", "SEQUENCE") else (node_type, detail)
            if ref[0].name == "NAME" and ref[1] not in types and ref[1] not in typestore.types:
                raise ValueError(f"{sources[name]}: field {field_name!r} has unknown type "
                                 f"{ref[1]!r}; define it in {sources[name].parent} or use a "
                                 "known package type")


# -- building messages ------------------------------------------------------------------------


def _header(typestore: Typestore, stamp_ns: int, frame_id: str) -> Any:
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    time_cls = typestore.types["builtin_interfaces/msg/Time"]
    return typestore.types["std_msgs/msg/Header"](time_cls(sec, nanosec), frame_id)


def image_msg(typestore: Typestore, stamp_ns: int, frame_id: str, rgb: np.ndarray) -> Any:
    """sensor_msgs/msg/Image (rgb8) from an (H, W, 3) uint8 RGB array."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    data = np.ascontiguousarray(rgb).reshape(-1)
    return typestore.types[IMAGE_MSGTYPE](
        _header(typestore, stamp_ns, frame_id), h, w, "rgb8", 0, 3 * w, data
    )


def compressed_image_msg(
    typestore: Typestore, stamp_ns: int, frame_id: str, rgb: np.ndarray, jpeg_quality: int = 90
) -> Any:
    """sensor_msgs/msg/CompressedImage (JPEG) from an (H, W, 3) uint8 RGB array."""
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    )
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {rgb.shape}")
    return typestore.types[COMPRESSED_MSGTYPE](
        _header(typestore, stamp_ns, frame_id), JPEG_FORMAT, jpeg.reshape(-1)
    )


def odometry_msg(
    typestore: Typestore,
    sample: OdomSample,
    frame_id: str = "odom",
    child_frame_id: str = "base_link",
) -> Any:
    """nav_msgs/msg/Odometry from an `OdomSample` (diagonal covariances from its noise)."""
    types = typestore.types
    vec3, quat = types["geometry_msgs/msg/Vector3"], types["geometry_msgs/msg/Quaternion"]
    x, y, z = (float(v) for v in sample.xyz_m)
    pose = types["geometry_msgs/msg/Pose"](
        types["geometry_msgs/msg/Point"](x, y, z), quat(*(float(q) for q in sample.quat_xyzw))
    )
    pos_var, yaw_var = sample.pos_std_m**2, sample.yaw_std_rad**2
    pose_cov = np.diag([pos_var, pos_var, 1e-6, 1e-6, 1e-6, yaw_var]).reshape(-1)
    twist = types["geometry_msgs/msg/Twist"](
        vec3(*(float(v) for v in sample.linear_mps)), vec3(*(float(v) for v in sample.angular_rps))
    )
    twist_cov = np.diag([1e-4] * 6).reshape(-1)
    return types[ODOM_MSGTYPE](
        _header(typestore, sample.stamp_ns, frame_id),
        child_frame_id,
        types["geometry_msgs/msg/PoseWithCovariance"](pose, pose_cov),
        types["geometry_msgs/msg/TwistWithCovariance"](twist, twist_cov),
    )


# -- writing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BagWriteOptions:
    """How to store a drive: `storage` in {"mcap", "sqlite3"}; JPEG quality in [1, 100];
    `route_text` (Alpamayo 1.5 navigation text, e.g. "Turn left in 50m"): when set, published
    once on `route_topic` at the drive's start, offered reliable + transient-local (the node's
    `~/route` QoS; the replay tool republishes with the offered QoS)."""

    storage: str = "mcap"
    compressed: bool = False
    jpeg_quality: int = 90
    route_text: str = ""
    route_topic: str = ROUTE_TOPIC

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ValueError(
                f"BagWriteOptions.storage: must be one of {sorted(STORAGES)}, got {self.storage!r}"
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(
                f"BagWriteOptions.jpeg_quality: must be in [1, 100], got {self.jpeg_quality}"
            )


@dataclass(frozen=True)
class BagSummary:
    """What was written: the bag directory, message counts per topic, first/last stamps."""

    path: Path
    counts: dict[str, int] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0


def write_drive_bag(
    drive: SyntheticDrive,
    out: Path | str,
    options: BagWriteOptions | None = None,
    on_event: Callable[[], None] | None = None,
) -> BagSummary:
    """Write `drive` as a rosbag2 directory at `out` (must not exist yet).

    Args:
        on_event: called once per written message (for progress bars).
    """
    options = options or BagWriteOptions()
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new bag path or delete it")
    typestore = get_typestore(Stores.ROS2_KILTED)
    counts: Counter[str] = Counter()
    stamps: list[int] = []
    with BagWriter(out, version=9, storage_plugin=STORAGES[options.storage]) as writer:
        connections = _add_connections(writer, typestore, drive, options.compressed)
        writer.set_custom_data("scene", drive.config.kind)  # the fleet report's scene tag
        if options.route_text:
            start_ns = next(iter(drive.events())).stamp_ns
            _write_route(writer, typestore, options, start_ns)
            counts[options.route_topic] += 1
            stamps.append(start_ns)
        for event in drive.events():
            topic, msgtype, msg = _event_message(typestore, event, options)
            writer.write(
                connections[topic], event.stamp_ns, bytes(typestore.serialize_cdr(msg, msgtype))
            )
            counts[topic] += 1
            stamps.append(event.stamp_ns)
            if on_event is not None:
                on_event()
    LOG.info("wrote %d messages to %s", sum(counts.values()), out)
    return BagSummary(out, dict(counts), min(stamps, default=0), max(stamps, default=0))


def _write_route(writer: BagWriter, typestore: Typestore, options: BagWriteOptions,
                 stamp_ns: int) -> None:
    """The route text as one std_msgs/String, offered reliable + transient-local (depth 1)."""
    from rosbags.rosbag2.metadata import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    never = QosTime(0, 0)
    qos = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
              never, never, QosLiveliness.AUTOMATIC, never, False)
    conn = writer.add_connection(options.route_topic, STRING_MSGTYPE, typestore=typestore,
                                 offered_qos_profiles=[qos])
    msg = typestore.types[STRING_MSGTYPE](options.route_text)
    writer.write(conn, stamp_ns, bytes(typestore.serialize_cdr(msg, STRING_MSGTYPE)))


def _add_connections(
    writer: BagWriter, typestore: Typestore, drive: SyntheticDrive, compressed: bool
) -> dict[str, Any]:
    msgtype = COMPRESSED_MSGTYPE if compressed else IMAGE_MSGTYPE
    connections = {
        ODOM_TOPIC: writer.add_connection(ODOM_TOPIC, ODOM_MSGTYPE, typestore=typestore)
    }
    for name in drive.config.camera_names:
        topic = image_topic(name, compressed)
        connections[topic] = writer.add_connection(topic, msgtype, typestore=typestore)
    return connections


def _event_message(typestore: Typestore, event, options: BagWriteOptions) -> tuple[str, str, Any]:
    """(topic, msgtype, message) for one `DriveEvent`."""
    if event.kind == "odom":
        return ODOM_TOPIC, ODOM_MSGTYPE, odometry_msg(typestore, event.payload)
    topic = image_topic(event.camera, options.compressed)
    if options.compressed:
        msg = compressed_image_msg(
            typestore, event.stamp_ns, event.camera, event.payload, options.jpeg_quality
        )
        return topic, COMPRESSED_MSGTYPE, msg
    return topic, IMAGE_MSGTYPE, image_msg(typestore, event.stamp_ns, event.camera, event.payload)


# -- reading ----------------------------------------------------------------------------------


class RawMessage(NamedTuple):
    """One bag message: topic, type name, receive time (ns) and serialised CDR bytes."""

    topic: str
    msgtype: str
    t_ns: int
    data: bytes


def iter_raw(bag: Path | str, topics: list[str] | None = None) -> Iterator[RawMessage]:
    """Messages of a rosbag2 directory or .mcap file in time order (optionally some topics)."""
    with AnyReader([Path(bag)]) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, t_ns, raw in reader.messages(connections=conns):
            yield RawMessage(conn.topic, conn.msgtype, int(t_ns), bytes(raw))


def decode(raw: RawMessage, typestore: Typestore | None = None) -> Any:
    """Deserialise a `RawMessage` with a typestore (kilted by default)."""
    typestore = typestore or get_typestore(Stores.ROS2_KILTED)
    if raw.msgtype not in typestore.types:
        raise KeyError(
            f"type {raw.msgtype} is not in the typestore: register it first "
            "(register_msg_dir for the project's msg/ types)"
        )
    return typestore.deserialize_cdr(raw.data, raw.msgtype)


def topic_counts(bag: Path | str) -> dict[str, int]:
    """Message count per topic, from the bag's metadata."""
    with AnyReader([Path(bag)]) as reader:
        counts: Counter[str] = Counter()
        for conn in reader.connections:
            counts[conn.topic] += conn.msgcount
        return dict(counts)


def image_from_msg(msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a decoded rgb8/bgr8 Image or JPEG/PNG CompressedImage."""
    if hasattr(msg, "format"):
        bgr = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot decode compressed image with format {msg.format!r}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if msg.encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"image_from_msg handles rgb8/bgr8, got {msg.encoding!r}")
    rows = np.asarray(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    image = rows[:, : 3 * msg.width].reshape(msg.height, msg.width, 3)
    return image if msg.encoding == "rgb8" else image[:, :, ::-1]
