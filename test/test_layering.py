"""The package layout's import rules, read from the source (every import, lazy ones included).

* `alpamayo_core.model` imports nothing else of `alpamayo_core` (the network never depends on
  prompts, inference, loading, simulation, backends or CLIs);
* `alpamayo_core` never imports ROS (rclpy, message packages, launch, rosbags, alpamayo_ros);
* `alpamayo_ros.node` never imports `alpamayo_ros.tools` or `alpamayo_ros.cli`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Top-level modules that mean "ROS" (installed by ROS or its PyPI wheels).
ROS_MODULES = frozenset({
    "rclpy", "rosbags", "rosidl_runtime_py", "ament_index_python", "launch", "launch_ros",
    "alpamayo", "alpamayo_ros", "builtin_interfaces", "std_msgs", "geometry_msgs", "sensor_msgs",
    "nav_msgs", "diagnostic_msgs", "visualization_msgs", "rcl_interfaces", "lifecycle_msgs",
    "rosgraph_msgs", "tf2_ros", "cv_bridge", "message_filters",
})

#: (package whose modules are checked, forbidden import prefixes, why)
RULES = (
    ("alpamayo_core.model", ("alpamayo_core.",), "model/ imports only model/"),
    ("alpamayo_core", tuple(f"{m}." for m in ROS_MODULES), "alpamayo_core never imports ROS"),
    ("alpamayo_ros.node", ("alpamayo_ros.tools.", "alpamayo_ros.cli."),
     "node/ never imports tools/ or cli/"),
)
ALLOWED = {"alpamayo_core.model": ("alpamayo_core.model.",)}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module `source` imports (absolute names; `from a import b` gives a and a.b)."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def violations(path: Path, source: str | None = None) -> list[str]:
    module = module_name(path)
    source = path.read_text(encoding="utf-8") if source is None else source
    found = imports_of(source, module, path.name == "__init__.py")
    out = []
    for scope, forbidden, why in RULES:
        if module != scope and not module.startswith(scope + "."):
            continue
        allowed = ALLOWED.get(scope, ())
        for name in sorted(found):
            dotted = name + "."
            if dotted.startswith(forbidden) and not dotted.startswith(allowed):
                out.append(f"{module} imports {name} ({why})")
    return out


def test_every_module_keeps_the_layering():
    sources = sorted((ROOT / "alpamayo_core").rglob("*.py")) + sorted(
        (ROOT / "alpamayo_ros").rglob("*.py"))
    assert len(sources) > 60
    problems = [v for path in sources for v in violations(path)]
    assert problems == []


@pytest.mark.parametrize(("path", "line"), [
    ("alpamayo_core/model/expert.py", "from alpamayo_core.inputs.prompt import build_prompt"),
    ("alpamayo_core/model/vlm.py", "def f():\n    from ..inference import planner"),
    ("alpamayo_core/model/vlm.py", "import alpamayo_core.io.model_io"),
    ("alpamayo_core/sim/drive.py", "import rclpy"),
    ("alpamayo_core/inputs/images.py", "from sensor_msgs.msg import Image"),
    ("alpamayo_ros/node/pipeline.py", "from alpamayo_ros.tools import metrics"),
    ("alpamayo_ros/node/params.py", "from ..tools.processes import ros_env"),
])
def test_the_checker_catches_a_violation(path, line):
    assert violations(ROOT / path, line + "\n")


def test_allowed_imports_pass_the_checker():
    assert violations(ROOT / "alpamayo_core/model/vlm.py",
                      "from alpamayo_core.model.config import ModelConfig\n") == []
    assert violations(ROOT / "alpamayo_ros/tools/evaluate.py",
                      "from alpamayo_ros.node import messages\n") == []


def test_importing_all_of_the_core_loads_no_ros_module():
    """At run time too: import every core module (TensorRT aside) in a fresh interpreter."""
    code = (
        "import importlib, pkgutil, sys, alpamayo_core\n"
        "for m in pkgutil.walk_packages(alpamayo_core.__path__, 'alpamayo_core.'):\n"
        "    if not m.name.endswith('tensorrt_backend'):\n"
        "        importlib.import_module(m.name)\n"
        f"ros = sorted(n for n in sys.modules if n.split('.')[0] in {sorted(ROS_MODULES)!r})\n"
        "print(len([n for n in sys.modules if n.startswith('alpamayo_core.')]), ros)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split(maxsplit=1)
    assert int(out[0]) > 40 and out[1].strip() == "[]"


def test_public_names_resolve_lazily():
    """`from alpamayo_core import Planner` works; `import alpamayo_core` alone loads no torch."""
    code = ("import sys, alpamayo_core\n"
            "light = 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
            "from alpamayo_core import Planner, PlanInputs, Plan, SamplingConfig, ModelConfig\n"
            "from alpamayo_core import preset, load_model\n"
            "from alpamayo_core.inference.planner import Planner as P\n"
            "print(light, Planner is P, sorted(alpamayo_core.__all__) == alpamayo_core.__all__)\n"
            "try:\n"
            "    from alpamayo_core import planner\n"
            "except ImportError as err:\n"
            "    print('ImportError', err)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert out[0] == "True True True"
    assert out[1].startswith("ImportError")
