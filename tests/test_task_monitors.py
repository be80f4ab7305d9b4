"""A head's metrics as monitors and search objectives (issue 16).

Early stopping, the plateau schedule and a search's objective accept every name a run logs —
each task's metrics (``val_map``, ``val_mae``, ``val_r2``, ...) and, for a net with heads, the
per-output names Keras logs (``val_count_mae``) — each minimised or maximised as its task says.
An unknown name is refused before TensorFlow, located, with a "did you mean" over those names.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnnspec.cli import main
from cnnspec.spec import load_spec
from cnnspec.spec.monitors import logged

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

MODES = [
    ("multilabel.yaml", "val_f1", "max"),
    ("multilabel.yaml", "val_f1_micro", "max"),
    ("multilabel.yaml", "val_map", "max"),
    ("multilabel.yaml", "val_loss", "min"),
    ("regression.yaml", "val_mae", "min"),
    ("regression.yaml", "val_rmse", "min"),
    ("regression.yaml", "val_r2", "max"),
    ("regression.yaml", "mae", "min"),
    ("unet_small.yaml", "val_mean_iou", "max"),
    ("unet_small.yaml", "val_dice", "max"),
    ("two_heads.yaml", "val_count_mae", "min"),
    ("two_heads.yaml", "val_count_rmse", "min"),
    ("two_heads.yaml", "val_count_r2", "max"),
    ("two_heads.yaml", "val_count_loss", "min"),
    ("two_heads.yaml", "val_dense_1_accuracy", "max"),
    ("two_heads.yaml", "val_accuracy", "max"),  # the main output's metric under its plain name
    ("lenet5.yaml", "val_accuracy", "max"),
]


def _with_recipe(tmp_path: Path, spec: str, recipe: str) -> Path:
    """``spec`` with ``recipe`` lines appended to its train: section (the last section)."""
    text = (SPECS / spec).read_text()
    assert "\ntrain:\n" in text and "\nsearch:" not in text
    path = tmp_path / spec
    path.write_text(text.rstrip("\n") + "\n" + recipe)
    return path


@pytest.mark.parametrize(("spec", "name", "mode"), MODES)
def test_every_task_metric_is_a_monitor_with_its_tasks_direction(spec, name, mode):
    es = f"train.early_stopping={{monitor: {name}, patience: 2}}"
    s = load_spec(SPECS / spec, [es])
    assert s.train.monitor_mode(name, s.train.early_stopping.mode) == mode
    plateau = f"train.schedule={{reduce_on_plateau: {{monitor: {name}}}}}"
    s = load_spec(SPECS / spec, [plateau])
    assert s.train.schedule.params.monitor == name and s.train.monitor_mode(name) == mode


def test_the_logged_names_are_what_keras_logs_for_two_heads():
    s = load_spec(SPECS / "two_heads.yaml")
    # As printed by a real run of specs/two_heads.yaml (Keras 3, dict outputs, LogNames alias).
    train = ["count_loss", "count_mae", "count_r2", "count_rmse", "dense_1_accuracy",
             "dense_1_loss", "loss", "accuracy"]  # fmt: skip
    assert set(logged(s, s.graph)) == {*train, *(f"val_{n}" for n in train)}


def test_an_explicit_mode_is_kept(tmp_path):
    path = _with_recipe(
        tmp_path, "regression.yaml", "  early_stopping: {monitor: val_mae, mode: max}\n"
    )
    s = load_spec(path)
    assert s.train.monitor_mode("val_mae", s.train.early_stopping.mode) == "max"


def test_the_callbacks_get_the_tasks_direction(tmp_path):
    from cnnspec.train.trainer import recipe_callbacks

    recipe = (
        "  early_stopping: {monitor: val_count_mae}\n"
        "  schedule: {reduce_on_plateau: {monitor: val_count_r2}}\n"
    )
    s = load_spec(_with_recipe(tmp_path, "two_heads.yaml", recipe))
    es, plateau = recipe_callbacks(s.train)
    assert (es.monitor, es.mode) == ("val_count_mae", "min")
    assert (plateau.monitor, plateau.mode) == ("val_count_r2", "max")


@pytest.mark.parametrize(
    ("spec", "recipe", "wrong", "guess"),
    [
        ("two_heads.yaml", "  early_stopping: {monitor: val_count_mea}\n", "val_count_mea",
         "val_count_mae"),
        # (multilabel.yaml has a schedule of its own: the plateau case is on regression.yaml)
        ("multilabel.yaml", "  early_stopping: {monitor: val_mpa}\n", "val_mpa", "val_map"),
        ("regression.yaml", "  schedule: {reduce_on_plateau: {monitor: val_r22}}\n", "val_r22",
         "val_r2"),
        # a regression net logs no accuracy: the classification default is not offered
        ("regression.yaml", "  early_stopping: {monitor: val_rsme}\n", "val_rsme", "val_rmse"),
    ],
)  # fmt: skip
def test_an_unknown_monitor_is_refused_located_with_a_guess(
    tmp_path, capsys, spec, recipe, wrong, guess
):
    path = _with_recipe(tmp_path, spec, recipe)
    line_no = path.read_text().splitlines().index(recipe.rstrip("\n")) + 1
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{path}:{line_no}:"), err
    assert f"'{wrong}' is not a metric this recipe logs, received monitor={wrong}" in err[0]
    assert f"did you mean '{guess}'?" in err[0]


def test_a_monitor_the_run_would_not_log_is_refused(tmp_path, capsys):
    # val_accuracy is logged by classification nets only: a multi-label net is told its names.
    path = _with_recipe(tmp_path, "multilabel.yaml", "  early_stopping: {monitor: val_accuracy}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'val_accuracy' is not a metric this recipe logs" in err
    assert "val_f1" in err and "val_map" in err  # the names it logs, since none is close


def test_train_refuses_an_unknown_monitor_before_tensorflow(tmp_path):
    path = _with_recipe(tmp_path, "two_heads.yaml", "  early_stopping: {monitor: val_count_mea}\n")
    code = (
        "import sys; from cnnspec.cli import main; "
        f"rc = main(['train', {str(path)!r}, '--out', {str(tmp_path / 'run')!r}]); "
        "print('RC', rc, 'tensorflow' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "RC 2 False" in proc.stdout, (proc.stdout, proc.stderr[-2000:])
    assert "did you mean 'val_count_mae'?" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


# --- search objectives ----------------------------------------------------------------------------


def _search_spec(tmp_path: Path, spec: str, objective: str, trials: int = 2) -> Path:
    text = (SPECS / spec).read_text().rstrip("\n") + (
        f"\nsearch:\n  trials: {trials}\n  objective: {objective}\n  pruner: none\n"
        "  space:\n    train.optimizer.adam.lr: [1.0e-5, 2.0e-3]\n"
    )
    path = tmp_path / spec
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("spec", "objective", "maximize"),
    [
        ("regression.yaml", "val_mae", False),
        ("regression.yaml", "val_rmse", False),
        ("regression.yaml", "val_r2", True),
        ("multilabel.yaml", "val_map", True),
        ("multilabel.yaml", "val_f1", True),
        ("two_heads.yaml", "val_count_mae", False),
        ("two_heads.yaml", "val_accuracy", True),
        ("unet_small.yaml", "val_mean_iou", True),
        ("lenet5.yaml", "val_loss", False),
    ],
)
def test_a_search_objective_takes_its_tasks_direction(tmp_path, capsys, spec, objective, maximize):
    path = _search_spec(tmp_path, spec, objective)
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert load_spec(path).search.maximize is maximize


def test_an_unknown_search_objective_is_refused_with_a_guess(tmp_path, capsys):
    path = _search_spec(tmp_path, "two_heads.yaml", "val_count_mea")
    line_no = path.read_text().splitlines().index("  objective: val_count_mea") + 1
    assert main(["search", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"{path}:{line_no}:3: search: 'val_count_mea' is not a metric"), err
    assert "did you mean 'val_count_mae'?" in err[0]
    assert not (tmp_path / "out").exists()


# --- real runs ---------------------------------------------------------------------------------


def _history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_training_early_stops_on_a_heads_metric(tmp_path):
    """patience 0 on val_count_mae (minimised): the run goes on while the count head's val MAE
    falls, and stops at the first epoch it does not (with max, it would stop at epoch 2)."""
    path = _with_recipe(
        tmp_path, "two_heads.yaml",
        "  early_stopping: {monitor: val_count_mae, patience: 0, restore_best_weights: false}\n",
    )  # fmt: skip
    run = tmp_path / "run"
    sets = ["train.epochs=25", "train.steps_per_epoch=4", "train.validation_split=0.1"]
    args = ["train", str(path), "--out", str(run), "--quiet"]
    assert main([*args, *(a for s in sets for a in ("--set", s))]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    maes = [float(row["val_count_mae"]) for row in _history(run)]
    assert 2 < len(maes) < 25, maes  # it learned for a while, then stopped early
    assert all(b < a for a, b in zip(maes[:-2], maes[1:-1], strict=True)), maes  # fell, then
    assert maes[-1] >= maes[-2], maes  # the epoch that did not improve stopped it
    assert metrics["status"] == "early_stopped", metrics.get("status")


@pytest.mark.slow
def test_a_search_minimises_a_regression_objective(tmp_path, capsys):
    """Two trials on val_mae, lr 1e-5 (learns nothing in one short epoch) and 2e-3: the best
    trial is the one with the lower val MAE, and best.yaml takes its lr."""
    path = _search_spec(tmp_path, "regression.yaml", "val_mae")
    text = path.read_text().replace("  epochs: 6\n", "  epochs: 1\n  steps_per_epoch: 12\n")
    path.write_text(text.replace("  trials: 2\n", "  trials: 2\n  sampler: random\n"))
    out = tmp_path / "out"
    assert main(["search", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "top trials by val_mae" in printed and "(min)" in printed
    with open(out / "search.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["state"] == "COMPLETE"]
    assert len(rows) == 2, rows
    best = min(rows, key=lambda r: float(r["value"]))
    assert len({r["train.optimizer.adam.lr"] for r in rows}) == 2, rows  # both lrs tried
    assert float(best["train.optimizer.adam.lr"]) == pytest.approx(2.0e-3), rows
    spec = load_spec(out / "best.yaml")
    assert spec.train.optimizer.adam.lr == pytest.approx(2.0e-3)
