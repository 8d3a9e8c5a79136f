"""Where the `alpamayo` ROS package's data files are (`config/`, `launch/`, `msg/`).

The tools need the shipped Fast DDS profile, the node's parameter file and the message
definitions wherever the Python packages were installed from. Candidates, first match wins:

1. the source checkout the packages are imported from (a development tree, `pip install -e .`):
   the folder above `alpamayo_ros` when it holds the package's `package.xml`;
2. the package's share directory in the ament index (`colcon build`, a ROS install);
3. `<sys.prefix>/share/alpamayo` (a plain `pip install`, which installs them as data files).
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "alpamayo"


def _candidates() -> list[Path]:
    found = []
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "package.xml").is_file():
        found.append(checkout)
    try:
        from ament_index_python.packages import get_package_share_directory

        found.append(Path(get_package_share_directory(PACKAGE)))
    except (ImportError, LookupError, OSError):  # not indexed; AMENT_PREFIX_PATH unset
        pass
    found.append(Path(sys.prefix) / "share" / PACKAGE)
    return found


def share_path(relative: str) -> Path:
    """The installed file or folder `relative` (e.g. "config/fastdds.xml") of the package.

    Raises FileNotFoundError listing where it looked.
    """
    searched = []
    for base in _candidates():
        path = base / relative
        if path.exists():
            return path
        searched.append(str(base))
    raise FileNotFoundError(
        f"{relative}: not found in {', '.join(searched)}. Install the {PACKAGE} package "
        f"(colcon build, or pip install from its source tree) or run from the source checkout.")
