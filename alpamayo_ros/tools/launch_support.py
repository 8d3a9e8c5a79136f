"""What the launch files run, as plain data: the node's ROS arguments, `ros2 bag play`'s argv,
the camera transport of a bag, whether to start RViz.

launch/*.launch.py are thin wrappers over these functions, so every command line they generate
is testable without `launch`/`launch_ros` (not installable from PyPI). Nothing here imports ROS.

Parameters reach the node as `--params-file FILE -p name:=value ...` after one `--ros-args`:
rcl applies them in command-line order, so a `-p` beats the file as long as the file is keyed
`/**` (config/alpamayo.yaml is) or by the node's full name. No temporary files are written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import yaml

NODE_NAME = "alpamayo"
WILDCARD = "/**"
RVIZ_CHOICES = ("true", "false", "auto")
TRANSPORT_AUTO = "auto"
TRANSPORTS = ("raw", "compressed")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_bool(name: str, text: str) -> bool:
    """A launch argument's true/false value (also 1/0, yes/no, on/off; any case)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"launch argument {name}:={text!r}: expected true or false")


def param_arg(name: str, value: object) -> str:
    """`name:=value` for `-p`; the value is written as YAML (JSON is valid YAML), so a string
    such as "123" or "true" stays a string."""
    return f"{name}:={json.dumps(value)}"


def node_ros_args(params_file: str | Path, overrides: Mapping[str, object],
                  log_level: str = "info") -> list[str]:
    """The node's ROS arguments: the params file, then each override, then the log level."""
    args = ["--ros-args", "--params-file", str(params_file)]
    for name, value in overrides.items():
        args += ["-p", param_arg(name, value)]
    return [*args, "--log-level", log_level]


def parse_transport(text: str) -> list[str]:
    """`raw`, `compressed`, or one per camera separated by commas -> camera_transport."""
    items = [t.strip() for t in text.split(",")]
    bad = [t for t in items if t not in TRANSPORTS]
    if bad:
        raise ValueError(f"launch argument camera_transport:={text!r}: each entry must be one "
                         f"of {list(TRANSPORTS)} (or {TRANSPORT_AUTO!r} in replay.launch.py)")
    return items


def launch_overrides(arguments: Mapping[str, str], use_sim_time: bool) -> dict[str, object]:
    """Node parameters from launch arguments: the non-empty ones replace the params file's."""
    overrides: dict[str, object] = {}
    for name, text in arguments.items():
        if not text:
            continue
        overrides[name] = parse_transport(text) if name == "camera_transport" else text
    overrides["use_sim_time"] = use_sim_time
    return overrides


def resolve_topic(name: str, node_name: str = NODE_NAME, namespace: str = "") -> str:
    """Fully qualified topic name, as rcl expands `~/x` (private) and `x` (relative)."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if name.startswith("/"):
        return name
    if name.startswith("~"):
        return f"{ns}/{node_name}/{name[1:].lstrip('/')}"
    return f"{ns}/{name}"


def bag_play_argv(bag: str, rate: float = 1.0, loop: bool = False, clock_hz: float = 100.0,
                  remaps: Sequence[str] = ()) -> list[str]:
    """argv of `ros2 bag play` (rosbag2's ros2bag grammar): the bag path first, `--clock` with
    an explicit rate (its value is optional, so nothing ambiguous may follow it), `--loop` only
    when looping, `--remap` (which takes all following words) last."""
    if rate <= 0 or clock_hz <= 0:
        raise ValueError(f"rate ({rate}) and clock_hz ({clock_hz}) must be > 0")
    argv = ["ros2", "bag", "play", bag, "--clock", f"{clock_hz:g}", "--rate", f"{rate:g}"]
    if loop:
        argv.append("--loop")
    if remaps:
        argv += ["--remap", *remaps]
    return argv


def bag_topics(bag: str | Path) -> list[str]:
    """Topic names of a rosbag2 folder, from its metadata.yaml."""
    meta_path = Path(bag) / "metadata.yaml"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path} not found: bag:= must be a rosbag2 folder (or pass "
            "camera_transport:=raw|compressed to skip reading it)")
    meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
    return [t["topic_metadata"]["name"] for t in meta["topics_with_message_count"]]


def bag_camera_transport(topics: Iterable[str], camera_topics: Sequence[str]) -> list[str]:
    """camera_transport that makes the node subscribe to what the bag carries: `compressed`
    where the bag has `<topic>/compressed`, `raw` where it has the topic itself (one entry
    when all cameras agree)."""
    present = set(topics)
    found = []
    for topic in camera_topics:
        if topic.rstrip("/") + "/compressed" in present:
            found.append("compressed")
        elif topic in present:
            found.append("raw")
        else:
            raise ValueError(f"the bag has neither {topic} nor {topic}/compressed (camera_topics "
                             f"of the params file); its topics: {sorted(present)}")
    return found[:1] if len(set(found)) == 1 else found


def node_parameters(params_file: str | Path, node_name: str = NODE_NAME,
                    namespace: str = "") -> dict[str, object]:
    """The parameters a node named `node_name` in `namespace` takes from a params file: the
    `/**` section, then its own name's and full name's sections (later wins)."""
    content = yaml.safe_load(Path(params_file).read_text(encoding="utf-8")) or {}
    fqn = resolve_topic("~", node_name, namespace).rstrip("/")
    merged: dict[str, object] = {}
    for key in (WILDCARD, node_name, fqn):
        merged.update((content.get(key) or {}).get("ros__parameters", {}))
    return merged


def rviz_wanted(value: str, installed: bool) -> bool:
    """Start RViz? `auto` = when rviz2 is installed; `true` without rviz2 is an error raised
    before anything starts."""
    choice = value.strip().lower()
    if choice not in RVIZ_CHOICES:
        raise ValueError(f"launch argument rviz:={value!r}: expected one of {list(RVIZ_CHOICES)}")
    if choice == "true" and not installed:
        raise ValueError("rviz:=true but the rviz2 package is not installed: install it "
                         "(apt install ros-$ROS_DISTRO-rviz2) or pass rviz:=false")
    return choice == "true" or (choice == "auto" and installed)
