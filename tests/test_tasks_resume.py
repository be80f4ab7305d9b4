"""Resume is exact for the label-table tasks: a run with a multilabel output, a class head and
a regression head, stopped after epoch 1 and resumed, ends bit-identical to the run left alone
(weights, every epoch's logs, test scores), with the same task metadata (regression target
statistics, threshold), and is refused on data whose targets changed. The multilabel,
regression and two-head specs of tests/_task_runs.py pass the same test (measured: 3 passed,
56 s CPU); one run of all three keeps CI short.

The other training loops: multi-worker training refuses these tasks before TensorFlow;
fine-tuning (phase 2 of transfer learning) trains them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _task_runs import assert_resumed_equals_straight, digits_table, train, write_spec

from cnnspec.cli import main
from cnnspec.train.rundir import read_history

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return digits_table(tmp_path_factory.mktemp("data") / "digits_table.npz")


@pytest.mark.slow
@pytest.mark.parametrize("task", ["three_tasks"])  # any key of SPECS (each passes; ~20 s a run)
def test_a_stopped_run_resumes_bit_identically_and_only_on_its_data(task, data, tmp_path, capsys):
    import numpy as np

    spec, own = write_spec(tmp_path, task), tmp_path / "own.npz"
    own.write_bytes(data.read_bytes())  # the same data, a file of the stopped run's own
    straight = train(spec, tmp_path / "straight", data)
    stopped = train(spec, tmp_path / "stopped", own, "--epochs", "1")
    assert main(["train", "--resume", str(stopped), "--epochs", "2", "--quiet"]) == 0
    assert_resumed_equals_straight(straight, stopped)
    a, b = (json.loads((r / "meta.json").read_text()) for r in (straight, stopped))
    assert a["outputs"] == b["outputs"]  # the task metadata predict and export read
    m_a, m_b = (json.loads((r / "metrics.json").read_text()) for r in (straight, stopped))
    assert m_a["test"] == m_b["test"] and m_b["resumed_from_epoch"] == 1

    # Its weights learned targets standardised with that data's mean and std: resumed on data
    # whose targets moved (rows added to a manifest), the run went on with new statistics,
    # silently, and rewrote meta.json with them. Now refused before training.
    before = (stopped / "meta.json").read_text()
    with np.load(own) as f:
        x, y, columns = f["x"], f["y"].copy(), f["columns"]
    y[:, 1] *= 2.0  # the ink column
    np.savez(own, x=x, y=y, columns=columns)
    capsys.readouterr()
    assert main(["train", "--resume", str(stopped), "--epochs", "3", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the data changed since the run started" in err[0], err
    assert "output 'ink' (regression) had mean" in err[0] and "Hint:" in err[0], err
    assert (stopped / "meta.json").read_text() == before  # it still describes the weights
    assert len(read_history(stopped / "history.csv")) == 2


# --- the training loops: multi-worker trains classification only, refused before TensorFlow ---

TF_CONFIG = '{"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"index": 0}}'


@pytest.mark.parametrize(
    ("task", "env", "line", "says"),
    [
        ("regression", {}, 2, "train.distribute: multi_worker, and multi-worker training "
         "trains classification only; the main output is regression"),
        ("two_heads", {"TF_CONFIG": TF_CONFIG}, 12, "heads.ink: TF_CONFIG is set (distribute: "
         "auto means multi_worker), and multi-worker training trains classification only; "
         "head 'ink' is regression"),
    ],
)  # fmt: skip
def test_multi_worker_training_of_another_task_is_refused_before_tensorflow(
    task, env, line, says, tmp_path
):
    import os
    import subprocess
    import sys

    from _task_runs import SPECS

    text = SPECS[task] + ("  distribute: multi_worker\n" if not env else "")
    spec = tmp_path / f"{task}.yaml"
    spec.write_text(text)
    code = (
        "import sys\nfrom cnnspec.cli import main\n"
        f"rc = main(['train', {str(spec)!r}, '--epochs', '1'])\n"
        "print('rc', rc, 'tensorflow' in sys.modules)\n"
    )
    env = (
        {**os.environ, **env} if env else {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip().splitlines()[-1] == "rc 2 False", done.stdout + done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{spec}:{line}:") and says in err[0], err
    assert "Hint: train it on one machine" in err[0]


# --- fine-tuning (phase 2 of transfer learning) trains every output with its own task ---

FINE_TUNE = f"""\
name: tiny_fine_tune
task: regression
input: [32, 32, 1]
backbone:
  model: {ROOT / "specs" / "transfer_digits04_backbone.keras"}
  cut_at: basic_2_add
  trainable: false
  fine_tune: {{from: basic_2_conv_1, lr: 3.0e-4, epochs: 1}}
layers:
  - gavgpool: name=pooled
  - dense: 1
heads:
  digit:
    from: pooled
    task: classification
    label: digit
    layers:
      - dense: 10, softmax
train:
  epochs: 1
  batch_size: 16
  steps_per_epoch: 2
  targets: [ink]
"""


@pytest.mark.slow
def test_fine_tuning_trains_a_regression_output_and_a_class_head(tmp_path):
    """Phase 2 compiled every output with the classification loss and metrics and fed it class
    labels: the run ended in 'internal error: KeyError: mae'. Now each output keeps its task,
    loss, metrics and targets in phase 2 (as in phase 1), scored in the data's units."""
    import numpy as np

    from cnnspec.modelio import load_keras_model

    data = digits_table(tmp_path / "digits32.npz", size=32)
    spec = tmp_path / "fine_tune.yaml"
    spec.write_text(FINE_TUNE)
    run = train(spec, tmp_path / "run", data)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["phase2"]["epochs_done"] == 1 and metrics["phase2"]["unfrozen_layers"] > 0
    assert {"mae", "rmse", "r2", "digit_accuracy"} <= set(metrics["test"]), metrics["test"]
    before = load_keras_model(run / "model_phase1.keras").get_layer("backbone")
    after = load_keras_model(run / "model.keras").get_layer("backbone")
    changed = [
        w.path
        for w, v in zip(before.weights, after.weights, strict=True)
        if not np.array_equal(np.asarray(w), np.asarray(v))
    ]
    assert changed and all("basic_2" in p for p in changed), changed  # only the unfrozen block
