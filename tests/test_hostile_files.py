"""Hostile files and paths on the run side: zip bombs, deep JSON, unwritable outputs, bad features.

Every case asserts the one-line message (and, for bombs, the time and memory it took).
"""

from __future__ import annotations

import json
import os
import re
import resource
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from _model_fixtures import digits_run, run_cli, write_digit_pngs

from cnnspec import modelio
from cnnspec.errors import RunError

ROOT = Path(__file__).resolve().parent.parent
BACKBONE = ROOT / "specs" / "transfer_digits04_backbone.keras"
GIB = 1024**3


# --------------------------------------------------------------------------- building bombs


def _deflated_zeros(n_chunks: int, chunk: int = 1 << 24) -> tuple[bytes, int]:
    """A raw deflate stream of ``n_chunks * chunk`` zero bytes, and its CRC-32.

    After a full flush the compressor starts afresh, so every chunk compresses to the same
    bytes: the stream is one compressed chunk repeated (2 GiB of zeros -> 2 MB), built in
    milliseconds; only the CRC needs a pass over the zeros.
    """
    zeros = bytes(chunk)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(n_chunks):
        crc = zlib.crc32(zeros, crc)
    return block * n_chunks + c.flush(), crc


def write_bomb(path: Path, members: dict[str, bytes], bomb_name: str, n_chunks: int = 128) -> Path:
    """A valid zip holding ``members`` plus ``bomb_name``: 16 MiB x n_chunks of zeros, deflated.

    The bomb member is first stored holding its deflate stream, then its headers are set to say
    what the stream is (method 8, the real CRC and uncompressed size): an honest archive, as a
    zip tool would write it, in a fraction of the time.
    """
    stream, crc = _deflated_zeros(n_chunks)
    size = n_chunks << 24
    assert size < 1 << 32  # no zip64 fields to patch
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr(bomb_name, stream)
        offset = zf.getinfo(bomb_name).header_offset
    data = bytearray(path.read_bytes())
    assert data[offset : offset + 4] == b"PK\x03\x04"
    struct.pack_into("<H", data, offset + 8, zipfile.ZIP_DEFLATED)
    struct.pack_into("<I", data, offset + 14, crc)
    struct.pack_into("<I", data, offset + 22, size)
    central = _central_entry(data, bomb_name)
    struct.pack_into("<H", data, central + 10, zipfile.ZIP_DEFLATED)
    struct.pack_into("<I", data, central + 16, crc)
    struct.pack_into("<I", data, central + 24, size)
    path.write_bytes(bytes(data))
    return path


def _central_entry(data: bytes | bytearray, name: str) -> int:
    """Offset of ``name``'s entry in a zip's central directory."""
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        (length,) = struct.unpack_from("<H", data, at + 28)
        if data[at + 46 : at + 46 + length] == name.encode():
            return at
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{name} not in the central directory")


def _members(src: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(src) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


@pytest.fixture(scope="module")
def bomb_model(tmp_path_factory) -> Path:
    """A digits model whose model.weights.h5 is replaced by 2 GiB of zeros (about 2 MB on disk)."""
    members = _members(digits_run() / "model.keras")
    del members["model.weights.h5"]
    path = tmp_path_factory.mktemp("bomb") / "model.keras"
    return write_bomb(path, members, "model.weights.h5")


@pytest.fixture(scope="module")
def bomb_backbone(tmp_path_factory) -> Path:
    """The shipped transfer backbone with its weights replaced by 2 GiB of zeros."""
    members = _members(BACKBONE)
    del members["model.weights.h5"]
    path = tmp_path_factory.mktemp("bomb") / "backbone.keras"
    return write_bomb(path, members, "model.weights.h5")


def test_the_bomb_is_real(bomb_model):
    """Control: the archive is valid and really declares 2 GiB of zeros from a few MB."""
    assert bomb_model.stat().st_size < 4 * 1024**2
    with zipfile.ZipFile(bomb_model) as zf:
        info = zf.getinfo("model.weights.h5")
        assert info.file_size == 2 * GIB and info.compress_type == zipfile.ZIP_DEFLATED
        with zf.open(info) as fh:
            assert fh.read(1 << 20) == bytes(1 << 20)  # it decompresses


BOMB_MESSAGE = (
    r"member 'model.weights.h5' declares 2\.0 GiB from 2\.\d MiB compressed "
    r"\(ratio \d+:1, limit 100:1\); this looks like a zip bomb and is not read"
)


def test_loading_a_bomb_is_refused_before_reading(bomb_model):
    started = time.perf_counter()
    with pytest.raises(RunError, match=BOMB_MESSAGE):
        modelio.check_keras_archive(bomb_model)
    # a hang detector, not a speed test (the zip directory is read, never the 2 GiB member)
    assert time.perf_counter() - started < 30


_CHILD = """
import sys
from cnnspec.cli import main
code = main(sys.argv[1:])
# VmHWM, not ru_maxrss: Linux carries the parent's (the pytest worker's) high-water mark into
# ru_maxrss across fork and exec, so a worker that grew to 1.8 GB made this child look like it.
print("maxrss", *[line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")])
sys.exit(code)
"""


def _run_measured(args: list[str], cwd: Path, limit_as: int | None = None):
    """Run the CLI in a child; (exit code, stderr, seconds, peak RSS of the child in MiB)."""
    preexec = None
    if limit_as is not None:

        def preexec() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a loaded CI machine imports TensorFlow in 25 s or more
        preexec_fn=preexec,
    )
    seconds = time.perf_counter() - started
    rss = [line for line in proc.stdout.splitlines() if line.startswith("maxrss ")]
    return proc.returncode, proc.stderr, seconds, int(rss[-1].split()[1]) / 1024 if rss else 0.0


@pytest.mark.slow
def test_cli_predict_refuses_a_bomb_fast_and_small(bomb_model, tmp_path):
    images = write_digit_pngs(tmp_path / "imgs", [0])
    code, err, seconds, rss = _run_measured(["predict", bomb_model, *images], tmp_path)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1, err
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"{bomb_model}: member 'model.weights.h5' declares 2.0 GiB")
    assert "zip bomb" in lines[0]
    # Before the fix: 31 s and 5 GB. Peak memory proves the bomb was not read (a wall-clock
    # bound would only measure how loaded the machine is).
    assert rss < 1500, f"peak memory {rss:.0f} MiB: the bomb was read"


def _spec(tmp_path: Path, backbone: Path) -> Path:
    spec = tmp_path / "net.yaml"
    spec.write_text(
        "name: net\ninput: [32, 32, 1]\nbackbone:\n"
        f"  model: {backbone}\n  cut_at: basic_2_add\n"
        "layers:\n  - flatten\n  - dense: 5, softmax\n"
    )
    return spec


def test_validate_refuses_a_bomb_backbone_fast_in_little_memory(bomb_backbone, tmp_path):
    spec = _spec(tmp_path, bomb_backbone)
    # validate never imports TensorFlow: 1 GiB of address space is plenty, 2 GiB of zeros is not
    code, err, seconds, _ = _run_measured(["validate", spec], tmp_path, limit_as=GIB)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err and "MemoryError" not in err
    assert lines[0].startswith(f"{spec}:4:3: backbone.model: {bomb_backbone}: ")
    assert "member 'model.weights.h5' declares 2.0 GiB" in lines[0] and "zip bomb" in lines[0]


# An .npz is a zip too: x.npy declaring 2 GiB of zeros (2 MB on disk) beside a real y.npy.
NPZ_BOMB_MESSAGE = (
    r"member 'x\.npy' declares 2\.0 GiB from 2\.\d MiB compressed \(ratio \d+:1, limit "
    r"1000:1\); this looks like a zip bomb and is not read"
)


@pytest.fixture(scope="module")
def bomb_npz(tmp_path_factory) -> Path:
    import io

    y = io.BytesIO()
    np.save(y, np.zeros(10, np.int64))
    return write_bomb(
        tmp_path_factory.mktemp("bomb") / "data.npz", {"y.npy": y.getvalue()}, "x.npy"
    )


@pytest.mark.parametrize("command", ["evaluate", "fit-classifier"])
def test_an_npz_bomb_is_refused_before_reading(bomb_npz, tmp_path, command):
    args = {
        "evaluate": ["evaluate", digits_run(), "--data", bomb_npz],
        "fit-classifier": ["fit-classifier", bomb_npz, "-o", tmp_path / "c.json"],
    }[command]
    code, err, seconds, rss = _run_measured(args, tmp_path)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{bomb_npz}: ") and re.search(NPZ_BOMB_MESSAGE, lines[0])
    assert rss < 1500, f"peak memory {rss:.0f} MiB: the bomb was read"  # before: 2 GiB more


def test_an_npz_larger_than_half_the_memory_is_refused_before_reading(tmp_path, monkeypatch):
    """An honest .npz (random pixels, no compression) that the machine cannot hold twice."""
    from cnnspec.data import cache
    from cnnspec.data.arrays import read_npz

    path = tmp_path / "big.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (5000, 32, 32), np.uint8), y=np.arange(5000) % 10)
    monkeypatch.setattr(cache, "total_memory", lambda: 8 * 1024**2)
    with pytest.raises(RunError) as info:
        read_npz(str(path))
    assert str(info.value) == (
        f"{path}: the archive declares 4.9 MiB in all (limit 4.0 MiB). Hint: an .npz is loaded "
        "whole, so it may declare at most half of this machine's memory; use an image folder "
        "or a CSV manifest, which stream."
    )
    monkeypatch.undo()
    x, y, names, _ = read_npz(str(path))  # the same file, with the machine's real memory
    assert x.shape == (5000, 32, 32, 1) and len(names) == 10


def test_validate_reads_a_good_backbone_without_loading_its_weights(tmp_path):
    """Control for the test above: the same spec on the real backbone validates."""
    code, err, _, _ = _run_measured(["validate", _spec(tmp_path, BACKBONE)], tmp_path, GIB)
    assert code == 0, err


# --------------------------------------------------------------------------- other archive limits


def _copy_with(src: Path, dst: Path, **replace: bytes) -> Path:
    members = _members(src)
    members.update({k.replace("__", "."): v for k, v in replace.items()})
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return dst


@pytest.mark.parametrize("depth", [150, 100_000])
def test_deeply_nested_config_is_refused_without_recursion_error(tmp_path, depth):
    nested = ("[" * depth + "]" * depth).encode()
    path = _copy_with(BACKBONE, tmp_path / "deep.keras", config__json=nested)
    with pytest.raises(RunError, match="member 'config.json' nests deeper than 100 levels"):
        modelio.check_keras_archive(path)
    # ... and as a backbone, at validation: a located spec error, not a RecursionError
    from cnnspec.errors import SpecError
    from cnnspec.spec import load_spec

    with pytest.raises(SpecError, match=r"net\.yaml:\d+:\d+: .*nests deeper than 100 levels"):
        load_spec(_spec(tmp_path, path))


def test_config_over_its_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(modelio, "MAX_JSON_MEMBER_BYTES", 1024)
    with pytest.raises(
        RunError, match=r"member 'config.json' declares 30\.\d KiB \(limit 1\.0 KiB\)"
    ):
        modelio.check_keras_archive(BACKBONE)


def test_total_declared_size_over_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(modelio, "MAX_ARCHIVE_BYTES", 100 * 1024)
    with pytest.raises(
        RunError, match=r"the archive declares 420\.\d KiB in all \(limit 100\.0 KiB\)"
    ):
        modelio.check_keras_archive(BACKBONE)


def test_a_forged_stored_size_is_refused(tmp_path):
    path = tmp_path / "forged.keras"
    path.write_bytes(BACKBONE.read_bytes())
    data = bytearray(path.read_bytes())
    central = _central_entry(data, "model.weights.h5")
    struct.pack_into("<I", data, central + 24, 2 * GIB)  # uncompressed size in the directory
    path.write_bytes(bytes(data))
    with pytest.raises(RunError, match="stored uncompressed but declares 2147483648 bytes"):
        modelio.check_keras_archive(path)


# --------------------------------------------------------------------------- output paths

# Every command that writes, with MISSING inputs: the output must be refused first (checked before
# any model, spec or data is read), so the message proves the order too.
WRITERS = {
    "train": (["train", "missing.yaml", "--data", "missing.npz", "--out", "{out}"], "dir", ""),
    "export": (["export", "missing_run", "--format", "keras", "-o", "{out}"], "file", ".keras"),
    "evaluate": (
        ["evaluate", "missing_run", "--data", "missing.npz", "-o", "{out}"],
        "file",
        ".png",
    ),
    "visualize filters": (["visualize", "filters", "missing_run", "-o", "{out}"], "file", ".png"),
    "visualize features": (
        ["visualize", "features", "missing_run", "missing.png", "-o", "{out}"],
        "file",
        ".png",
    ),
    "visualize curves": (["visualize", "curves", "missing_run", "-o", "{out}"], "file", ".png"),
    "visualize graph": (["visualize", "graph", "missing.yaml", "-o", "{out}"], "file", ".png"),
    "features": (
        ["features", "missing_run", "--data", "missing.npz", "-o", "{out}"],
        "file",
        ".npz",
    ),
    "fit-classifier": (["fit-classifier", "missing.npz", "-o", "{out}"], "file", ".json"),
    "build": (["build", "missing.yaml", "-o", "{out}"], "file", ".keras"),
    "graph": (["graph", "missing.yaml", "-o", "{out}"], "file", ".dot"),
    "schema": (["schema", "-o", "{out}"], "file", ".json"),
}


def _option(args: list[str]) -> str:
    return args[args.index("{out}") - 1]


def _cli_error(args: list[str], capsys) -> str:
    code = run_cli(args)
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1 and "internal error" not in err, err
    return err


@pytest.mark.parametrize("command", WRITERS)
def test_output_under_a_file_is_refused_first(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    template, _, suffix = WRITERS[command]
    (tmp_path / "notes.txt").write_text("mine")
    out = f"notes.txt/out{suffix}"
    err = _cli_error([a.replace("{out}", out) for a in template], capsys)
    assert err == (
        f"{_option(template)} {out}: notes.txt is a file, so nothing can be written under it. "
        "Hint: choose a path whose parent folders are folders."
    )
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("command", WRITERS)
def test_output_of_the_wrong_kind_is_refused_first(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    template, kind, suffix = WRITERS[command]
    out = f"taken{suffix}"
    if kind == "dir":
        (tmp_path / out).write_text("mine")
        expected = f"{out}: is a file; a folder is written there"
    else:
        (tmp_path / out).mkdir()
        (tmp_path / out / "keep.txt").write_text("mine")
        expected = f"{out}: is a folder; a file is written there"
    err = _cli_error([a.replace("{out}", out) for a in template], capsys)
    assert err.startswith(f"{_option(template)} {expected}")
    assert (tmp_path / out).exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("command", WRITERS)
def test_output_in_a_folder_that_takes_no_files_is_refused_first(command, tmp_path, capsys):
    template, _, suffix = WRITERS[command]
    out = f"/proc/cnnspec/out{suffix}"
    err = _cli_error([a.replace("{out}", out) for a in template], capsys)
    assert err.startswith(f"{_option(template)} {out}: cannot write in /proc: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_in_a_read_only_folder_is_refused_first(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        err = _cli_error(["evaluate", "missing_run", "-o", str(locked / "x.png")], capsys)
    finally:
        locked.chmod(0o700)
    assert err == f"-o {locked / 'x.png'}: cannot write in {locked}: permission denied."


# --------------------------------------------------------------------------- fit-classifier


def _features(path: Path, n: int = 60, classes: int = 3, **override) -> Path:
    """Separable features with labels (as cnnspec features writes them), parts overridable."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    arrays = {
        "features": (rng.normal(size=(n, 8)) + 3 * y[:, None]).astype(np.float32),
        "labels": y.astype(np.int32),
        "class_names": np.array([f"c{i}" for i in range(classes)]),
    }
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _nan_at_7_2(path: Path) -> Path:
    x = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    x[7, 2] = np.nan
    return _features(path, features=x)


FIT_CASES = {
    "NaN features": (_nan_at_7_2, [], r"features\[7, 2\] is nan \(1 rows have non-finite values\)"),
    "one class": (
        lambda p: _features(p, labels=np.zeros(60, np.int32)),
        [],
        "every label is 0: a classifier needs at least 2 classes",
    ),
    "float labels": (
        lambda p: _features(p, labels=np.linspace(0, 2, 60)),
        [],
        r"labels must be integer class ids 0\.\.K-1, received dtype float64 \(labels\[0\] = ",
    ),
    "negative label": (
        lambda p: _features(p, labels=np.arange(60) % 3 - 1),
        [],
        r"labels must be class ids 0\.\.K-1, received labels\[0\] = -1",
    ),
    "more rows than labels": (
        lambda p: _features(p, labels=(np.arange(40) % 3).astype(np.int32)),
        [],
        "60 feature rows but 40 labels; every row needs its label",
    ),
    "short class names": (
        lambda p: _features(p, class_names=np.array(["a", "b"])),
        [],
        "2 class names for labels up to 2",
    ),
    "string features": (
        lambda p: _features(p, features=np.full((60, 8), "x")),
        [],
        "features must be numbers, received dtype <U1",
    ),
    "no labels": (lambda p: _features(p, labels=None), [], "lacks the arrays labels"),
    "test split 1.5": (
        _features,
        ["--test-split", "1.5"],
        r"--test-split must be between 0 and 1 \(exclusive\), received 1\.5",
    ),
    "k 0": (_features, ["--model", "knn", "--k", "0"], "--k must be at least 1 neighbour"),
    "c 0": (_features, ["--c", "0"], r"--c must be a positive number, received 0\.0"),
    "a class of one row": (
        lambda p: _features(p, labels=np.r_[np.arange(59) % 2, 2].astype(np.int32)),
        [],
        "class 'c2' has only 1 row; a stratified held-out split needs at least 2",
    ),
    "test split leaves a side short": (
        _features,
        ["--test-split", "0.02"],
        r"--test-split 0\.02 of 60 rows holds out 2, leaving 58 to train; each side needs",
    ),
}


@pytest.mark.parametrize("case", FIT_CASES)
def test_fit_classifier_refuses_bad_features_with_one_line(case, tmp_path, capsys):
    make, options, message = FIT_CASES[case]
    path = make(tmp_path / "features.npz")
    err = _cli_error(["fit-classifier", path, *options], capsys)
    assert "Traceback" not in err and "sklearn" not in err
    assert re.search(message, err), err
    assert not list(tmp_path.glob("*.json"))  # nothing written


@pytest.mark.parametrize("kind", ["fifo", "folder", "missing"])
def test_fit_classifier_refuses_what_is_not_a_file_without_blocking(kind, tmp_path, capsys):
    path = tmp_path / "features.npz"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    elif kind == "folder":
        path.mkdir()
    what = "no such file" if kind == "missing" else "not a regular file"
    err = _cli_error(["fit-classifier", path], capsys)
    assert err == f"cannot read {path}: {what}. Hint: pass the .npz written by cnnspec features."


def test_fit_classifier_on_good_features_still_trains(tmp_path, capsys):
    """Control for the refusals above: the same file, unbroken, trains and is written."""
    path = _features(tmp_path / "features.npz")
    assert run_cli(["fit-classifier", path, "--model", "knn", "--k", "3"]) == 0
    assert "held-out accuracy 1.0000 (15" in capsys.readouterr().out
    saved = json.loads((tmp_path / "features.knn.json").read_text())
    assert saved["class_names"] == ["c0", "c1", "c2"] and saved["k"] == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # atomic


def test_predict_refuses_a_fifo_as_input_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "image.png"
    os.mkfifo(fifo)
    err = _cli_error(["predict", "missing_run", fifo], capsys)
    assert err == f"{fifo}: not a regular file or a folder. Hint: pass image files."


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("inputs", [["/proc"], ["/proc/self"], ["/sys/kernel"]])
def test_predict_refuses_system_folders_as_inputs(inputs, capsys):
    err = _cli_error(["predict", "missing_run", *inputs], capsys)
    assert err.startswith(f"{inputs[0]}: a system path (")
    assert err.endswith(
        "not an image or a folder of images. Hint: pass image files or folders of images."
    )


@pytest.mark.parametrize("text", ["[" * 50_000 + "]" * 50_000, '{"a": ' * 150 + "1" + "}" * 150])
def test_deeply_nested_metadata_is_one_line(text, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(digits_run(), run)
    (run / "meta.json").write_text(text)
    images = write_digit_pngs(tmp_path / "imgs", [0])
    err = _cli_error(["predict", run, *images], capsys)
    assert (
        err
        == f"{run / 'meta.json'}: model metadata nests deeper than 100 levels; metadata does not."
    )


# --------------------------------------------------------------------------- predict / evaluate inputs


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (
            np.array([["a", "b"], ["c", "d"]]),
            "x must hold pixel values (numbers); received dtype <U1",
        ),
        (np.zeros((4, 0, 0, 1), np.uint8), "the images are empty (zero size)"),
    ],
)
def test_evaluate_on_an_npz_of_strings_or_empty_images_is_one_line(x, message, tmp_path, capsys):
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=np.arange(len(x)) % 2)
    err = _cli_error(["evaluate", digits_run(), "--data", data, "-o", tmp_path / "c.png"], capsys)
    assert err.startswith(f"{data}: ") and message in err
    assert "Graph execution" not in err and "Traceback" not in err
    assert not (tmp_path / "c.png").exists()
