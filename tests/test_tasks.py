"""The task seam: every registered task has a sample, and its checks run before TensorFlow.

Parametrised over the registry (``cnnspec.tasks.registry.tasks``): a task added without a
sample here fails ``test_every_task_has_a_sample``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from cnnspec.errors import SpecError
from cnnspec.spec import loads_spec
from cnnspec.tasks import get, names

# task -> (a valid spec of it, a mistake with the first words of its located message)
SAMPLES = {
    "classification": (
        """\
name: c
input: [8, 8, 1]
layers:
  - flatten
  - dense: 10, softmax
""",
        "train: {loss: mse}",
        "loss mse does not fit the classification task",
    ),
    "multilabel": (
        """\
name: m
task: multilabel
input: [8, 8, 1]
layers:
  - flatten
  - dense: 10, sigmoid
""",
        "train: {loss: categorical_crossentropy}",
        "loss categorical_crossentropy does not fit the multilabel task",
    ),
    "regression": (
        """\
name: r
task: regression
input: [8, 8, 1]
layers:
  - flatten
  - dense: 1
""",
        "train: {loss: binary_crossentropy}",
        "loss binary_crossentropy does not fit the regression task",
    ),
    "segmentation": (
        """\
name: s
task: segmentation
input: [8, 8, 1]
layers:
  - conv: 3x3, 4, p=same, relu
  - conv: 1x1, 3, softmax
""",
        "train: {loss: mse}",
        "loss mse does not fit the segmentation task",
    ),
}


def test_every_task_has_a_sample():
    assert sorted(SAMPLES) == sorted(names())


@pytest.mark.parametrize("task", sorted(SAMPLES))
def test_each_task_sample_validates_with_the_tasks_defaults(task):
    text, _, _ = SAMPLES[task]
    spec = loads_spec(text)
    t = get(spec.task)
    assert t.name == task
    assert spec.train.loss.kind == t.default_loss
    assert list(spec.train.metrics) == list(t.default_metrics)


@pytest.mark.parametrize("task", sorted(SAMPLES))
def test_each_task_refuses_a_mistake_located(task):
    text, mistake, words = SAMPLES[task]
    with pytest.raises(SpecError) as exc:
        loads_spec(text + mistake + "\n", "net.yaml")
    lines = str(exc.value).splitlines()
    hit = [line for line in lines if words in line]
    assert hit, lines
    line_no = text.count("\n") + 1  # the mistake's line
    assert hit[0].startswith(f"net.yaml:{line_no}:"), hit


def test_classification_is_the_default_and_unchanged():
    spec = loads_spec(SAMPLES["classification"][0])
    assert spec.task == "classification"
    assert spec.train.loss.kind == "categorical_crossentropy"
    assert spec.train.metrics == ["accuracy"]


def test_an_unknown_task_is_located_with_the_registered_names():
    text = SAMPLES["classification"][0] + "task: multilable\n"
    with pytest.raises(SpecError) as exc:
        loads_spec(text, "net.yaml")
    message = str(exc.value)
    assert "net.yaml:6:" in message and "unknown task 'multilable'" in message
    for name in names():
        assert name in message


def test_task_checks_never_import_tensorflow():
    code = (
        "import sys\n"
        "from cnnspec.spec import loads_spec\n"
        "from cnnspec.tasks import tasks\n"
        f"loads_spec({SAMPLES['classification'][0]!r})\n"
        "assert not any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- mismatched heads, losses and labels: located, all at once, exit 2 ---------------------------

MULTI_SOFTMAX = """\
name: m
task: multilabel
input: [8, 8, 1]
layers:
  - flatten
  - dense: 10, softmax
train:
  loss: categorical_crossentropy
"""


def test_a_softmax_multilabel_head_and_a_categorical_loss_are_both_refused_located():
    with pytest.raises(SpecError) as exc:
        loads_spec(MULTI_SOFTMAX, "m.yaml")
    lines = str(exc.value).splitlines()
    assert any(
        line.startswith("m.yaml:4:") and "ends in softmax" in line and "sigmoid" in line
        for line in lines
    ), lines
    assert any(
        line.startswith("m.yaml:8:") and "categorical_crossentropy" in line for line in lines
    )


def test_a_regression_head_must_be_linear_with_one_unit_per_target():
    text = SAMPLES["regression"][0].replace("dense: 1", "dense: 2, relu") + (
        "train: {targets: [count]}\n"
    )
    with pytest.raises(SpecError) as exc:
        loads_spec(text, "r.yaml")
    message = str(exc.value)
    assert "r.yaml:4:" in message and "ends in relu" in message
    assert "has 2 units but learns 1 target(s) (count)" in message


def test_a_head_of_its_own_is_checked_against_its_task_located():
    text = SAMPLES["classification"][0].replace("  - flatten\n", "  - flatten: {name: feat}\n") + (
        "heads:\n"
        "  count:\n"
        "    from: feat\n"
        "    task: regression\n"
        "    label: count\n"
        "    loss: binary_crossentropy\n"
        "    layers: ['dense: 1, sigmoid']\n"
    )
    with pytest.raises(SpecError) as exc:
        loads_spec(text, "h.yaml")
    message = str(exc.value)
    assert (
        "h.yaml:11:" in message
        and "loss binary_crossentropy does not fit the regression" in message
    )
    assert "head 'count' ends in sigmoid" in message


def test_the_tasks_metric_names_are_what_early_stopping_may_monitor():
    ok = SAMPLES["multilabel"][0] + "train: {early_stopping: {monitor: val_map}}\n"
    assert loads_spec(ok).train.early_stopping.monitor == "val_map"
    bad = SAMPLES["regression"][0] + "train: {early_stopping: {monitor: val_accuracy}}\n"
    with pytest.raises(SpecError) as exc:
        loads_spec(bad, "r.yaml")
    assert "val_mae" in str(exc.value)
