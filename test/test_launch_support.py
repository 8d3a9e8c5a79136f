"""The launch files' command lines as data (launch/launch_ros are not installable from PyPI):
`ros2 bag play` argv against rosbag2's grammar, node parameters through rclpy's own
`--params-file`/`-p`/`-r __ns`/`-r __node` handling in a separate process, camera transport
from a real bag, the RViz decision, and the launch files' use of all of it."""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rosproc import next_domain_id, ros_env

from alpamayo_core.sim.drive import SceneConfig, SyntheticDrive
from alpamayo_ros.node.params import ros_default
from alpamayo_ros.tools import launch_support as ls
from alpamayo_ros.tools.bag_io import BagWriteOptions, write_drive_bag
from alpamayo_ros.tools.processes import node_params_file

ROOT = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).with_name("params_probe.py")


# --- `ros2 bag play` -------------------------------------------------------------------------

def ros2_bag_play_parser() -> argparse.ArgumentParser:
    """The part of `ros2 bag play`'s grammar the launch file uses, as declared by rosbag2's
    ros2bag/ros2bag/verb/play.py (ros2/rosbag2, read at commit e45d1edb): a positional bag
    path; -r/--rate float; -l/--loop flag; --clock with an optional float value (const 40);
    -d/--delay float; --remap/-m taking one or more rules. Options not used here are omitted,
    so anything unexpected is rejected like the real parser does."""
    parser = argparse.ArgumentParser(prog="ros2 bag play")
    parser.add_argument("bag_file")
    parser.add_argument("-r", "--rate", type=float, default=1.0)
    parser.add_argument("-l", "--loop", action="store_true")
    parser.add_argument("--clock", type=float, nargs="?", const=40, default=0)
    parser.add_argument("-d", "--delay", type=float, default=0.0)
    parser.add_argument("--remap", "-m", default="", nargs="+")
    return parser


def _parse_play(argv: list[str]) -> argparse.Namespace:
    assert argv[:3] == ["ros2", "bag", "play"]
    return ros2_bag_play_parser().parse_args(argv[3:])


def test_the_grammar_rejects_the_old_empty_loop_argument():
    old = ["ros2", "bag", "play", "drive", "--clock", "--rate", "1.0", ""]
    with pytest.raises(SystemExit):  # "unrecognized arguments: " as reported in the issue
        _parse_play(old)


@pytest.mark.parametrize("loop", [False, True])
def test_bag_play_argv_parses_with_rosbag2_grammar(loop):
    argv = ls.bag_play_argv("/data/drive", rate=0.5, loop=loop)
    assert "" not in argv
    args = _parse_play(argv)
    assert (args.bag_file, args.rate, args.loop, args.clock) == ("/data/drive", 0.5, loop, 100.0)


def test_bag_play_remaps_come_last_and_parse():
    argv = ls.bag_play_argv("b", remaps=["/odom:=/ego/odom", "/a:=/b"])
    args = _parse_play(argv)
    assert args.remap == ["/odom:=/ego/odom", "/a:=/b"] and args.bag_file == "b"
    with pytest.raises(ValueError, match="must be > 0"):
        ls.bag_play_argv("b", rate=0.0)


# --- small parsers ---------------------------------------------------------------------------

def test_parse_bool_and_transport():
    assert [ls.parse_bool("loop", v) for v in ("True", "1", "no", "off")] == [True, True,
                                                                             False, False]
    with pytest.raises(ValueError, match="loop:='maybe'"):
        ls.parse_bool("loop", "maybe")
    assert ls.parse_transport("raw, compressed") == ["raw", "compressed"]
    with pytest.raises(ValueError, match="camera_transport"):
        ls.parse_transport("jpeg")


def test_launch_overrides_skip_empty_and_split_transport():
    got = ls.launch_overrides({"model_dir": "/m", "device": "", "camera_transport": "compressed"},
                              use_sim_time=True)
    assert got == {"model_dir": "/m", "camera_transport": ["compressed"], "use_sim_time": True}


def test_resolve_topic_like_rcl():
    assert ls.resolve_topic("~/plan", "alpamayo", "veh1") == "/veh1/alpamayo/plan"
    assert ls.resolve_topic("~/plan") == "/alpamayo/plan"
    assert ls.resolve_topic("viz/m", "alpamayo", "/veh1/") == "/veh1/viz/m"
    assert ls.resolve_topic("/odom", "alpamayo", "veh1") == "/odom"


@pytest.mark.parametrize(("value", "installed", "want"), [
    ("auto", True, True), ("auto", False, False), ("false", True, False), ("true", True, True)])
def test_rviz_wanted(value, installed, want):
    assert ls.rviz_wanted(value, installed) is want


def test_rviz_true_without_rviz2_fails_before_starting_anything():
    with pytest.raises(ValueError, match="rviz:=false"):
        ls.rviz_wanted("true", installed=False)
    with pytest.raises(ValueError, match="expected one of"):
        ls.rviz_wanted("yes please", installed=True)


# --- camera transport from a real bag ----------------------------------------------------------

@pytest.fixture(scope="module")
def drive():
    return SyntheticDrive(SceneConfig(kind="straight", seconds=0.5, width=64, height=36, seed=1))


@pytest.mark.parametrize("compressed", [False, True])
def test_camera_transport_follows_the_bag(drive, tmp_path, compressed):
    bag = write_drive_bag(drive, tmp_path / "bag", BagWriteOptions(compressed=compressed)).path
    got = ls.bag_camera_transport(ls.bag_topics(bag), ros_default("camera_topics"))
    assert got == (["compressed"] if compressed else ["raw"])


def test_camera_transport_names_a_missing_camera(drive, tmp_path):
    bag = write_drive_bag(drive, tmp_path / "bag").path
    with pytest.raises(ValueError, match="/cameras/rear/image_raw"):
        ls.bag_camera_transport(ls.bag_topics(bag), ["/cameras/rear/image_raw"])
    with pytest.raises(FileNotFoundError, match="camera_transport:=raw"):
        ls.bag_topics(tmp_path)


def test_node_parameters_merge_wildcard_then_own_sections(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters: {device: cpu, seed: 1}\n"
                    "/veh1/alpamayo:\n  ros__parameters: {seed: 2}\n", encoding="utf-8")
    assert ls.node_parameters(path, "alpamayo", "veh1") == {"device": "cpu", "seed": 2}
    assert ls.node_parameters(path, "alpamayo", "") == {"device": "cpu", "seed": 1}


# --- parameters through rclpy's own argument handling (separate processes) ---------------------

LAUNCH_CASES = [
    ([], "/alpamayo"),
    (["-r", "__ns:=/veh1"], "/veh1/alpamayo"),
    (["-r", "__node:=planner"], "/planner"),
    (["-r", "__node:=planner", "-r", "__ns:=/veh1"], "/veh1/planner"),
]


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> dict[str, dict]:
    """Every argument list below through the real node class in ONE probe process (one rclpy
    context per list; the node module's imports are paid once): case name -> what it got."""
    base = tmp_path_factory.mktemp("probe")
    # The shipped YAML (keyed /**) with two values changed, so the file's effect is visible.
    params_file = node_params_file(base / "alpamayo.yaml", plan_rate_hz=5.0,
                                   camera_qos="reliable")
    overrides = ls.launch_overrides({"model_dir": "/models/ar1", "backend": "torch",
                                     "camera_transport": "compressed"}, use_sim_time=True)
    # Why config/alpamayo.yaml is keyed /**: the old `alpamayo:` key misses /veh1/alpamayo.
    old = base / "old.yaml"
    old.write_text("alpamayo:\n  ros__parameters: {plan_rate_hz: 5.0}\n", encoding="utf-8")
    cases = {
        # what alpamayo.launch.py hands launch_ros, then what launch_ros appends (name, ns)
        **{f"launch{i}": [*ls.node_ros_args(params_file, overrides), "--ros-args", *args]
           for i, (args, _) in enumerate(LAUNCH_CASES)},
        "strings": ls.node_ros_args(params_file, {"model_dir": "123", "device": "cuda:0"}),
        "old_plain": ["--ros-args", "--params-file", str(old)],
        "old_namespaced": ["--ros-args", "-r", "__ns:=/veh1", "--params-file", str(old)],
    }
    (base / "cases.json").write_text(json.dumps(cases), encoding="utf-8")
    env = ros_env(next_domain_id(), base / "roslog")
    out = subprocess.run([sys.executable, str(PROBE), "--batch", str(base / "cases.json")],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(results) == set(cases)
    return results


def test_a_single_probe_matches_the_batch(tmp_path, probed):
    """The batch's per-context parsing equals a probe process of its own (plain rclpy.init)."""
    params_file = node_params_file(tmp_path / "alpamayo.yaml", plan_rate_hz=5.0,
                                   camera_qos="reliable")
    overrides = ls.launch_overrides({"model_dir": "/models/ar1", "backend": "torch",
                                     "camera_transport": "compressed"}, use_sim_time=True)
    argv = [*ls.node_ros_args(params_file, overrides), "--ros-args", "-r", "__ns:=/veh1"]
    env = ros_env(next_domain_id(), tmp_path / "roslog")
    out = subprocess.run([sys.executable, str(PROBE), *argv], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == probed["launch1"]


@pytest.mark.parametrize(("case", "fqn"), [(f"launch{i}", fqn)
                                           for i, (_, fqn) in enumerate(LAUNCH_CASES)])
def test_params_file_and_overrides_reach_a_namespaced_or_renamed_node(probed, case, fqn):
    got = probed[case]
    assert got["fqn"] == fqn
    assert got["use_sim_time"] is True
    params = got["params"]
    assert params["plan_rate_hz"] == 5.0 and params["camera_qos"] == "reliable"  # the file
    assert params["model_dir"] == "/models/ar1" and params["backend"] == "torch"  # overrides
    assert params["camera_transport"] == ["compressed"]


def test_string_overrides_stay_strings(probed):
    params = probed["strings"]["params"]
    assert params["model_dir"] == "123" and params["device"] == "cuda:0"


def test_a_node_name_keyed_file_is_lost_under_a_namespace(probed):
    """Why config/alpamayo.yaml is keyed /**: the old `alpamayo:` key misses /veh1/alpamayo."""
    assert probed["old_plain"]["params"]["plan_rate_hz"] == 5.0
    assert probed["old_namespaced"]["params"]["plan_rate_hz"] == ros_default("plan_rate_hz")


@pytest.fixture
def params_file(tmp_path):
    return node_params_file(tmp_path / "alpamayo.yaml", plan_rate_hz=5.0, camera_qos="reliable")


def test_no_temporary_params_files_are_written(tmp_path, params_file, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    ls.node_ros_args(params_file, ls.launch_overrides({"model_dir": "/m"}, False))
    assert os.listdir(tmp_path / "tmp") == []


# --- the launch files use these functions ------------------------------------------------------

def _calls(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.func.attr if isinstance(n.func, ast.Attribute) else n.func.id
            for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, (ast.Attribute, ast.Name))}


def test_node_launch_file_builds_its_arguments_here():
    calls = _calls(ROOT / "launch" / "alpamayo.launch.py")
    source = (ROOT / "launch" / "alpamayo.launch.py").read_text(encoding="utf-8")
    assert {"node_ros_args", "launch_overrides", "parse_bool", "LifecycleNode"} <= calls
    assert "tempfile" not in source and "parameters=" not in source


def test_replay_launch_file_builds_its_commands_here():
    calls = _calls(ROOT / "launch" / "replay.launch.py")
    source = (ROOT / "launch" / "replay.launch.py").read_text(encoding="utf-8")
    assert {"bag_play_argv", "rviz_wanted", "bag_camera_transport", "write_layout"} <= calls
    assert "PythonExpression" not in source
    # rviz is decided (and may fail) before the first action is built
    body = source[source.index("def _actions"):]
    assert body.index("rviz_wanted") < body.index("ExecuteProcess")
