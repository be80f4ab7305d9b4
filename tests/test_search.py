"""`cnnspec search`: a search: section, budget pruning before building, workers, resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnspec.cli import main
from cnnspec.spec import load_spec
from cnnspec.spec.search import override_text

# A tiny net on 8x8 digits; plain SGD at lr 1e-4 is a deliberately bad default (2 epochs
# learn next to nothing). The second conv choice (600 kernels: ~102K parameters) is over the
# 10K-parameter budget.
SPEC = """\
name: tiny_search
input: [8, 8, 1]
layers:
  - conv: 3x3, 8, p=same, relu
  - maxpool: 2x2
  - flatten
  - dense: 10, softmax
train:
  data: digits
  epochs: 2
  batch_size: 32
  optimizer: {{sgd: {{lr: 1.0e-4}}}}
search:
  trials: {trials}
  objective: val_accuracy
  budget: {{max_params: 1.0e4}}
  space:
    train.optimizer.sgd.lr: {{loguniform: [0.05, 0.5]}}
{extra}
"""
CONV_CHOICE = '    layers.0.conv: ["3x3, 8, p=same, relu", "3x3, 600, p=same, relu"]'


def _spec(tmp_path: Path, trials: int = 4, extra: str = "", **train) -> Path:
    text = SPEC.format(trials=trials, extra=extra)
    for key, value in train.items():
        text = text.replace("  epochs: 2\n", f"  epochs: 2\n  {key}: {value}\n")
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


def _csv(out: Path) -> list[dict[str, str]]:
    with open(out / "search.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", **extra}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnnspec.cli", "search", *args]


# --- the section and its checks (no TensorFlow) ------------------------------------------------


def test_override_text_is_what_set_takes():
    assert override_text("a.b", 0.1) == "a.b=0.1"
    assert override_text("a", "3x3, 32, relu") == 'a="3x3, 32, relu"'
    assert override_text("a", "true") == 'a="true"'  # a string stays a string
    assert override_text("a", True) == "a=true"
    assert override_text("layers.3.basic.n", 48) == "layers.3.basic.n=48"


def test_search_section_validated_with_the_spec(tmp_path, capsys):
    path = _spec(tmp_path)
    text = path.read_text().replace("[0.05, 0.5]", "[0, 0.5]").replace("trials: 4", "trials: 0")
    path.write_text(text + "    train.batch_size: {int: [16, 64], step: 7}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"{path}:14:3: search.trials: input should be greater than or equal")
    assert any(":18:" in line and "loguniform needs 0 < low < high" in line for line in err)
    assert any("multiple of step" in line for line in err)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("objective: val_accuracy", "objective: val_acc"), ":15:3: search: 'val_acc' is not a"),
        (
            ("train.optimizer.sgd.lr:", "train.optimiser.sgd.lr:"),
            ":18:5: search.space: 'train.optimiser.sgd.lr' is not a value of this spec",
        ),
        (("search:", "searched:"), "unknown key 'searched'"),
    ],
    ids=["objective", "path", "no-section"],
)
def test_search_plan_errors_are_located(tmp_path, capsys, edit, expected):
    path = _spec(tmp_path)
    path.write_text(path.read_text().replace(*edit))
    assert main(["search", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing started


def test_spec_without_search_section(tmp_path, capsys):
    spec = Path(__file__).resolve().parents[1] / "specs" / "lenet5.yaml"
    assert main(["search", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "the spec has no search: section. Hint: add search:" in capsys.readouterr().err


# --- real searches on digits ---------------------------------------------------------------------


@pytest.mark.slow
def test_search_beats_a_bad_default_and_prunes_over_budget_without_building(tmp_path, capsys):
    import optuna

    import cnnspec.build.model as builder
    from cnnspec.train.trainer import train

    path = _spec(tmp_path, trials=5, extra=CONV_CHOICE)
    baseline = train(load_spec(path), run_dir=tmp_path / "baseline", verbose=0, echo=lambda s: 0)
    bad = baseline.metrics["val"]["accuracy"]

    out = tmp_path / "out"
    before = builder.builds
    assert main(["search", str(path), "--out", str(out)]) == 0
    built = builder.builds - before
    printed = capsys.readouterr().out
    assert "5/5 done" in printed and "top trials by val_accuracy" in printed

    rows = _csv(out)
    assert list(rows[0]) == [
        "number", "state", "value", "params", "macs", "seconds", "note",
        "train.optimizer.sgd.lr", "layers.0.conv",
    ]  # fmt: skip
    assert [r["number"] for r in rows] == ["0", "1", "2", "3", "4"]
    over = [r for r in rows if r["note"].startswith("over budget: params")]
    trained = [r for r in rows if (out / "trials" / r["number"]).is_dir()]
    assert over and trained, rows  # seed 0 draws both conv choices
    for r in over:
        assert r["state"] == "PRUNED" and "600" in r["layers.0.conv"]
        assert int(r["params"]) > 10_000 and not (out / "trials" / r["number"]).exists()
    # One model per trained trial, none for a candidate refused by its budget.
    assert built == len(trained) == len(rows) - len(over)
    study = optuna.load_study(study_name="tiny_search", storage=f"sqlite:///{out / 'search.db'}")
    assert all("run_dir" not in study.trials[int(r["number"])].user_attrs for r in over)

    best = max((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: float(r["value"]))
    assert float(best["value"]) > bad + 0.2, (bad, rows)
    spec = load_spec(out / "best.yaml")  # ready for cnnspec train
    assert spec.search is None
    assert spec.train.optimizer.sgd.lr == pytest.approx(float(best["train.optimizer.sgd.lr"]))
    assert f"The best trial ({best['number']})" in (out / "best.yaml").read_text()
    for png in ("objective.png", "cost.png", "importances.png"):
        assert (out / "plots" / png).read_bytes()[:4] == b"\x89PNG"

    # Run again: the plan is complete, nothing trains, the results are written again.
    before = builder.builds
    assert main(["search", str(path), "--out", str(out)]) == 0
    assert builder.builds == before and len(_csv(out)) == 5


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path):
    import optuna

    path = _spec(tmp_path, trials=4, steps_per_epoch=5)
    out = tmp_path / "out"
    proc = subprocess.run(
        _cli(str(path), "--out", str(out), "--workers", "2"),
        capture_output=True, text=True, env=_env(), timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[worker 0]" in proc.stdout and "[worker 1]" in proc.stdout
    rows = _csv(out)
    assert sorted(int(r["number"]) for r in rows) == [0, 1, 2, 3]
    assert {r["state"] for r in rows} <= {"COMPLETE", "PRUNED"}
    study = optuna.load_study(study_name="tiny_search", storage=f"sqlite:///{out / 'search.db'}")
    workers = {t.number: t.user_attrs["worker"] for t in study.trials}
    assert len(set(workers.values())) == 2  # both processes ran trials of the one study
    # Each trial was trained once, in its own run directory, by one worker.
    dirs = sorted(int(p.name) for p in (out / "trials").iterdir())
    assert dirs == [0, 1, 2, 3]
    assert len({r["train.optimizer.sgd.lr"] for r in rows}) == 4


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_stopped_search_resumes_and_finishes_the_plan(tmp_path, sig):
    path = _spec(tmp_path, trials=3, steps_per_epoch=40)
    path.write_text(path.read_text().replace("  epochs: 2\n", "  epochs: 5\n"))
    out = tmp_path / "out"
    # kill -9: trial 1 is found dead only 3 heartbeats (12 s) after the kill, so the restart
    # always runs trial 2 first and then must still run trial 1's retry (it once ended with
    # the retry left WAITING, "3/3 done").
    env = _env(CNNSPEC_SEARCH_HEARTBEAT="4" if sig == signal.SIGKILL else "2")
    first = subprocess.Popen(
        _cli(str(path), "--out", str(out)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    deadline = time.time() + 900  # a hang guard (a loaded box imports TensorFlow in 85 s)
    # Stop trial 1 in the middle of its training: after its first of five epochs is on disk (a
    # fixed sleep after its folder appeared let a fast machine finish the trial first).
    while not (out / "trials" / "1" / "history.csv").exists():
        assert first.poll() is None and time.time() < deadline, "the search ended too soon"
        time.sleep(0.05)
    first.send_signal(sig)
    assert first.wait(timeout=120) == (130 if sig == signal.SIGINT else -signal.SIGKILL)

    second = subprocess.run(
        _cli(str(path), "--out", str(out)), capture_output=True, text=True, env=env, timeout=1200
    )
    assert second.returncode == 0, second.stderr[-3000:]
    rows = _csv(out)
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert len(failed) == 1 and failed[0]["number"] == "1", rows
    retry = failed[0]["note"].rsplit(" ", 1)[-1]
    assert failed[0]["note"].startswith("interrupted (its worker stopped); retried as trial")
    again = next(r for r in rows if r["number"] == retry)
    assert again["state"] in ("COMPLETE", "PRUNED")
    assert again["train.optimizer.sgd.lr"] == failed[0]["train.optimizer.sgd.lr"]  # same values
    finished = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3 and len(rows) == 4  # the plan: none lost, none counted twice
    assert "3/3 done" in second.stdout
