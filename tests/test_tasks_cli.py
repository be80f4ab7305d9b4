"""`cnnspec evaluate` and `cnnspec predict` of multi-label, regression and two-head models.

Three tiny models are trained once (1 epoch) on the images and labels of user manifests made
here from scikit-learn's digits (as .npz label tables with the same columns: the training is not
what is tested): 32x32 canvases holding digits, a ``path,labels`` CSV (the digits present,
``;``-separated) and a ``path,digit,count`` CSV (copies of one digit), on which they are
evaluated and predicted. Their column names are the shipped
sources' (digits_multilabel: labels 0-9; digits_count: digit, count), so the same models are
also evaluated on the shipped data. Every figure evaluate prints is recomputed here with
scikit-learn from the model's own outputs; predict's values are checked in the data's units.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cnnspec.cli import main

SPECS = Path(__file__).resolve().parents[1] / "specs"
N = 60  # canvases per manifest


def _canvases(root: Path, rng, copies_of_one: bool):
    """(file names, label sets, (digit, count)) of N canvases written under root."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    by_class = [np.flatnonzero(digits.target == d) for d in range(10)]
    corners = [(0, 0), (0, 16), (16, 0), (16, 16)]
    names, sets, counts = [], [], []
    for i in range(N):
        canvas = np.zeros((32, 32), np.uint8)
        if copies_of_one:
            digit, count = i % 10, 1 + (i // 10) % 4
            chosen = [digit] * count
        else:
            chosen = sorted({i % 10, int(rng.integers(10))})
            digit, count = chosen[0], len(chosen)
        for d, (r, c) in zip(chosen, rng.permutation(corners)[: len(chosen)], strict=False):
            img = digits.images[rng.choice(by_class[d])]
            canvas[r : r + 16, c : c + 16] = np.kron(img, np.ones((2, 2))) * 255 / 16
        name = f"img/{i:03d}.png"
        Image.fromarray(canvas).save(root / name)
        names.append(name)
        sets.append(sorted(set(map(str, chosen))))
        counts.append((digit, count))
    return names, sets, counts


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The manifests and the three trained runs."""
    root = tmp_path_factory.mktemp("tasks_cli")
    rng = np.random.default_rng(0)
    (root / "ml" / "img").mkdir(parents=True)
    (root / "cnt" / "img").mkdir(parents=True)
    names, sets, _ = _canvases(root / "ml", rng, copies_of_one=False)
    with open(root / "ml" / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "labels"])
        w.writerows([n, ";".join(s)] for n, s in zip(names, sets, strict=True))
    names, _, counts = _canvases(root / "cnt", rng, copies_of_one=True)
    with open(root / "cnt" / "counts.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "digit", "count"])
        w.writerows([n, d, c] for n, (d, c) in zip(names, counts, strict=True))
    # trained on the same canvases and columns as .npz label tables: a manifest's tf.data
    # pipeline costs 7 s more per run, and what is tested here is evaluate/predict on them
    ml = _as_table(root / "ml" / "labels.csv", [str(d) for d in range(10)], root / "ml.npz")
    cnt = _as_table(root / "cnt" / "counts.csv", ["digit", "count"], root / "cnt.npz")
    runs = {}
    for key, spec, data in (
        ("ml", "multilabel.yaml", ml), ("reg", "regression.yaml", cnt), ("two", "two_heads.yaml", cnt)
    ):  # fmt: skip
        out = root / "runs" / key
        args = ["train", str(SPECS / spec), "--data", str(data), "--epochs", "1", "--out"]
        assert main([*args, str(out), "-q", "--set", "train.batch_size=32"]) == 0
        runs[key] = out
    return root, runs


def _as_table(manifest: Path, columns: list[str], npz: Path) -> Path:
    """The manifest's images and labels as an .npz label table with the same column names."""
    from PIL import Image

    rows = _rows(manifest)
    x = np.stack([np.asarray(Image.open(manifest.parent / r["path"])) for r in rows])[..., None]
    if "labels" in rows[0]:  # 'path,labels': k-hot columns
        y = [[c in r["labels"].split(";") for c in columns] for r in rows]
    else:
        y = [[float(r[c]) for c in columns] for r in rows]
    np.savez(npz, x=x, y=np.asarray(y, np.float32), columns=np.array(columns))
    return npz


def _cli_json(capsys, args) -> object:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _outputs(run: Path, files: list[Path]) -> tuple[dict[str, np.ndarray], dict]:
    """The raw outputs of the run's Keras model on image files (decoded as training does)."""
    import keras

    from cnnspec.data import load_images

    meta = json.loads((run / "meta.json").read_text())
    model = keras.saving.load_model(run / "model.keras", compile=False)
    images, _ = load_images(files, meta["input_shape"])
    got = model.predict(images, verbose=0)
    got = got if isinstance(got, dict) else {meta["outputs"][0]["name"]: got}
    return {k: np.asarray(v) for k, v in got.items()}, meta


def _rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_multilabel_evaluate_on_a_user_manifest_equals_sklearn(made, capsys):
    from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

    root, runs = made
    manifest = root / "ml" / "labels.csv"
    ev = _cli_json(capsys, ["evaluate", str(runs["ml"]), "--data", str(manifest), "--split",
                            "all"])  # fmt: skip
    rows = _rows(manifest)
    assert ev["task"] == "multilabel" and ev["n"] == len(rows) == N
    out, meta = _outputs(runs["ml"], [manifest.parent / r["path"] for r in rows])
    probs = out[meta["outputs"][0]["name"]]
    labels = meta["outputs"][0]["classes"]
    truth = np.array([[c in r["labels"].split(";") for c in labels] for r in rows], int)
    hard = (probs >= 0.5).astype(int)
    assert ev["f1"] == pytest.approx(f1_score(truth, hard, average="macro", zero_division=0))
    assert ev["f1_micro"] == pytest.approx(f1_score(truth, hard, average="micro", zero_division=0))
    aps = [average_precision_score(truth[:, j], probs[:, j]) for j in range(len(labels))]
    assert ev["map"] == pytest.approx(np.mean(aps), abs=1e-6)
    per = ev["outputs"][meta["outputs"][0]["name"]]["per_label"]
    assert [r["label"] for r in per] == labels
    for j, r in enumerate(per):
        assert r["ap"] == pytest.approx(aps[j], abs=1e-6)
        assert r["precision"] == pytest.approx(precision_score(truth[:, j], hard[:, j],
                                                               zero_division=0))  # fmt: skip
        assert r["recall"] == pytest.approx(recall_score(truth[:, j], hard[:, j], zero_division=0))
        assert r["support"] == int(truth[:, j].sum())
    # the terminal table shows the same figures, on the same images and labels as an .npz
    assert (
        main(["evaluate", str(runs["ml"]), "--data", str(root / "ml.npz"), "--split", "all"]) == 0
    )
    text = capsys.readouterr().out
    assert f"f1 {ev['f1']:.4f}" in text and f"map {ev['map']:.4f}" in text
    assert f"AP {aps[3]:.3f}" in text


@pytest.mark.slow
def test_multilabel_predict_writes_the_labels_above_the_threshold(made, capsys, tmp_path):
    root, runs = made
    files = sorted((root / "ml" / "img").glob("*.png"))[:12]
    preds = _cli_json(capsys, ["predict", str(runs["ml"]), *map(str, files), "--out",
                               str(tmp_path)])  # fmt: skip
    out, meta = _outputs(runs["ml"], files)
    probs = out[meta["outputs"][0]["name"]]
    labels = meta["outputs"][0]["classes"]
    name = meta["outputs"][0]["name"]
    written = _rows(tmp_path / "predictions.csv")
    assert json.loads((tmp_path / "predictions.json").read_text()) == preds
    for row, p, line in zip(probs, preds, written, strict=True):
        above = {c for c, v in zip(labels, row, strict=True) if v >= 0.5}
        rec = p["outputs"][name]
        assert set(rec["labels"]) == above == set(filter(None, line["labels"].split(";")))
        got = np.array([rec["probabilities"][c] for c in labels])
        np.testing.assert_allclose(got, row, atol=1e-5)
        np.testing.assert_allclose([float(line[f"p_{c}"]) for c in labels], row, atol=1e-5)


@pytest.mark.slow
def test_regression_evaluate_and_predict_are_in_the_datas_units(made, capsys, tmp_path):
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    root, runs = made
    manifest = root / "cnt" / "counts.csv"
    run = runs["reg"]
    # the same images and labels as an .npz (the manifest's reading is the two-head test's)
    ev = _cli_json(
        capsys, ["evaluate", str(run), "--data", str(root / "cnt.npz"), "--split", "all"]
    )
    rows = _rows(manifest)
    files = [manifest.parent / r["path"] for r in rows]
    out, meta = _outputs(run, files)
    o = meta["outputs"][0]
    values = out[o["name"]][:, 0] * o["std"][0] + o["mean"][0]  # de-standardised
    truth = np.array([float(r["count"]) for r in rows])
    assert ev["mae"] == pytest.approx(mean_absolute_error(truth, values), rel=1e-5)
    assert ev["rmse"] == pytest.approx(np.sqrt(mean_squared_error(truth, values)), rel=1e-5)
    assert ev["r2"] == pytest.approx(r2_score(truth, values), rel=1e-4, abs=1e-5)
    [target] = ev["outputs"][o["name"]]["per_target"]
    assert target["target"] == "count" and target["mae"] == pytest.approx(ev["mae"])
    png = Path(ev["pictures"][0])
    assert png == run / "eval" / "pred_vs_true_all.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    preds = _cli_json(capsys, ["predict", str(run), *map(str, files[:10]), "--out",
                               str(tmp_path)])  # fmt: skip
    got = [p["outputs"][o["name"]]["values"]["count"] for p in preds]
    np.testing.assert_allclose(got, values[:10], rtol=1e-5)
    written = _rows(tmp_path / "predictions.csv")
    np.testing.assert_allclose([float(r["count"]) for r in written], values[:10], rtol=1e-5)


@pytest.mark.slow
def test_two_heads_are_evaluated_and_predicted_per_head(made, capsys):
    from sklearn.metrics import accuracy_score, mean_absolute_error

    root, runs = made
    manifest = root / "cnt" / "counts.csv"
    run = runs["two"]
    ev = _cli_json(capsys, ["evaluate", str(run), "--data", str(manifest), "--split", "all"])
    rows = _rows(manifest)
    files = [manifest.parent / r["path"] for r in rows]
    out, meta = _outputs(run, files)
    main_name = meta["outputs"][0]["name"]
    count = meta["outputs"][1]
    assert set(ev["outputs"]) == {main_name, "count"}
    digits = np.array([int(r["digit"]) for r in rows])
    assert ev["accuracy"] == pytest.approx(accuracy_score(digits, out[main_name].argmax(-1)))
    values = out["count"][:, 0] * count["std"][0] + count["mean"][0]
    truth = np.array([float(r["count"]) for r in rows])
    assert ev["count_mae"] == pytest.approx(mean_absolute_error(truth, values), rel=1e-5)
    assert len(ev["outputs"][main_name]["per_class"]) == 10
    assert sorted(Path(p).name for p in ev["pictures"]) == [
        "confusion_all.png", "pred_vs_true_all_count.png"]  # fmt: skip
    preds = _cli_json(capsys, ["predict", str(run), *map(str, files[:5])])
    for p, probs, v in zip(preds, out[main_name][:5], values[:5], strict=True):
        assert p["outputs"][main_name]["top"][0]["class"] == str(int(probs.argmax()))
        assert p["outputs"]["count"]["values"]["count"] == pytest.approx(v, rel=1e-5)
    written = _rows(run / "predictions" / "predictions.csv")
    assert list(written[0]) == ["file", "class", "probability", "count"]


@pytest.mark.slow
def test_the_shipped_sources_evaluate_through_the_cli(made, capsys):
    """The user-manifest models on digits_multilabel / digits_count (same column names)."""
    from sklearn.metrics import mean_absolute_error

    from cnnspec.data import load_data

    _, runs = made
    ev = _cli_json(capsys, ["evaluate", str(runs["ml"]), "--data", "digits_multilabel"])
    assert ev["n"] > 100 and {"f1", "f1_micro", "map"} <= set(ev)
    two = _cli_json(capsys, ["evaluate", str(runs["two"]), "--data", "digits_count"])
    assert two["n"] > 100 and {"accuracy", "count_mae", "count_r2"} <= set(two)
    reg = _cli_json(capsys, ["evaluate", str(runs["reg"]), "--data", "digits_count"])
    data = load_data("digits_count", [32, 32, 1], table=True)
    x, y = zip(*data.test.batch(1000).as_numpy_iterator(), strict=True)
    out, meta = _outputs_of_arrays(runs["reg"], np.concatenate(x))
    o = meta["outputs"][0]
    values = out * o["std"][0] + o["mean"][0]
    truth = np.concatenate(y)[:, data.columns.index("count")]
    assert reg["n"] == len(truth)
    assert reg["mae"] == pytest.approx(mean_absolute_error(truth, values), rel=1e-5)
    # the regression head of the two-head model: the same figure as its own metrics.json key
    assert two["count_mae"] > 0


def _outputs_of_arrays(run: Path, x: np.ndarray):
    import keras

    meta = json.loads((run / "meta.json").read_text())
    model = keras.saving.load_model(run / "model.keras", compile=False)
    return np.asarray(model.predict(x.astype(np.float32), verbose=0))[:, 0], meta


@pytest.mark.slow
def test_data_of_another_task_is_one_located_line(made, capsys, tmp_path):
    root, runs = made
    ml_csv, cnt_csv = root / "ml" / "labels.csv", root / "cnt" / "counts.csv"
    digit_only = tmp_path / "digit_only.csv"  # a user manifest without the count column
    lines = [f"{root / 'cnt' / r['path']},{r['digit']}\n" for r in _rows(cnt_csv)[:20]]
    digit_only.write_text("path,digit\n" + "".join(lines))
    cases = [
        (runs["reg"], str(digit_only), f"{digit_only}:1: no label column 'count'"),
        (runs["ml"], str(cnt_csv), f"{cnt_csv}:1: the data has labels the model's multilabel"),
        (runs["two"], str(ml_csv), f"{ml_csv}:1: no label column 'digit'"),
        (runs["ml"], "digits", "data 'digits': the data has one class index per example"),
    ]
    for run, data, start in cases:
        capsys.readouterr()
        assert main(["evaluate", str(run), "--data", data]) == 1, data
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith(start), err


# --- fast: the outputs rebuilt from meta.json and the label columns each one reads (no TF) ---


TWO_HEADS_META = {
    "task": "classification",
    "class_names": ["digit", "count"],  # a label-table run: the data's columns
    "outputs": [
        {"name": "dense_1", "task": "classification", "classes": [str(i) for i in range(10)]},
        {"name": "count", "task": "regression", "classes": ["count"], "mean": [2.5],
         "std": [1.1]},
    ],
}  # fmt: skip


def test_saved_outputs_name_the_columns_they_read():
    from cnnspec.tasks.saved import picture_stem, plans_of, reads_table

    plans = plans_of(TWO_HEADS_META)
    assert [(p.name, p.task.name, p.column_names) for p in plans] == [
        ("dense_1", "classification", ["digit"]),  # the one column no other output claims
        ("count", "regression", ["count"]),
    ]
    assert plans[1].stats[0].tolist() == [2.5] and reads_table(plans)
    assert picture_stem(TWO_HEADS_META) == "confusion"
    plain = plans_of({"class_names": ["a", "b"], "outputs": [
        {"name": "d", "task": "classification", "classes": ["a", "b"]}]})  # fmt: skip
    assert plain[0].column_names is None and not reads_table(plain)
    assert picture_stem({"task": "regression", "class_names": ["y"], "outputs": [
        {"name": "d", "task": "regression", "classes": ["y"], "mean": [0], "std": [1]}]}) == (
        "pred_vs_true")  # fmt: skip


def test_label_columns_are_taken_by_name_and_wrong_ones_located():
    from types import SimpleNamespace

    from cnnspec.errors import RunError
    from cnnspec.tasks.saved import plans_of, truths

    plans = plans_of(TWO_HEADS_META)
    data = SimpleNamespace(columns=["count", "extra", "digit"], source="u.csv")
    rows = np.array([[3, 9, 7], [1, 9, 2]], np.float32)
    digit, count = truths(plans, data, rows, "u.csv:1")
    assert digit.tolist() == [7, 2] and count.tolist() == [[3], [1]]
    with pytest.raises(RunError, match=r"^u.csv:1: no label column 'count'"):
        truths(plans, SimpleNamespace(columns=["digit"]), rows[:, :1], "u.csv:1")
    with pytest.raises(RunError, match="holds class 12, but the model's output 'dense_1' has 10"):
        truths(plans, data, np.array([[1, 0, 12]], np.float32), "u.csv:1")
    ml = plans_of({"task": "multilabel", "class_names": list("abc"), "outputs": [
        {"name": "d", "task": "multilabel", "classes": list("abc"), "threshold": 0.5}]})  # fmt: skip
    # a 'path,labels' manifest has a column per label it uses: the others are absent
    [y] = truths(ml, SimpleNamespace(columns=["c", "a"]), np.array([[1, 0]], np.float32), "m")
    assert y.tolist() == [[0, 0, 1]]
    with pytest.raises(RunError, match="does not know: z"):
        truths(ml, SimpleNamespace(columns=["a", "z"]), np.zeros((1, 2), np.float32), "m")
    with pytest.raises(RunError, match="one class index per example"):
        truths(ml, SimpleNamespace(columns=[]), np.zeros((1, 0), np.float32), "m")
