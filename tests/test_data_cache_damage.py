"""A damaged, deleted or half-written disk cache (issue 15, item 6): checked when opened,
rebuilt with one warning, safe to delete mid-run, swept after a killed fill, keyed by the
resolved path, and a full disk is one line."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_data_rows import images
from test_data_sources import arrays

from cnnspec.data import load_data
from cnnspec.errors import RunError

SHAPE = (8, 8, 3)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("CNNSPEC_CACHE", str(folder))
    return folder


def load(source, **kwargs):
    lines: list[str] = []
    data = load_data(str(source), SHAPE, cache="disk", echo=lines.append, test_split=0, **kwargs)
    return data, lines


def entries(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.iterdir() if not p.name.startswith("."))


def _truncate(entry, other):
    shard = next(entry.glob("data.data-*"))
    shard.write_bytes(shard.read_bytes()[:-7])


def _flip(entry, other):
    shard = next(entry.glob("data.data-*"))
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    shard.write_bytes(bytes(raw))


def _missing(entry, other):
    next(entry.glob("data.data-*")).unlink()


def _empty_index(entry, other):
    (entry / "data.index").write_bytes(b"")


def _empty_info(entry, other):
    (entry / "info.json").write_text("")


def _swapped(entry, other):  # the other split's files under this split's name
    for name in ("data.index", *[p.name for p in entry.glob("data.data-*")]):
        shutil.copy(other / name, entry / name)


@pytest.mark.parametrize(
    "damage", [_truncate, _flip, _missing, _empty_index, _empty_info, _swapped]
)
def test_a_damaged_cache_entry_is_rebuilt_with_one_warning(tmp_path, cache_dir, damage):
    root = images(tmp_path / "p", n=6)
    first, _ = load(root)
    want = arrays(first.train)
    train_entry = next(
        e
        for e in entries(cache_dir)
        if json.loads((e / "info.json").read_text())["split"] == "train"
    )
    val_entry = next(e for e in entries(cache_dir) if e != train_entry)
    damage(train_entry, val_entry)
    again, lines = load(root)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and str(train_entry) in warnings[0], lines
    got = arrays(again.train)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    _, lines = load(root)  # rebuilt: sound again
    assert not any(line.startswith("warning:") for line in lines), lines


def test_deleting_the_cache_mid_run_is_safe(tmp_path, cache_dir):
    data, _ = load(images(tmp_path / "p"))
    want = arrays(data.train)
    shutil.rmtree(cache_dir)
    for _ in range(2):  # two epochs after the deletion
        got = arrays(data.train)
        assert np.array_equal(got[0], want[0])


def test_a_killed_fill_leaves_no_temporary_folder_behind(tmp_path, cache_dir):
    from cnnspec.data import diskcache

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a process id that is no longer alive
    cache_dir.mkdir()
    stale = cache_dir / f".{'ab' * 12}.tmp-{diskcache._host()}-{child.pid}-1"
    (stale / "sub").mkdir(parents=True)
    (stale / "data.data-00000-of-00001").write_bytes(b"x" * 100)
    live = cache_dir / diskcache.temporary_name("cd" * 12)  # this process: still filling
    live.mkdir()
    load(images(tmp_path / "p"))
    assert not stale.exists() and live.exists()


def test_relative_and_absolute_data_paths_share_one_cache(tmp_path, cache_dir, monkeypatch):
    images(tmp_path / "p")
    monkeypatch.chdir(tmp_path)
    load("./p")
    count = len(entries(cache_dir))
    _, lines = load(tmp_path / "p")
    assert len(entries(cache_dir)) == count and any("reusing" in line for line in lines)


def test_a_full_disk_while_filling_is_one_line(tmp_path, cache_dir):
    x = np.random.default_rng(0).integers(0, 255, (400, 32, 32, 3), np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(400) % 2)
    import tensorflow  # noqa: F401 - imported before the limit (it writes nothing after)

    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # a file size limit (ulimit -f) fails writes as a full disk does, without a tmpfs
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, old_limit[1]))
    try:
        with pytest.raises(RunError) as info:
            load_data(str(tmp_path / "d.npz"), (32, 32, 3), cache="disk")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    text = str(info.value)
    assert "cannot fill the disk cache" in text and "File too large" in text, text
    assert "\n" not in text and str(cache_dir) in text
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".")]  # no leftovers
    assert os.path.isdir(cache_dir)


def test_loading_the_same_cache_again_in_one_process_holds_no_more_files(tmp_path, cache_dir):
    root = images(tmp_path / "p")
    load(root)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):  # search trials in one process load the same data again and again
        load(root)
    assert len(os.listdir("/proc/self/fd")) <= before + 2
