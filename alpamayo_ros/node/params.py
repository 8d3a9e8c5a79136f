"""The alpamayo node's parameters: one typed, frozen, self-validating dataclass.

`NodeParams` is the single source of truth: every field is one ROS parameter, and its dataclass
metadata (`_spec`) carries the parameter's description, range, allowed values and whether it is
read-only (changing it needs a new configure). `declare_parameters` turns those fields into ROS
parameter declarations with `ParameterDescriptor`s, `NodeParams.from_node` reads them back, and
`validate_changes` is the body of the node's on-set-parameters callback: it rejects a change
that would make the whole set invalid, with the same message `NodeParams` raises.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alpamayo_core.inputs.cameras import DEFAULT_CAMERA_IDS, check_camera_ids
from alpamayo_core.model.config import ImageConfig

if TYPE_CHECKING:
    from rclpy.node import Node
    from rclpy.parameter import Parameter

BACKENDS = ("auto", "torch", "torch_static", "onnxruntime", "tensorrt", "torch_cuda_graph")
TRT_PRECISIONS = ("auto", "bf16", "fp16", "fp8", "fp32")
TRANSPORTS = ("raw", "compressed")
QOS_CHOICES = ("best_effort", "reliable", "auto")
DECODE_MODES = ("eager", "compile", "cuda_graph")
# The checkpoint's camera order and names (also the synthetic rig's and bag tools' names).
DEFAULT_CAMERAS: tuple[str, ...] = ImageConfig().cameras
_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def _spec(
    description: str,
    *,
    read_only: bool = True,
    float_range: tuple[float, float] | None = None,
    int_range: tuple[int, int] | None = None,
    choices: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Dataclass-field metadata describing one ROS parameter."""
    return {
        "description": description,
        "read_only": read_only,
        "float_range": float_range,
        "int_range": int_range,
        "choices": choices,
    }


def _param(default: Any, description: str, **kwargs: Any) -> Any:
    return field(default=default, metadata=_spec(description, **kwargs))


@dataclass(frozen=True)
class NodeParams:
    """All parameters of the alpamayo node (ROS parameter name = field name)."""

    # --- model (read-only: changing them needs cleanup + configure) ---
    model_dir: str = _param(
        "", "Checkpoint folder (config.json + *.safetensors + tokenizer). Empty: the embedded "
        "demo model (alpamayo_core/demo_model: trained on synthetic drives only)")
    device: str = _param("cpu", "Torch device: cpu, cuda or cuda:N")
    backend: str = _param(
        "auto", "Expert backend; auto picks the fastest available one that passes a parity "
        "self-check against the eager torch step", choices=BACKENDS)
    backend_fallback: bool = _param(
        True, "When the named backend cannot be built (e.g. no TensorRT engine: build it "
        "offline with alpamayo-export trt) or fails its parity self-check: true = use the next "
        "of the auto order and say so on /diagnostics; false = configure fails")
    tensorrt_precision: str = _param(
        "auto", "TensorRT engine precision to load; auto = bf16 where the GPU supports it, "
        "else fp32 (fp16/fp8 only when asked for)", choices=TRT_PRECISIONS)
    tensorrt_max_batch: int = _param(
        6, "Rows the TensorRT engine to load admits, as built by alpamayo-export trt "
        "--max-batch (part of the engine's name): at least num_traj_samples, twice that with "
        "Alpamayo 1.5 guidance", int_range=(1, 64))
    tensorrt_max_prefix: int = _param(
        4096, "Longest prefix (prompt + reasoning tokens) the TensorRT engine to load admits, "
        "as built by alpamayo-export trt --max-prefix", int_range=(16, 65536))
    decode_mode: str = _param(
        "eager", "Reasoning decode loop: eager; compile = torch.compile the decode step once "
        "per (rows, cache length) bucket (fuses the ~100 small operators of a token; the "
        "first plan of a bucket compiles: ~20 s on a CPU with an empty inductor cache, so "
        "keep warmup_on_configure on); cuda_graph = one CUDA graph per bucket (CUDA devices "
        "only)", choices=DECODE_MODES)
    warmup_on_configure: bool = _param(
        True, "Run one plan on blank inputs during configure so the first real plan is fast")
    # --- planning and sampling ---
    plan_rate_hz: float = _param(
        2.0, "Planning timer rate (Hz, node clock); a tick that finds the previous plan "
        "still running is skipped and counted", read_only=False, float_range=(0.01, 100.0))
    num_traj_samples: int = _param(
        1, "Trajectory samples per plan (K); the reference evaluates with 6",
        int_range=(1, 16), read_only=False)
    num_flow_steps: int = _param(
        0, "Flow-matching Euler steps; 0 = the checkpoint's flow.num_steps (10)",
        int_range=(0, 100), read_only=False)
    forward_only: bool = _param(
        True, "Integrate the trajectory with the speed clamped at >= 0 (never backwards); "
        "false = the reference's integration, which at a standstill can go a few tenths of a "
        "metre backwards (its start speed is fitted to the noisy odometry history)",
        read_only=False)
    temperature: float = _param(
        0.6, "Sampling temperature of the reasoning text (0 = greedy)",
        float_range=(0.0, 10.0), read_only=False)
    top_p: float = _param(
        0.98, "Nucleus (top-p) sampling threshold of the reasoning text",
        float_range=(0.001, 1.0), read_only=False)
    max_generation_tokens: int = _param(
        256, "Most reasoning tokens generated before the trajectory; a sample that reaches it "
        "without <|traj_future_start|> makes the plan DEGRADED", int_range=(1, 1024),
        read_only=False)
    seed: int = _param(
        -1, "Random seed of text sampling and flow noise; -1 = a new seed each plan",
        int_range=(-1, 2**31 - 1), read_only=False)
    # --- cameras ---
    camera_names: tuple[str, ...] = _param(
        DEFAULT_CAMERAS, "Camera names in the model's camera order")
    camera_ids: tuple[int, ...] = _param(
        DEFAULT_CAMERA_IDS, "Alpamayo camera id (0 front left, 1 front, 2 front right, 3 rear "
        "left, 4 rear, 5 rear right, 6 front tele) of each camera, same order as camera_names; "
        "unique; the node orders the cameras by id. Alpamayo 1.5: any 1-7 cameras; R1: its "
        "four (0, 1, 2, 6)")
    camera_topics: tuple[str, ...] = _param(
        tuple(f"/cameras/{name}/image_raw" for name in DEFAULT_CAMERAS),
        "Image topic per camera (same order as camera_names); with compressed transport the "
        "node subscribes to <topic>/compressed (image_transport convention)")
    camera_transport: tuple[str, ...] = _param(
        ("raw",), "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage): one "
        "entry for all cameras or one per camera", choices=TRANSPORTS)
    camera_qos: str = _param(
        "auto", "Camera subscription reliability; auto matches the publishers",
        choices=QOS_CHOICES)
    reference_camera: str = _param(
        "camera_front_wide_120fov", "Camera whose newest stamp defines the plan time t0")
    sync_tolerance_s: float = _param(
        0.05, "Largest |stamp - wanted time| (s) of a camera frame; beyond it the nearest frame "
        "is substituted and the plan is DEGRADED (INVALID beyond twice this)",
        read_only=False, float_range=(0.001, 1.0))
    max_image_age_s: float = _param(
        0.5, "Largest age (s, node clock - stamp) of the reference camera's newest frame; older "
        "means INVALID (stale)", read_only=False, float_range=(0.01, 60.0))
    max_future_stamp_s: float = _param(
        0.25, "Largest time (s) a camera or odometry stamp may be ahead of the node clock; "
        "beyond it the plan is INVALID (sensor clock or use_sim_time wrong)",
        read_only=False, float_range=(0.0, 10.0))
    # --- Alpamayo 1.5: navigation text and sampler ---
    route_max_age_s: float = _param(
        60.0, "A route text on ~/route older than this (s, node clock since it was received) "
        "is dropped with a diagnostic until a new one arrives", read_only=False,
        float_range=(0.1, 86400.0))
    guidance_weight: float = _param(
        0.0, "Alpamayo 1.5 classifier-free guidance weight w towards the route text: v = (1 - "
        "w) v_unguided + w v_guided; 0 = off; applied only while a route text is current; "
        "doubles the expert rows and holds 3-5x the VLM cache's memory more (README, "
        "Alpamayo 1.5 > Cost)", read_only=False, float_range=(0.0, 10.0))
    noise_temperature: float = _param(
        1.0, "Alpamayo 1.5: initial flow noise = randn x this (below 1: steadier, less "
        "diverse samples)", read_only=False, float_range=(0.01, 10.0))
    # --- odometry and ego history ---
    odom_topic: str = _param("/odom", "nav_msgs/Odometry topic (pose in odom_frame)")
    odom_frame: str = _param(
        "odom", "Frame of the odometry poses and of every published plan (REP-105)")
    history_max_gap_s: float = _param(
        0.25, "Largest gap (s) between two odometry messages that a history pose is "
        "interpolated across", float_range=(0.005, 5.0))
    odom_quat_norm_tolerance: float = _param(
        0.01, "Largest | |q| - 1 | of an odometry orientation quaternion; others are dropped "
        "and counted as invalid", float_range=(1e-6, 0.5))
    history_max_age_s: float = _param(
        0.2, "Largest time (s) from the newest odometry stamp to t0 (extrapolation limit); "
        "beyond it the history is INVALID", float_range=(0.0, 5.0))
    # --- node behaviour and outputs ---
    autostart: bool = _param(True, "Configure and activate at start (plain launches)")
    diagnostics_rate_hz: float = _param(
        1.0, "Rate (Hz, wall clock) of /diagnostics", float_range=(0.1, 100.0))
    plan_watchdog_periods: int = _param(
        10, "/diagnostics reports the planner ERROR when no plan finished for this many "
        "planning periods (wall clock) while active", int_range=(2, 1000), read_only=False)
    publish_markers: bool = _param(
        True, "Publish ~/markers (all samples, the selected one highlighted, reasoning text)",
        read_only=False)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_field(f, getattr(self, f.name))
        _require(bool(_DEVICE_RE.match(self.device)), "device",
                 f"must be cpu, cuda or cuda:N, got {self.device!r}")
        _require(self.backend != "tensorrt" or self.tensorrt_max_batch >= self.num_traj_samples,
                 "tensorrt_max_batch", f"{self.tensorrt_max_batch} rows is below "
                 f"num_traj_samples {self.num_traj_samples}; build an engine with "
                 "alpamayo-export trt --max-batch N and set this to N")
        _require(self.decode_mode != "cuda_graph" or self.device.startswith("cuda"),
                 "decode_mode", f"cuda_graph needs a CUDA device, device is {self.device!r}")
        n = len(self.camera_names)
        _require(n >= 1, "camera_names", "needs at least one camera")
        _require(len(set(self.camera_names)) == n, "camera_names", "has duplicate names")
        _require(all(self.camera_names), "camera_names", "has an empty name")
        _require(len(self.camera_ids) == n, "camera_ids",
                 f"needs one id per camera ({n}), got {len(self.camera_ids)}")
        check_camera_ids(sorted(self.camera_ids), "parameter camera_ids")
        _require(len(self.camera_topics) == n, "camera_topics",
                 f"needs one topic per camera ({n}), got {len(self.camera_topics)}")
        _require(all(t for t in self.camera_topics), "camera_topics", "has an empty topic")
        _require(len(self.camera_transport) in (1, n), "camera_transport",
                 f"needs 1 entry (all cameras) or {n} (one per camera), "
                 f"got {len(self.camera_transport)}")
        _require(self.reference_camera in self.camera_names, "reference_camera",
                 f"{self.reference_camera!r} is not one of camera_names {list(self.camera_names)}")
        for index, topic in enumerate(self.camera_topics):
            _require_topic(topic, f"camera_topics[{index}]")
        _require_topic(self.odom_topic, "odom_topic")
        _require(bool(self.odom_frame), "odom_frame", "must not be empty")

    def transport_of(self, camera_index: int) -> str:
        """raw or compressed for camera `camera_index` (model order)."""
        if len(self.camera_transport) == 1:
            return self.camera_transport[0]
        return self.camera_transport[camera_index]

    def subscribed_topic(self, camera_index: int) -> str:
        """The topic actually subscribed for a camera (adds /compressed for compressed)."""
        topic = self.camera_topics[camera_index]
        if self.transport_of(camera_index) == "compressed":
            return topic.rstrip("/") + "/compressed"
        return topic

    @property
    def cameras_by_id(self) -> tuple[tuple[int, str], ...]:
        """(camera id, camera name) pairs sorted by id: the order of the model's images."""
        return tuple(sorted(zip(self.camera_ids, self.camera_names, strict=True)))

    @property
    def model_path(self) -> str:
        """`model_dir`, or the embedded demo model's folder when it is empty."""
        if self.model_dir:
            return self.model_dir
        from alpamayo_core.demo_model import demo_model_dir

        return str(demo_model_dir())

    @property
    def reference_index(self) -> int:
        return self.camera_names.index(self.reference_camera)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeParams:
        """Build from a name -> value mapping (ROS lists become tuples; unknown names fail)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @classmethod
    def from_node(cls, node: Node) -> NodeParams:
        """Read every declared parameter of `node` (see `declare_parameters`)."""
        return cls.from_values(
            {f.name: node.get_parameter(f.name).value for f in dataclasses.fields(cls)})

    def replace(self, **changes: Any) -> NodeParams:
        return dataclasses.replace(self, **changes)


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ValueError(f"parameter {name}: {message}")


def _require_topic(topic: str, name: str) -> None:
    """ValueError naming the parameter unless `topic` is a valid ROS topic name."""
    from rclpy.exceptions import InvalidTopicNameException
    from rclpy.validate_topic_name import validate_topic_name

    _require(bool(topic), name, "must not be empty")
    try:
        validate_topic_name(topic)
    except InvalidTopicNameException as err:
        message = str(err).splitlines()[0]
        raise ValueError(f"parameter {name}: {topic!r} is not a valid topic name "
                         f"({message})") from None


def _check_field(f: dataclasses.Field, value: Any) -> None:
    """Type, range and choice checks from a field's metadata (mirrors the descriptor)."""
    meta = f.metadata
    default = f.default
    if isinstance(default, bool):
        _require(isinstance(value, bool), f.name, f"must be a bool, got {value!r}")
    elif isinstance(default, int):
        _require(isinstance(value, int) and not isinstance(value, bool), f.name,
                 f"must be an integer, got {value!r}")
    elif isinstance(default, float):
        _require(isinstance(value, (int, float)) and not isinstance(value, bool)
                 and math.isfinite(value), f.name, f"must be a finite number, got {value!r}")
    elif isinstance(default, str):
        _require(isinstance(value, str), f.name, f"must be a string, got {value!r}")
    elif all(isinstance(v, int) for v in default):
        _require(isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool)
                                                  for v in value), f.name,
                 f"must be a list of integers, got {value!r}")
    else:
        _require(isinstance(value, tuple) and all(isinstance(v, str) for v in value), f.name,
                 f"must be a list of strings, got {value!r}")
    if meta["float_range"] is not None:
        lo, hi = meta["float_range"]
        _require(lo <= value <= hi, f.name, f"must be in [{lo}, {hi}], got {value}")
    if meta["int_range"] is not None:
        lo, hi = meta["int_range"]
        _require(lo <= value <= hi, f.name, f"must be in [{lo}, {hi}], got {value}")
    if meta["choices"] is not None:
        items = value if isinstance(value, tuple) else (value,)
        bad = [v for v in items if v not in meta["choices"]]
        _require(not bad, f.name, f"must be one of {list(meta['choices'])}, got {bad}")


def parameter_descriptor(name: str) -> Any:
    """The rcl_interfaces ParameterDescriptor of one NodeParams field."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    f = {f.name: f for f in dataclasses.fields(NodeParams)}[name]
    meta = f.metadata
    desc = ParameterDescriptor(
        name=name, description=meta["description"], read_only=meta["read_only"])
    if meta["choices"] is not None:
        desc.additional_constraints = "one of: " + ", ".join(meta["choices"])
    if meta["float_range"] is not None:
        lo, hi = meta["float_range"]
        desc.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    if meta["int_range"] is not None:
        lo, hi = meta["int_range"]
        desc.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
    return desc


def parameter_range_text(name: str) -> str:
    """'range [lo, hi]', 'one of [...]' or 'type T' of a NodeParams field (for error lines);
    'unknown parameter' for other names."""
    fields = {f.name: f for f in dataclasses.fields(NodeParams)}
    if name not in fields:
        return "unknown parameter"
    meta = fields[name].metadata
    for key in ("float_range", "int_range"):
        if meta[key] is not None:
            return f"range [{meta[key][0]}, {meta[key][1]}]"
    if meta["choices"] is not None:
        return f"one of {list(meta['choices'])}"
    return f"type {type(fields[name].default).__name__}"


def ros_default(name: str) -> Any:
    """The default of one parameter as ROS declares it (tuples become lists)."""
    default = {f.name: f.default for f in dataclasses.fields(NodeParams)}[name]
    return list(default) if isinstance(default, tuple) else default


def declare_parameters(node: Node) -> None:
    """Declare every NodeParams field on `node` with its default and descriptor."""
    for f in dataclasses.fields(NodeParams):
        node.declare_parameter(f.name, ros_default(f.name), parameter_descriptor(f.name))


def validate_changes(node: Node, changes: list[Parameter]) -> tuple[bool, str]:
    """Would `changes` leave a valid parameter set? Returns (ok, reason) for the callback.

    Only the changed parameters plus the node's current values are checked, so a change is
    judged against everything else (e.g. reference_camera against camera_names).
    """
    values = {f.name: node.get_parameter(f.name).value for f in dataclasses.fields(NodeParams)}
    for p in changes:
        if p.name not in values:
            continue  # use_sim_time and other parameters that NodeParams does not own
        values[p.name] = p.value
    try:
        NodeParams.from_values(values)
    except ValueError as err:
        return False, str(err)
    return True, ""


def parameter_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(NodeParams))
