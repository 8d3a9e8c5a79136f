"""Synthetic sensor publisher for node tests (a separate process, like a real driver).

Publishes N cameras (default the model's 4, synthetic road scenes from
`alpamayo_core.sim.drive`, raw rgb8 `Image` or JPEG `CompressedImage` per camera) at
--camera-rate Hz and `nav_msgs/Odometry` at --odom-rate Hz, both with stamp jitter, for a
straight drive at constant speed along +x of `odom` (x = speed * (stamp - start), yaw 0).
Stamps come from the wall clock, so the node's ages are real.

stdin commands (one per line; each is answered with "ACK <command>"):
    fault <mode> [camera]   switch a fault on (camera defaults to the last one); modes:
                            cameras: stop_camera, truncated_jpeg, wrong_encoding, wrong_size
                            (half size), hdr_jpeg (a float Radiance HDR file labelled jpeg),
                            odd_yuv (raw yuv422, odd width), aspect (4:3 crop, stretched),
                            mixed_res (every camera: JPEG 1/3 size, raw 1/4 size);
                            odometry: stop_odom, nan_pose, map_frame (every other message in
                            frame map, 50 m away), tiny_quat (quaternion (1e-5, 0, 0, 0)),
                            nonfinite_cov (NaN covariance, inf twist), out_of_order (an extra
                            message 10 ms older after each), flood (2 kHz of stamps);
                            all: jump_back (-5 s), future (+100 s), duplicate
    clear                   all faults off
    quit                    exit (end of stdin does not stop the publisher)
Prints "READY" once its publishers exist, "MATCHED" once every publisher has a subscriber and,
with --print-stamps CAMERA, "STAMP <ns>" for each image of that camera.

    python test/sensor_publisher.py --transport compressed --width 1920 --height 1080
"""

from __future__ import annotations

import argparse
import array
import math
import sys
import threading
import time

import numpy as np
import rclpy
from nav_msgs.msg import Odometry
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from alpamayo_core.sim.drive import SceneConfig, SyntheticDrive
from alpamayo_ros.node.image_conversion import array_to_image, rgb8_to_compressed
from alpamayo_ros.node.params import DEFAULT_CAMERAS

FAULTS = ("stop_camera", "stop_odom", "jump_back", "duplicate", "nan_pose", "truncated_jpeg",
          "wrong_encoding", "wrong_size", "hdr_jpeg", "odd_yuv", "aspect", "mixed_res",
          "map_frame", "tiny_quat", "nonfinite_cov", "out_of_order", "flood", "future")
JUMP_BACK_S = 5.0
FUTURE_S = 100.0
FLOOD_HZ = 2000.0
_CAMERA_SKEW_S = 0.005  # camera i is stamped i * 5 ms before the tick (unsynchronised rig)


def _stamp(msg_header, stamp_ns: int) -> None:
    msg_header.stamp.sec, msg_header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)



_STDOUT_LOCK = threading.Lock()


def emit(line: str) -> None:
    """One whole line to stdout: the publisher and stdin threads both report, and print()'s
    separate writes of text and newline could interleave into one unparseable line."""
    with _STDOUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

class Faults:
    """The active faults (mode -> camera or None), shared with the stdin thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, str | None] = {}

    def apply(self, words: list[str], default_camera: str) -> None:
        with self._lock:
            if words[0] == "clear":
                self._active.clear()
            elif words[0] == "fault" and len(words) >= 2 and words[1] in FAULTS:
                self._active[words[1]] = words[2] if len(words) > 2 else default_camera
            else:
                raise ValueError(f"unknown command {' '.join(words)!r}")

    def on(self, mode: str, camera: str | None = None) -> bool:
        with self._lock:
            if mode not in self._active:
                return False
            return camera is None or self._active[mode] == camera


class SensorPublisher(Node):
    def __init__(self, args: argparse.Namespace, faults: Faults) -> None:
        super().__init__("sensor_publisher")
        self.args, self.faults = args, faults
        self.cameras = tuple(args.cameras)
        self.transports = _per_camera(args.transport, len(self.cameras))
        qos = QoSProfile(depth=2, reliability=ReliabilityPolicy[args.reliability.upper()])
        self.cam_pubs = [
            self.create_publisher(CompressedImage if tr == "compressed" else Image,
                                  f"/cameras/{name}/image_raw"
                                  + ("/compressed" if tr == "compressed" else ""), qos)
            for name, tr in zip(self.cameras, self.transports, strict=True)]
        self.odom_pub = self.create_publisher(Odometry, args.odom_topic, 20)
        self.frames = self._make_frames()
        self.rng = np.random.default_rng(args.seed)
        self.start_ns = time.time_ns()
        self.create_timer(1.0 / args.camera_rate, self._publish_cameras)
        self.create_timer(1.0 / args.odom_rate, self._publish_odom)
        self._matched = False
        self.create_timer(0.1, self._check_matched)

    def _make_frames(self) -> list[dict[str, object]]:
        """Per camera: the raw and JPEG messages (full and half size), rendered once."""
        w, h = self.args.width, self.args.height
        drive = SyntheticDrive(SceneConfig(seconds=1.0, width=w, height=h, seed=self.args.seed))
        rig = drive.config.camera_names
        t_ns = drive.config.start_ns + 500_000_000
        frames = []
        for i, _ in enumerate(self.cameras):
            rgb = drive.render(rig[i % len(rig)], t_ns)
            small = np.ascontiguousarray(rgb[::2, ::2])
            frames.append({
                "raw": array_to_image(rgb, "rgb8"), "raw_small": array_to_image(small, "rgb8"),
                "jpeg": rgb8_to_compressed(rgb), "jpeg_small": rgb8_to_compressed(small),
                "raw_mixed": array_to_image(np.ascontiguousarray(rgb[::4, ::4]), "rgb8"),
                "jpeg_mixed": rgb8_to_compressed(np.ascontiguousarray(rgb[::3, ::3])),
                "raw_aspect": array_to_image(_crop_4_3(rgb), "rgb8"),
                "jpeg_aspect": rgb8_to_compressed(_crop_4_3(rgb)),
                "hdr": _hdr_bytes(small), "odd_yuv": _odd_yuv(w - 1, h)})
        return frames

    def now_ns(self) -> int:
        offset = -int(JUMP_BACK_S * 1e9) if self.faults.on("jump_back") else 0
        offset += int(FUTURE_S * 1e9) if self.faults.on("future") else 0
        return time.time_ns() + offset

    def _publish(self, pub, msg) -> None:
        pub.publish(msg)
        if self.faults.on("duplicate"):
            pub.publish(msg)

    def _publish_cameras(self) -> None:
        tick_ns = self.now_ns()
        for i, name in enumerate(self.cameras):
            if self.faults.on("stop_camera", name):
                continue
            jitter_ns = int(self.rng.uniform(0.0, self.args.jitter_s) * 1e9)
            stamp_ns = tick_ns - int(i * _CAMERA_SKEW_S * 1e9) - jitter_ns
            msg = self._camera_msg(i, name)
            _stamp(msg.header, stamp_ns)
            msg.header.frame_id = name
            self._publish(self.cam_pubs[i], msg)
            if name == self.args.print_stamps:
                emit(f"STAMP {stamp_ns}")

    def _camera_msg(self, index: int, name: str):
        frames = self.frames[index]
        size = ""
        if self.faults.on("wrong_size", name):
            size = "_small"
        if self.faults.on("aspect", name):
            size = "_aspect"
        if self.faults.on("mixed_res"):
            size = "_mixed"
        if self.transports[index] == "compressed":
            msg = _copy_compressed(frames["jpeg" + size])
            if self.faults.on("truncated_jpeg", name):
                msg.data = msg.data[: len(msg.data) // 2]
            if self.faults.on("wrong_encoding", name):
                msg.format = "rgb8; webp compressed rgb8"
            if self.faults.on("hdr_jpeg", name):
                msg.data = frames["hdr"]
            return msg
        if self.faults.on("odd_yuv", name):
            return frames["odd_yuv"]
        msg = frames["raw" + size]
        msg.encoding = "rgb9" if self.faults.on("wrong_encoding", name) else "rgb8"
        return msg

    def _publish_odom(self) -> None:
        if self.faults.on("stop_odom"):
            return
        jitter_s = self.rng.uniform(-self.args.jitter_s, self.args.jitter_s) / 2.0
        true_ns = time.time_ns() + int(jitter_s * 1e9)
        offset_ns = self.now_ns() - time.time_ns()
        last_ns, self._last_true_ns = getattr(self, "_last_true_ns", true_ns), true_ns
        if self.faults.on("flood"):  # stamps every 0.5 ms since the previous message
            for stamp_ns in range(last_ns + int(1e9 / FLOOD_HZ), true_ns, int(1e9 / FLOOD_HZ)):
                self._publish(self.odom_pub, self._odom_msg(stamp_ns, offset_ns))
        self._odd_message = not getattr(self, "_odd_message", False)
        msg = self._odom_msg(true_ns, offset_ns)
        self._publish(self.odom_pub, msg)
        if self.faults.on("out_of_order"):
            self._publish(self.odom_pub, self._odom_msg(true_ns - 10_000_000, offset_ns))

    def _odom_msg(self, true_ns: int, offset_ns: int) -> Odometry:
        """The pose at `true_ns` stamped `true_ns + offset_ns`, with the odometry faults."""
        msg = Odometry()
        _stamp(msg.header, true_ns + offset_ns)
        msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
        x_m = self.args.speed * (true_ns - self.start_ns) * 1e-9
        msg.pose.pose.position.x = math.nan if self.faults.on("nan_pose") else x_m
        if self.faults.on("map_frame") and self._odd_message:
            msg.header.frame_id = "map"
            msg.pose.pose.position.y = 50.0
        q = msg.pose.pose.orientation
        q.x, q.w = (1e-5, 0.0) if self.faults.on("tiny_quat") else (0.0, 1.0)
        msg.twist.twist.linear.x = self.args.speed
        if self.faults.on("nonfinite_cov"):
            msg.pose.covariance[0] = math.nan
            msg.twist.twist.angular.z = math.inf
        return msg

    def _check_matched(self) -> None:
        if not self._matched and all(
                p.get_subscription_count() > 0 for p in (*self.cam_pubs, self.odom_pub)):
            self._matched = True
            emit("MATCHED")


def _crop_4_3(rgb: np.ndarray) -> np.ndarray:
    """The centre 4:3 part of a 16:9 image."""
    h, w = rgb.shape[:2]
    keep = h * 4 // 3
    return np.ascontiguousarray(rgb[:, (w - keep) // 2:(w - keep) // 2 + keep])


def _hdr_bytes(rgb: np.ndarray) -> array.array:
    """A Radiance HDR (float32) file of the image: what a float camera writes."""
    import cv2

    ok, data = cv2.imencode(".hdr", rgb.astype(np.float32) / 255.0)
    assert ok, "cv2 cannot write .hdr"
    return array.array("B", data.tobytes())


def _odd_yuv(width: int, height: int) -> Image:
    """A raw yuv422 frame of odd width (4:2:2 needs pixel pairs)."""
    msg = Image()
    msg.height, msg.width, msg.encoding, msg.step = height, width, "yuv422", 2 * width
    msg.data = array.array("B", bytes(2 * width * height))
    return msg


def _copy_compressed(src: CompressedImage) -> CompressedImage:
    msg = CompressedImage()
    msg.format, msg.data = src.format, src.data
    return msg


def _per_camera(values: list[str], n: int) -> list[str]:
    if len(values) not in (1, n):
        raise SystemExit(f"--transport needs 1 or {n} values, got {values}")
    return values * n if len(values) == 1 else values


def _stdin_loop(faults: Faults, default_camera: str) -> None:
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            rclpy.try_shutdown()
            return
        try:
            faults.apply(words, default_camera)
            emit(f"ACK {' '.join(words)}")
        except ValueError as err:
            emit(f"ERROR {err}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", nargs="+", default=list(DEFAULT_CAMERAS))
    p.add_argument("--transport", nargs="+", default=["raw"], choices=("raw", "compressed"))
    p.add_argument("--reliability", default="best_effort", choices=("best_effort", "reliable"))
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--camera-rate", type=float, default=10.0, help="Hz")
    p.add_argument("--odom-rate", type=float, default=50.0, help="Hz")
    p.add_argument("--odom-topic", default="/odom")
    p.add_argument("--speed", type=float, default=10.0, help="m/s along +x of odom")
    p.add_argument("--jitter-s", type=float, default=0.004, help="stamp jitter (s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--print-stamps", default="", metavar="CAMERA",
                   help='print "STAMP <ns>" for every image of this camera')
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rclpy.init()
    faults = Faults()
    node = SensorPublisher(args, faults)
    threading.Thread(target=_stdin_loop, args=(faults, args.cameras[-1]), daemon=True).start()
    emit("READY")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
