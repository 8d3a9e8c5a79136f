"""ROS domain ids of the replay / demo tests: 21-39 (the node tests in rosproc.py use
60-99), 10 per pytest-xdist worker, so the two groups never share a domain."""

from __future__ import annotations

import itertools
import os

DOMAIN_FIRST, DOMAIN_LAST = 21, 39
_counter = itertools.count()


def replay_domain_id() -> int:
    """A domain id in 21-39 not shared with another xdist worker at the same time."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    base = DOMAIN_FIRST + (index % 2) * 10
    span = 10 if base + 9 <= DOMAIN_LAST else DOMAIN_LAST - base + 1
    return base + next(_counter) % span
