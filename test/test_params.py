"""NodeParams validation; params.py consistency with the YAML, launch file and DDS profile."""

from __future__ import annotations

import ast
import dataclasses
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from rosproc import next_domain_id

from alpamayo_ros.node import params as P
from alpamayo_ros.node.params import NodeParams

ROOT = Path(__file__).resolve().parents[1]
YAML_PATH = ROOT / "config" / "alpamayo.yaml"
LAUNCH_PATH = ROOT / "launch" / "alpamayo.launch.py"
FASTDDS_PATH = ROOT / "config" / "fastdds.xml"


def _valid(**changes) -> NodeParams:
    return NodeParams(model_dir="/m", **changes)


# --- validation -----------------------------------------------------------------------------

def test_defaults_valid_with_model_dir():
    p = _valid()
    assert p.reference_index == 1
    assert p.transport_of(3) == "raw"
    assert p.subscribed_topic(0) == "/cameras/camera_cross_left_120fov/image_raw"


def test_empty_model_dir_means_the_embedded_demo_model():
    from alpamayo_core.demo_model import demo_model_dir

    assert NodeParams().model_path == str(demo_model_dir())
    assert _valid().model_path == "/m"


@pytest.mark.parametrize(("changes", "field_name"), [
    ({"device": "gpu0"}, "device"),
    ({"backend": "tflite"}, "backend"),
    ({"camera_qos": "fast"}, "camera_qos"),
    ({"camera_transport": ("raw", "jpeg")}, "camera_transport"),
    ({"camera_transport": ("raw", "raw")}, "camera_transport"),
    ({"camera_topics": ("/a", "/b")}, "camera_topics"),
    ({"camera_names": ("a", "a", "b", "c")}, "camera_names"),
    ({"reference_camera": "rear"}, "reference_camera"),
    ({"plan_rate_hz": 0.0}, "plan_rate_hz"),
    ({"plan_rate_hz": float("nan")}, "plan_rate_hz"),
    ({"top_p": 1.5}, "top_p"),
    ({"num_traj_samples": 0}, "num_traj_samples"),
    ({"num_traj_samples": 2.0}, "num_traj_samples"),
    ({"seed": -2}, "seed"),
    ({"autostart": 1}, "autostart"),
    ({"odom_frame": ""}, "odom_frame"),
    ({"sync_tolerance_s": 0.0}, "sync_tolerance_s"),
    ({"decode_mode": "jit"}, "decode_mode"),
    ({"decode_mode": "cuda_graph"}, "decode_mode"),  # device is cpu
    ({"backend": "tensorrt", "num_traj_samples": 8}, "tensorrt_max_batch"),  # engine B <= 6
    ({"tensorrt_max_prefix": 8}, "tensorrt_max_prefix"),
])
def test_invalid_values_name_the_field(changes, field_name):
    kwargs = {"model_dir": "/m", **changes}
    with pytest.raises(ValueError, match=f"parameter {field_name}:"):
        NodeParams(**kwargs)


def test_tensorrt_parameters_name_the_engine_alpamayo_export_builds():
    """The node's engine options give the EngineSpec (hence the engine file name) that
    `alpamayo-export trt --max-batch 12 --max-prefix 8192` builds; other backends ignore
    them."""
    from alpamayo_core.backends import options_for
    from alpamayo_core.backends.tensorrt_backend import EngineSpec
    from alpamayo_ros.node.pipeline import expert_backend_options

    params = NodeParams(model_dir="/m", backend="tensorrt", num_traj_samples=12,
                        tensorrt_max_batch=12, tensorrt_max_prefix=8192)
    options = expert_backend_options(params)
    assert EngineSpec(**options_for("tensorrt", **options)) == EngineSpec(
        precision="auto", max_batch=12, max_prefix=8192)
    assert "max_batch" not in options_for("onnxruntime", **options)


def test_per_camera_transport_and_compressed_topic():
    p = _valid(camera_transport=("raw", "compressed", "raw", "compressed"))
    assert [p.transport_of(i) for i in range(4)] == ["raw", "compressed", "raw", "compressed"]
    assert p.subscribed_topic(1) == "/cameras/camera_front_wide_120fov/image_raw/compressed"


def test_from_values_rejects_unknown_and_converts_lists():
    p = NodeParams.from_values({"model_dir": "/m", "camera_transport": ["compressed"]})
    assert p.camera_transport == ("compressed",)
    with pytest.raises(ValueError, match="unknown parameter"):
        NodeParams.from_values({"model_dir": "/m", "plan_rate": 3.0})


def test_every_field_has_a_description_and_a_ros_type():
    for f in dataclasses.fields(NodeParams):
        assert len(f.metadata["description"]) > 10, f.name
        assert isinstance(f.default, (bool, int, float, str, tuple)), f.name


# --- YAML -----------------------------------------------------------------------------------

def _yaml_params() -> dict:
    content = yaml.safe_load(YAML_PATH.read_text())
    assert list(content) == ["/**"]  # any namespace and node name (test_launch_support.py)
    return content["/**"]["ros__parameters"]


def test_yaml_lists_every_parameter_once_with_default_and_type():
    values = _yaml_params()
    assert sorted(values) == sorted(P.parameter_names())
    for name, value in values.items():
        default = P.ros_default(name)
        assert type(value) is type(default), f"{name}: YAML type differs from the declaration"
        assert value == default, f"{name}: YAML value {value!r} != default {default!r}"


def test_yaml_loads_into_node_params_once_model_dir_is_set():
    values = dict(_yaml_params(), model_dir="/m")
    assert NodeParams.from_values(values) == _valid()


def test_yaml_documents_every_parameter_with_a_comment():
    lines = YAML_PATH.read_text().splitlines()
    for name in P.parameter_names():
        idx = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{name}:"))
        assert lines[idx - 1].strip().startswith("#"), f"{name} has no comment above it"


# --- launch file (parsed, not imported: launch_ros is not in the pip environment) ----------

def _launch_constants() -> dict:
    tree = ast.parse(LAUNCH_PATH.read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return out


def test_launch_file_matches_package_params_and_config():
    consts = _launch_constants()
    assert consts["PACKAGE"] in (ROOT / "package.xml").read_text()
    assert (ROOT / "scripts" / consts["EXECUTABLE"]).is_file()
    assert set(consts["PARAM_OVERRIDES"]) <= set(P.parameter_names())
    assert consts["REMAPS"]["odom"][0] == P.ros_default("odom_topic")
    text = LAUNCH_PATH.read_text()
    for needed in ('"config", "alpamayo.yaml"', '"config", "fastdds.xml"',
                   "FASTDDS_DEFAULT_PROFILES_FILE", "use_sim_time", "LifecycleNode"):
        assert needed in text, needed


# --- Fast DDS profile -----------------------------------------------------------------------

def test_fastdds_profile_has_large_shm_and_udp_only():
    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(FASTDDS_PATH).getroot()
    descriptors = {d.findtext("d:transport_id", namespaces=ns): d
                   for d in root.iterfind(".//d:transport_descriptor", ns)}
    types = {tid: d.findtext("d:type", namespaces=ns) for tid, d in descriptors.items()}
    assert sorted(types.values()) == ["SHM", "UDPv4"]
    shm = next(d for d in descriptors.values() if d.findtext("d:type", namespaces=ns) == "SHM")
    assert int(shm.findtext("d:segment_size", namespaces=ns)) >= 64 * 1024 * 1024
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    used = [t.text for t in participant.iterfind(".//d:userTransports/d:transport_id", ns)]
    assert sorted(used) == sorted(descriptors)
    assert participant.findtext(".//d:useBuiltinTransports", namespaces=ns) == "false"


# --- declared on a real rclpy node ----------------------------------------------------------

@pytest.fixture
def ros_node(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.node import Node

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOG_DIR", str(tmp_path / "roslog"))
    params_file = tmp_path / "p.yaml"
    params_file.write_text(yaml.safe_dump(
        {"alpamayo": {"ros__parameters": {"model_dir": "/m", "camera_qos": "reliable"}}}))
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(params_file)], context=context,
               domain_id=next_domain_id())
    node = Node("alpamayo", context=context)
    P.declare_parameters(node)
    yield node
    node.destroy_node()
    rclpy.shutdown(context=context)


def test_declared_parameters_read_back_with_descriptors(ros_node):
    p = NodeParams.from_node(ros_node)
    assert p == _valid(camera_qos="reliable")
    desc = ros_node.describe_parameter("plan_rate_hz")
    assert not desc.read_only
    assert desc.floating_point_range[0].to_value == 100.0
    assert ros_node.describe_parameter("model_dir").read_only
    assert "onnxruntime" in ros_node.describe_parameter("backend").additional_constraints


def test_set_parameters_are_validated(ros_node):
    from rclpy.parameter import Parameter

    ros_node.add_on_set_parameters_callback(
        lambda changes: _result(*P.validate_changes(ros_node, changes)))
    ok = ros_node.set_parameters([Parameter("plan_rate_hz", value=5.0)])[0]
    assert ok.successful and ros_node.get_parameter("plan_rate_hz").value == 5.0
    out_of_range = ros_node.set_parameters([Parameter("plan_rate_hz", value=500.0)])[0]
    assert not out_of_range.successful
    read_only = ros_node.set_parameters([Parameter("backend", value="torch")])[0]
    assert not read_only.successful
    ok, reason = P.validate_changes(ros_node, [Parameter("reference_camera", value="rear")])
    assert not ok and "reference_camera" in reason


def _result(ok: bool, reason: str):
    from rcl_interfaces.msg import SetParametersResult

    return SetParametersResult(successful=ok, reason=reason)
