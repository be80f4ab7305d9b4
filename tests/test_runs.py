"""`cnnspec runs` and `cnnspec diff` on run folders written by real (tiny) trainings."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cnnspec.cli import main
from cnnspec.runs import diff_layers, diff_runs, flatten, list_runs, render_diff

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "specs" / "lenet5.yaml"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """runs/a: LeNet-5 for 1 epoch; runs/b: a 3x3 relu first conv, a bn after it, lr 0.01;
    runs/killed: a copy of a without its metrics.json (as a SIGKILL mid-run leaves it)."""
    root = tmp_path_factory.mktemp("runs")
    variant = root / "lenet5b.yaml"
    variant.write_text(
        LENET.read_text().replace(
            "- conv: 5x5, 6, s=1, p=0, tanh", "- conv: 3x3, 8, p=1, relu\n  - bn"
        )
    )
    # one short epoch each: the files are what these tests read, not what was learned
    one = ["--set", "train.epochs=1", "--set", "train.steps_per_epoch=4", "--quiet"]
    assert main(["train", str(LENET), "--out", str(root / "runs" / "a"), *one]) == 0
    lr = ["--set", "train.optimizer.lr=0.01"]
    assert main(["train", str(variant), "--out", str(root / "runs" / "b"), *one, *lr]) == 0
    killed = root / "runs" / "killed"
    shutil.copytree(root / "runs" / "a", killed)
    (killed / "metrics.json").unlink()
    (killed / "model.keras").unlink()
    return root / "runs"


@pytest.mark.slow
def test_runs_table_lists_every_run_with_its_metrics(runs_dir, capsys):
    assert main(["runs", str(runs_dir), "--json"]) == 0
    rows = {r["run"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"a", "b", "killed"}
    a = rows["a"]
    metrics = json.loads((runs_dir / "a" / "metrics.json").read_text())
    assert a["name"] == "lenet5" and a["data"] == "digits" and a["status"] == "completed"
    assert a["epochs_done"] == 1 and a["results"]["val"] == metrics["val"]
    assert a["images_per_s"] == pytest.approx(metrics["images_per_s"])
    # killed before its end: incomplete, with the epoch its history.csv has
    assert rows["killed"]["status"] == "incomplete" and rows["killed"]["epochs_done"] == 1
    assert rows["killed"]["results"]["val"]["accuracy"] == pytest.approx(metrics["val"]["accuracy"])

    assert main(["runs", str(runs_dir)]) == 0
    table = capsys.readouterr().out
    assert "3 runs" in table and "completed" in table and "incomplete" in table
    assert f"{metrics['val']['accuracy']:.4f}" in table


@pytest.mark.slow
def test_runs_sort_by_a_metric_and_reverse(runs_dir):
    asc = [r.run for r in list_runs(runs_dir, sort="test_accuracy")]
    desc = [r.run for r in list_runs(runs_dir, sort="test_accuracy", reverse=True)]
    # the killed run has no test accuracy: last either way
    assert asc[-1] == desc[-1] == "killed"
    assert asc[:2] == desc[:2][::-1]
    values = [r.metric("test_accuracy") for r in list_runs(runs_dir, sort="test_accuracy")][:2]
    assert values == sorted(values)


@pytest.mark.slow
def test_runs_bad_sort_key_and_missing_folder_are_one_line(runs_dir, tmp_path, capsys):
    assert main(["runs", str(runs_dir), "--sort", "val_acc"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'val_accuracy'" in err
    assert main(["runs", str(tmp_path / "nowhere")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert main(["runs", str(tmp_path)]) == 0
    assert "no runs under" in capsys.readouterr().out


@pytest.mark.slow
def test_diff_shows_the_layers_recipe_and_results_that_differ(runs_dir, capsys):
    assert main(["diff", str(runs_dir / "a"), str(runs_dir / "b")]) == 0
    out = capsys.readouterr().out
    # the first conv changed, a bn was added, and the layers after it changed shape only
    assert "~ conv_1     conv: 5x5, 6, tanh -> 3x3, 8, p=1, relu; output 28x28x6 -> 32x32x8" in out
    assert "+ bn_1       bn, output 32x32x8, 32 params" in out
    assert "~ conv_2     conv: 5x5, 16, tanh; output 10x10x16 -> 12x12x16" in out
    assert "total params: 61,706 -> 83,582" in out
    assert "optimizer.adam.lr  0.003 -> 0.01" in out
    assert "epochs" not in out.split("recipe:")[1].split("data:")[0]  # both 1 epoch
    assert "data: the same" in out and "hardware: the same" in out
    assert "val.accuracy" in out.split("results:")[1]

    d = diff_runs(runs_dir / "a", runs_dir / "b")
    kinds = [(row["op"], (row.get("a") or row.get("b"))["kind"]) for row in d.layers]
    assert ("+", "bn") in kinds and ("~", "conv") in kinds and ("-", "conv") not in kinds
    assert d.recipe == {"optimizer.adam.lr": (0.003, 0.01)}


@pytest.mark.slow
def test_diff_of_a_run_with_itself_is_all_the_same(runs_dir):
    d = diff_runs(runs_dir / "a", runs_dir / "a")
    assert not (d.layers or d.recipe or d.data or d.hardware or d.results)
    assert "layers: the same (10 layers)" in render_diff(d)


@pytest.mark.slow
def test_diff_json_and_bad_runs(runs_dir, tmp_path, capsys):
    assert main(["diff", str(runs_dir / "a"), str(runs_dir / "b"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["recipe"] == {"optimizer.adam.lr": {"a": 0.003, "b": 0.01}}
    assert main(["diff", str(runs_dir / "a"), str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a run directory" in err


def test_diff_layers_aligns_by_content_not_position():
    def row(name, kind, notation, shape="8", params=0):
        return {"name": name, "kind": kind, "notation": notation, "shape": shape, "params": params}

    a = [row("conv_1", "conv", "3x3, 8"), row("conv_2", "conv", "3x3, 16"), row("d", "dense", "10")]
    b = [row("conv_1", "conv", "3x3, 8"), row("drop", "dropout", "0.5"), row("conv_2", "conv", "3x3, 16"), row("d", "dense", "10")]  # fmt: skip
    changes, same = diff_layers(a, b)
    assert same == 3 and [c["op"] for c in changes] == ["+"]
    assert flatten({"o": {"adam": {"lr": 1}}, "aug": [{"flip": {}}, "x"], "e": []}) == {
        "o.adam.lr": 1,
        "aug[0].flip": {},
        "aug[1]": "x",
        "e": [],
    }


@pytest.mark.slow
def test_runs_and_diff_never_import_tensorflow(runs_dir):
    code = (
        "import sys; from cnnspec.cli import main; "
        f"assert main(['runs', {str(runs_dir)!r}, '--json']) == 0; "
        f"assert main(['diff', {str(runs_dir / 'a')!r}, {str(runs_dir / 'b')!r}]) == 0; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported TF'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
