"""Tiny runs of the label-table tasks (multilabel, regression, a class head beside a count head)
for the export and resume tests: 16x16 digits in an .npz whose y is a named label table, and
specs shaped like specs/multilabel.yaml, specs/regression.yaml and specs/two_heads.yaml, and
one with all three tasks on one trunk (what the tests run: one run covers every task's state).

Also the resume check every task shares (tests/test_segmentation.py does the same for masks):
train N epochs straight, train 1 and resume to N, compare every weight and history.csv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnspec.cli import main
from cnnspec.train.rundir import read_history

#: The label table's columns: a class, a number, and three yes/no labels.
COLUMNS = ["digit", "ink", "even", "big", "round"]

TRUNK = """\
input: [16, 16, 1]
layers:
  - conv: 3x3, 8, p=same, relu
  - maxpool: 2x2, name=trunk
  - conv: 3x3, 8, p=same, relu
  - gmaxpool
"""
TRAIN = """\
train:
  epochs: 2
  batch_size: 16
  steps_per_epoch: 3
  optimizer: {adam: {lr: 3.0e-3}}
"""
SPECS = {
    "multilabel": f"name: tiny_multilabel\ntask: multilabel\n{TRUNK}  - dense: 3, sigmoid\n"
    f"{TRAIN}  targets: [even, big, round]\n",
    "regression": f"name: tiny_regression\ntask: regression\n{TRUNK}  - dense: 1\n"
    f"{TRAIN}  targets: [ink]\n",
    "two_heads": f"name: tiny_two_heads\n{TRUNK}  - dense: 10, softmax\n"
    "heads:\n  ink:\n    from: trunk\n    task: regression\n    label: ink\n"
    "    layers: [flatten, dense: 1]\n"
    f"{TRAIN}  targets: [digit]\n",
    # every label-table task in one run: a multilabel main output, a class head, a count head
    "three_tasks": f"name: tiny_three_tasks\ntask: multilabel\n{TRUNK}  - dense: 3, sigmoid\n"
    "heads:\n  digit:\n    from: trunk\n    task: classification\n    label: digit\n"
    "    layers:\n      - gavgpool\n      - dense: 10, softmax\n"
    "  ink:\n    from: trunk\n    task: regression\n    label: ink\n"
    "    layers: [flatten, dense: 1]\n"
    f"{TRAIN}  targets: [even, big, round]\n",
}


#: A tiny segmentation net (every pixel: background or ink), for ``digits_masks``.
SEGMENTATION = """\
name: tiny_segmentation
task: segmentation
input: [16, 16, 1]
layers:
  - conv: 3x3, 8, p=same, relu
  - conv: 1x1, 2, p=same, softmax
train:
  epochs: 1
  batch_size: 16
  steps_per_epoch: 3
  optimizer: {adam: {lr: 3.0e-3}}
"""


def digits_masks(path: Path, n: int = 96) -> Path:
    """``n`` 16x16 digits with a mask per image (1 where the ink is above half)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (np.kron(d.images[:n], np.ones((2, 2))) * (255.0 / 16.0)).astype(np.uint8)
    np.savez(path, x=x[..., None], y=(x > 127).astype(np.uint8))
    return path


#: Runs trained once per test process and shared by the modules that only read them.
SHARED: dict[tuple[str, int], Path] = {}


def shared_run(factory, task: str, n: int = 96) -> Path:
    """A 1-epoch run of ``SPECS[task]`` (or ``"segmentation"``) on ``n`` digits, trained on
    first use in a pytest temporary folder (``factory``: ``tmp_path_factory``) and then
    reused: do not write into it (copy it first)."""
    key = (task, n)
    if key not in SHARED:
        folder = factory.mktemp(f"shared_{task}")
        if task == "segmentation":
            data = digits_masks(folder / "digits_masks.npz", n)
            spec = folder / "segmentation.yaml"
            spec.write_text(SEGMENTATION)
        else:
            data = digits_table(folder / "digits_table.npz", n)
            spec = write_spec(folder, task)
        SHARED[key] = train(spec, folder / "run", data, "--epochs", "1")
    return SHARED[key]


def digits_table(path: Path, n: int = 240, size: int = 16) -> Path:
    """``n`` sklearn digits at ``size`` x ``size`` (16 or 32) with a label table: the digit, its ink (mean pixel) and
    whether it is even, >= 5, or has a loop (0, 6, 8, 9)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.kron(d.images[:n], np.ones((size // 8, size // 8))) * (255.0 / 16.0)
    x = x.astype(np.uint8)[..., None]
    digit = d.target[:n].astype(np.float32)
    y = np.stack(
        [
            digit,
            x.reshape(n, -1).mean(axis=1) / 10.0,
            (digit % 2 == 0),
            (digit >= 5),
            np.isin(digit, (0, 6, 8, 9)),
        ],
        axis=1,
    ).astype(np.float32)
    np.savez(path, x=x, y=y, columns=np.array(COLUMNS))
    return path


def write_spec(folder: Path, task: str) -> Path:
    path = folder / f"{task}.yaml"
    path.write_text(SPECS[task])
    return path


def train(spec: Path, run: Path, data: Path, *args: str) -> Path:
    """``cnnspec train SPEC --data DATA --out RUN --quiet ARGS`` in this process."""
    assert main(["train", str(spec), "--data", str(data), "--out", str(run), "--quiet", *args]) == 0
    return run


def weights(run: Path) -> list[np.ndarray]:
    import keras

    return [np.asarray(w) for w in keras.saving.load_model(run / "model.keras").get_weights()]


def assert_resumed_equals_straight(straight: Path, resumed: Path) -> None:
    """Every weight and every epoch's logged value of the two runs are bit-identical."""
    a, b = weights(straight), weights(resumed)
    assert len(a) == len(b) and all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert read_history(resumed / "history.csv") == read_history(straight / "history.csv")
