"""Refusals that need no TensorFlow come before it; small wrongs of the CLI (issues 14 and 15).

The refusal tests run the real CLI in a child process in which importing TensorFlow or Keras
raises: a refusal that still comes after the import then fails with that ImportError instead of
its own message. No timing is asserted (benchmarks/refusal_speed.py measures the time).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _model_fixtures import build_digits_model, digits_run, run_cli, write_digit_pngs
from conftest import ROOT

from cnnspec.digest import record_model_digest
from cnnspec.errors import RunError
from cnnspec.export import REGISTRY
from cnnspec.versions import install_hint

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

# The CLI with TensorFlow and Keras made unimportable; prints what got imported at the end.
_NO_TF = """
import sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras"):
            raise ImportError(f"{name} was imported before the refusal")

sys.meta_path.insert(0, NoTensorFlow())
from cnnspec.cli import main
code = main(sys.argv[1:])
print("imported:", sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
sys.exit(code)
"""


def run_without_tensorflow(args: list, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _NO_TF, *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=120,
    )


def zip_bomb(path: Path) -> Path:
    """A .keras-looking archive whose weights declare 8 MiB from a few KB (ratio over 100:1)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", json.dumps({"class_name": "Functional", "config": {}}))
        zf.writestr("model.weights.h5", bytes(8 * 1024**2))
    return path


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> Path:
    """A model of the same shape as the digits run's, with other weights (untrained)."""
    path = tmp_path_factory.mktemp("other") / "model.keras"
    build_digits_model(seed=1).save(path)
    return path


def _cases(tmp: Path, other_model: Path) -> dict[str, tuple[list, int, str]]:
    """name -> (CLI arguments, exit code, the refusal's text)."""
    run = digits_run()
    taken = tmp / "taken.tflite"
    taken.write_bytes(b"an earlier export")
    again = tmp / "run"  # a run exported once already: the default destination is taken
    shutil.copytree(run, again)
    (again / "export").mkdir()
    (again / "export" / "digits.onnx").write_bytes(b"x")
    foreign = tmp / "foreign"  # another model beside this run's metadata
    shutil.copytree(run, foreign)
    record_model_digest(foreign / "model.keras", foreign / "meta.json")
    shutil.copy(other_model, foreign / "model.keras")
    bomb = zip_bomb(tmp / "bomb.keras")
    image = write_digit_pngs(tmp / "imgs", [0])[0]
    spec = ROOT / "specs" / "lenet5.yaml"
    return {
        "train-set-typo": (["train", spec, "--set", "train.epoch=5"], 2, "did you mean 'epochs'"),
        "export-taken": (["export", run, "-f", "tflite", "-o", taken], 1, "already exists"),
        "export-default-taken": (["export", again, "-f", "onnx"], 1, "already exists"),
        "export-bomb": (["export", bomb, "-o", tmp / "b.onnx", "-f", "onnx"], 1, "zip bomb"),
        "predict-bomb": (["predict", bomb, image], 1, "zip bomb"),
        "evaluate-bomb": (["evaluate", bomb, "-o", tmp / "c.png"], 1, "zip bomb"),
        "predict-foreign": (["predict", foreign, image], 1, "is not the model"),
    }


CASE_NAMES = [
    "train-set-typo",
    "export-taken",
    "export-default-taken",
    "export-bomb",
    "predict-bomb",
    "evaluate-bomb",
    "predict-foreign",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_refusals_come_before_tensorflow_is_imported(case, tmp_path, other_model):
    args, code, text = _cases(tmp_path, other_model)[case]
    result = run_without_tensorflow(args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr[-2000:]
    assert len(lines) == 1 and text in lines[0], result.stderr[-2000:]
    assert "imported: []" in result.stdout


def test_a_model_beside_another_models_metadata_is_refused_naming_both(tmp_path, other_model):
    """15.9: a same-shape model next to another run's meta.json would predict with its class
    names; the digest recorded in the metadata tells them apart."""
    run = tmp_path / "run"
    shutil.copytree(digits_run(), run)
    record_model_digest(run / "model.keras", run / "meta.json")
    image = write_digit_pngs(tmp_path / "imgs", [0])
    from cnnspec.predict import predict_files

    assert predict_files(run, image, k=1)  # the model's own metadata: accepted
    shutil.copy(other_model, run / "model.keras")
    with pytest.raises(RunError) as err:
        predict_files(run, image, k=1)
    message = str(err.value)
    assert f"{run / 'model.keras'} is not the model {run / 'meta.json'} describes" in message


def test_version_is_printed_without_tensorflow():
    result = run_without_tensorflow(["--version"])
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert re.fullmatch(
        r"cnnspec \d+\.\d+\.\d+\S* \(keras 3\.\S+, tensorflow 2\.\S+, python 3\.\S+\)", first
    ), first
    assert "imported: []" in result.stdout


def test_the_onnx_hint_fits_a_source_checkout(monkeypatch, tmp_path):
    """pip install 'cnnspec[onnx]' cannot install the extra of a checkout; -e '.[onnx]' can."""
    monkeypatch.chdir(ROOT)
    assert install_hint("onnx") == "pip install -e '.[onnx]'"
    monkeypatch.chdir(tmp_path)
    assert install_hint("onnx") == f"pip install -e '.[onnx]' (in {ROOT})"
    monkeypatch.chdir(ROOT)
    from cnnspec.export.onnx_format import OnnxRuntime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were missing
    with pytest.raises(RunError, match=re.escape("Hint: pip install -e '.[onnx]'")):
        OnnxRuntime(tmp_path / "m.onnx")


LONG_NAME = "n" * 300
LONG_PATH = "abcdefgh/" * 460  # 4 KB: each name is short, the path is not


@pytest.mark.parametrize("where", ["name", "path"])
@pytest.mark.parametrize("command", ["train", "export", "predict", "evaluate"])
def test_a_name_too_long_is_one_line(command, where, tmp_path, capsys, monkeypatch):
    """15.8: a 300-byte or a 4 KB --out/-o/model path ended in 'internal error'."""
    monkeypatch.chdir(tmp_path)
    long = LONG_NAME if where == "name" else LONG_PATH + "m"
    run = digits_run()
    args = {
        "train": ["train", ROOT / "specs" / "lenet5.yaml", "--out", long],
        "export": ["export", run, "-o", long + ".keras"],
        "predict": ["predict", long + ".keras", *write_digit_pngs(tmp_path / "imgs", [0])],
        "evaluate": ["evaluate", run, "-o", long + ".png"],
    }[command]
    assert run_cli(args) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "internal error" not in err, err
    assert "too long" in lines[0] and len(lines[0]) < 400


# The CLI under a file-size limit (a full disk, as `ulimit -f` gives it), SIGXFSZ ignored so
# that a write past the limit fails with EFBIG instead of killing the process.
_FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from cnnspec.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(REGISTRY))
def test_a_full_disk_during_export_is_one_line_naming_the_path(fmt, tmp_path):
    """15.1: SavedModel and TFLite ended in 'internal error: OutOfRangeError ... [Op:SaveV2]'."""
    dest = tmp_path / "out" / REGISTRY[fmt].default_name("m")
    result = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, "8000", "export", digits_run(), "-f", fmt, "-o", dest],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=300,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr[-2000:]
    assert lines == [f"cannot write {dest}: the file grew past the size this process may write "
                     "(ulimit -f)."], result.stderr[-2000:]  # fmt: skip
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written left behind
