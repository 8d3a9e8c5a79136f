"""The RViz layout for one launch: config/alpamayo.rviz with its topics retargeted.

The shipped layout names the node's default topics (node `alpamayo`, no namespace, raw
cameras). `retarget` rewrites each display's topic through a mapping, so a namespace, launch
remaps and compressed cameras reach RViz. RViz 2 (Jazzy and later) picks an Image display's
transport from the topic name: a topic ending in `/compressed` is shown through the compressed
transport, so compressed cameras get `<topic>/compressed`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from alpamayo_ros.tools.launch_support import NODE_NAME, resolve_topic

#: Node outputs shown in the layout, by their name inside the node.
NODE_OUTPUTS = ("~/trajectory", "~/markers", "~/history")


def displays(layout: Mapping[str, Any]) -> list[dict]:
    return layout["Visualization Manager"]["Displays"]


def retarget(layout: Mapping[str, Any], topics: Mapping[str, str]) -> dict:
    """A copy of `layout` whose display topics are replaced through `topics` (old -> new).

    Raises ValueError naming a display whose topic the mapping does not cover, so a layout
    change cannot silently keep a stale topic.
    """
    out = copy.deepcopy(dict(layout))
    for display in displays(out):
        if "Topic" not in display:
            continue
        old = display["Topic"]["Value"]
        if old not in topics:
            raise ValueError(f"RViz display {display['Name']!r} shows {old}, which the launch "
                             f"does not map; known: {sorted(topics)}")
        display["Topic"]["Value"] = topics[old]
    return out


def launch_topics(camera_topics: Sequence[str], transports: Sequence[str], *,
                  remaps: Mapping[str, str], namespace: str = "",
                  default_cameras: Sequence[str], odom_default: str = "/odom") -> dict[str, str]:
    """Default topic (as in the shipped layout) -> the topic this launch's node really uses.

    `remaps` are the launch's remappings (name inside the node -> target, e.g. "~/markers" ->
    "/viz/markers"); targets are resolved in the node's namespace, as rcl does.
    """
    def resolved(name: str) -> str:
        return resolve_topic(remaps.get(name, name), NODE_NAME, namespace)

    mapping = {resolve_topic(name, NODE_NAME): resolved(name) for name in NODE_OUTPUTS}
    mapping[odom_default] = resolved(odom_default)
    for i, (old, new) in enumerate(zip(default_cameras, camera_topics, strict=True)):
        transport = transports[0] if len(transports) == 1 else transports[i]
        topic = resolve_topic(new, NODE_NAME, namespace)
        mapping[old] = topic.rstrip("/") + "/compressed" if transport == "compressed" else topic
    return mapping


def write_layout(template: Path, out: Path, topics: Mapping[str, str]) -> Path:
    """Retarget the layout file `template` and write it to `out` (its folder is created)."""
    layout = yaml.safe_load(template.read_text(encoding="utf-8"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(retarget(layout, topics), sort_keys=False), encoding="utf-8")
    return out
