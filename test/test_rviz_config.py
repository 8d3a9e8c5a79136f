"""config/alpamayo.rviz shows the node's topics in its odom frame; replay.launch.py retargets it
to the launch's namespace, remaps and camera transport (launch itself is not installable from
PyPI, so the retargeting is tested as data)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from alpamayo_ros.node.params import ros_default
from alpamayo_ros.tools.rviz_layout import launch_topics, retarget, write_layout

ROOT = Path(__file__).resolve().parents[1]
RVIZ = ROOT / "config" / "alpamayo.rviz"
NODE_NAME = "alpamayo"


@pytest.fixture(scope="module")
def rviz():
    return yaml.safe_load(RVIZ.read_text(encoding="utf-8"))


def _displays(rviz) -> list[dict]:
    return rviz["Visualization Manager"]["Displays"]


def _topics_by_class(rviz) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for display in _displays(rviz):
        if "Topic" in display:
            out.setdefault(display["Class"], []).append(display["Topic"]["Value"])
    return out


def _node_outputs() -> dict[str, str]:
    """Output name -> message type of the node (fully qualified with the default node name)."""
    pytest.importorskip("alpamayo.msg", reason="build the interfaces: scripts/build_interfaces.sh")
    from alpamayo_ros.node import alpamayo_node as node

    return {f"/{NODE_NAME}/{name}": f"{t.__module__.split('.')[0]}/{t.__name__}"
            for name, t in node._OUTPUTS.items()}


def test_fixed_frame_is_the_node_odom_frame(rviz):
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == ros_default(
        "odom_frame")


def test_cameras_are_the_node_camera_topics_in_model_order(rviz):
    images = _topics_by_class(rviz)["rviz_default_plugins/Image"]
    assert images == ros_default("camera_topics")


def test_selected_path_samples_and_reasoning_come_from_the_node(rviz):
    outputs = _node_outputs()
    topics = _topics_by_class(rviz)
    assert "/alpamayo/trajectory" in topics["rviz_default_plugins/Path"]
    assert topics["rviz_default_plugins/MarkerArray"] == ["/alpamayo/markers"]
    assert outputs["/alpamayo/trajectory"] == "nav_msgs/Path"
    assert outputs["/alpamayo/markers"] == "visualization_msgs/MarkerArray"
    markers = next(d for d in _displays(rviz) if d["Class"].endswith("/MarkerArray"))
    assert set(markers["Namespaces"]) == {"alpamayo/samples", "alpamayo/reasoning"}
    assert topics["rviz_default_plugins/Odometry"] == [ros_default("odom_topic")]


def test_every_topic_is_a_node_input_or_output(rviz):
    known = set(_node_outputs()) | set(ros_default("camera_topics")) | {ros_default("odom_topic")}
    shown = {t for topics in _topics_by_class(rviz).values() for t in topics}
    assert shown <= known, shown - known


def test_marker_namespaces_match_the_message_builder(rviz):
    import inspect

    from alpamayo_ros.node.messages import plan_to_markers

    ns = inspect.signature(plan_to_markers).parameters["ns"].default
    markers = next(d for d in _displays(rviz) if d["Class"].endswith("/MarkerArray"))
    assert set(markers["Namespaces"]) == {f"{ns}/samples", f"{ns}/reasoning"}


def test_replay_launch_file_parses_and_retargets_the_rviz_config():
    source = (ROOT / "launch" / "replay.launch.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    assert '"alpamayo.rviz"' in source and "write_layout(" in source
    assert "use_sim_time:=true" in source and '"use_sim_time": "true"' in source


def _launched(rviz, **kwargs) -> dict[str, list[str]]:
    defaults = ros_default("camera_topics")
    options = {"camera_topics": defaults, "transports": ["raw"], "remaps": {},
               "namespace": "", **kwargs}
    topics = launch_topics(options.pop("camera_topics"), options.pop("transports"),
                           default_cameras=defaults, **options)
    return _topics_by_class(retarget(rviz, topics))


def test_defaults_leave_the_layout_unchanged(rviz):
    assert _launched(rviz) == _topics_by_class(rviz)


def test_compressed_cameras_get_the_compressed_topic(rviz):
    """RViz 2 (Jazzy+) takes an Image display's transport from a /compressed suffix."""
    images = _launched(rviz, transports=["compressed"])["rviz_default_plugins/Image"]
    assert images == [f"{t}/compressed" for t in ros_default("camera_topics")]
    mixed = _launched(rviz, transports=["raw", "compressed", "raw", "raw"])
    assert [t.endswith("/compressed") for t in mixed["rviz_default_plugins/Image"]] == [
        False, True, False, False]


def test_namespace_and_remaps_reach_the_layout(rviz):
    got = _launched(rviz, namespace="veh1",
                    remaps={"~/markers": "viz/markers", "/odom": "/ego/odom"})
    assert got["rviz_default_plugins/MarkerArray"] == ["/veh1/viz/markers"]
    assert sorted(got["rviz_default_plugins/Path"]) == ["/veh1/alpamayo/history",
                                                        "/veh1/alpamayo/trajectory"]
    assert got["rviz_default_plugins/Odometry"] == ["/ego/odom"]


def test_a_layout_topic_the_launch_does_not_know_fails(rviz):
    with pytest.raises(ValueError, match="shows /alpamayo/trajectory, which the launch"):
        retarget(rviz, {"/odom": "/odom"})


def test_written_layout_loads_back(rviz, tmp_path):
    topics = launch_topics(ros_default("camera_topics"), ["compressed"], remaps={},
                           default_cameras=ros_default("camera_topics"))
    out = write_layout(RVIZ, tmp_path / "logs" / "alpamayo.rviz", topics)
    back = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert _topics_by_class(back) == _topics_by_class(retarget(rviz, topics))
    assert back["Visualization Manager"]["Global Options"]["Fixed Frame"] == "odom"
