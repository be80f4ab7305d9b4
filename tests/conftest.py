"""Shared test set-up: quiet TensorFlow, the repository's paths, and how tests are shared out
between pytest-xdist workers (pyproject.toml runs ``--dist loadgroup``)."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

_SHARED_SCOPES = ("module", "class", "package", "session")


def shared_fixture_group(item: pytest.Item) -> str | None:
    """The test file whose module-scoped fixture this test uses, or None.

    A module fixture (a trained model shared by a file's tests) is computed once per worker
    *and per contiguous run* of that file's tests: spread one test at a time over two workers, a
    module's training ran up to once per test. Tests that share one are sent to one worker as
    one unit (``xdist_group``), so the model is trained once.
    """
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for defs in info.name2fixturedefs.values():
        for fixturedef in defs:
            # baseid "" is a plugin's fixture (tmp_path_factory, ...): nothing to share
            if fixturedef.scope in _SHARED_SCOPES and fixturedef.baseid:
                return fixturedef.baseid
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Group the tests of a shared fixture, and run the files that train (``slow``) first.

    Files stay contiguous (module fixtures are set up once); files with a slow test go first so
    that the last units left for the workers are short ones, not a minute-long training.
    """
    for item in items:
        group = shared_fixture_group(item)
        if group and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(group))
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    order = {path: i for i, path in enumerate(dict.fromkeys(item.path for item in items))}
    items.sort(key=lambda item: (item.path not in slow_files, order[item.path]))
