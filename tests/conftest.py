"""Shared test set-up: quiet TensorFlow, the repository's paths, and the order in which test files
are handed to pytest-xdist workers."""

import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def pytest_collection_modifyitems(config, items):
    """Files with the most ``slow`` (training) tests first; each file's tests stay together.

    pyproject.toml runs ``--dist loadfile --no-loadscope-reorder``: a file is one unit of work,
    so its module fixtures (a model trained once for several tests) are computed once — under
    ``--dist load`` a file's tests were dealt one by one to both workers, each training the
    module's model (``loadgroup`` would group finer, but pytest 9 ignores the node ids that
    pytest-xdist 3.8 rewrites for it). The longest files start first so that the last units
    left are short ones, not a minute-long training on one worker while the other is idle.
    """
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    first_seen = {path: i for i, path in enumerate(dict.fromkeys(item.path for item in items))}
    items.sort(key=lambda item: (-slow[item.path], first_seen[item.path]))
