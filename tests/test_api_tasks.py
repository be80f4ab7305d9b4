"""``cnnspec.predict`` / ``cnnspec.evaluate`` of multi-label, regression, two-head and
segmentation runs, their exports through the CLI, and the label columns meta.json records.

Tiny 1-epoch runs on 16x16 digits (tests/_task_runs.py, shared with other modules): the
records of an array are checked against the run's Keras outputs (labels at or above the
threshold, regression values de-standardised into the data's units, masks) and against what
``cnnspec predict`` writes in predictions.json for the same images as PNG files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _task_runs import shared_run

import cnnspec
from cnnspec.cli import main


def _images(run: Path, n: int = 6) -> np.ndarray:
    data = next(run.parent.glob("digits_*.npz"))
    return np.load(data)["x"][:n]


def _keras_outputs(run: Path, x: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    import keras

    meta = json.loads((run / "meta.json").read_text())
    model = keras.saving.load_model(run / "model.keras", compile=False)
    got = model.predict(x.astype(np.float32), verbose=0)
    names = [o["name"] for o in meta["outputs"]]
    if isinstance(got, dict):
        return {k: np.asarray(v) for k, v in got.items()}, meta
    got = got if isinstance(got, list) else [got]
    return {n: np.asarray(v) for n, v in zip(names, got, strict=True)}, meta


def _pngs(x: np.ndarray, folder: Path) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, image in enumerate(x):
        files.append(folder / f"{i:02d}.png")
        Image.fromarray(image[..., 0]).save(files[-1])
    return files


def _cli_json(capsys, args: list[str]) -> object:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _close(a: object, b: object, tol: float = 1e-5) -> bool:
    """Equal JSON records, numbers within ``tol``."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(p, q, tol) for p, q in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) <= tol
    return a == b


@pytest.mark.slow
def test_predict_of_an_array_gives_every_output_in_the_datas_units(tmp_path_factory, tmp_path,
                                                                   capsys):  # fmt: skip
    """Was: every model read as one classifier (top-k of the sigmoid outputs; a label-table
    run failed on its class_names, a several-output model on a concatenation)."""
    run = shared_run(tmp_path_factory, "three_tasks")
    x = _images(run)
    preds = cnnspec.predict(run, x, top_k=2)
    out, meta = _keras_outputs(run, x)
    ml, digit, ink = meta["outputs"]
    assert [p.file for p in preds] == [f"inputs[{i}]" for i in range(len(x))]
    for i, p in enumerate(preds):
        assert set(p.outputs) == {ml["name"], "digit", "ink"}
        probs = out[ml["name"]][i]
        rec = p.outputs[ml["name"]]
        assert set(rec["labels"]) == {c for c, v in zip(ml["classes"], probs, strict=True)
                                      if v >= ml["threshold"]}  # fmt: skip
        np.testing.assert_allclose([rec["probabilities"][c] for c in ml["classes"]], probs,
                                   atol=1e-5)  # fmt: skip
        top = p.outputs["digit"]["top"]
        assert len(top) == 2 and top[0]["class"] == digit["classes"][int(out["digit"][i].argmax())]
        value = out["ink"][i, 0] * ink["std"][0] + ink["mean"][0]  # the data's units
        assert p.outputs["ink"]["values"]["ink"] == pytest.approx(value, rel=1e-5)
        assert 5.0 < p.outputs["ink"]["values"]["ink"] < 12.0  # mean pixel / 10, not z-scores
    # the same records as `cnnspec predict` writes for the same images as files
    files = _pngs(x, tmp_path / "img")
    written = _cli_json(capsys, ["predict", str(run), *map(str, files), "--top-k", "2",
                                 "--out", str(tmp_path / "p")])  # fmt: skip
    for p, w in zip(preds, written, strict=True):
        assert _close(p.to_dict()["outputs"], w["outputs"]), (p.to_dict(), w)


@pytest.mark.slow
def test_evaluate_of_a_label_table_run_returns_its_task_evaluation(tmp_path_factory, capsys):
    from cnnspec.tasks.outputs_io import TaskEvaluation

    run = shared_run(tmp_path_factory, "three_tasks")
    data = next(run.parent.glob("digits_*.npz"))
    ev = cnnspec.evaluate(run, str(data), split="all")
    assert isinstance(ev, TaskEvaluation) and ev.task == "multilabel" and ev.n == 96
    assert {"f1", "f1_micro", "map", "digit_accuracy", "ink_mae", "ink_r2"} <= set(ev.scores)
    assert set(ev.outputs) == {"dense_1", "digit", "ink"}
    cli = _cli_json(capsys, ["evaluate", str(run), "--data", str(data), "--split", "all"])
    assert _close({k: cli[k] for k in ev.scores}, ev.scores, 1e-6)


@pytest.mark.slow
def test_predict_of_an_array_with_a_segmentation_run_gives_its_masks(tmp_path_factory):
    from cnnspec.tasks.outputs_io import ArrayMask

    run = shared_run(tmp_path_factory, "segmentation")
    x = _images(run, 4)
    preds = cnnspec.predict(run, x)
    out, meta = _keras_outputs(run, x)
    probs = next(iter(out.values()))
    assert all(isinstance(p, ArrayMask) for p in preds)
    for p, row in zip(preds, probs, strict=True):
        assert p.mask.shape == (16, 16)
        np.testing.assert_array_equal(p.mask, row.argmax(-1))
        share = {c: float(np.mean(p.mask == i)) for i, c in enumerate(meta["class_names"])}
        assert p.pixels == pytest.approx({c: s for c, s in share.items() if s > 0})
        assert json.loads(json.dumps(p.to_dict()))["mask"] == p.mask.tolist()


@pytest.mark.slow
def test_meta_json_names_the_columns_each_output_reads(tmp_path_factory, capsys):
    """A two-head run trained on a table with columns no output uses (even, big, round):
    meta.json had no ``columns`` and evaluate refused it ('cannot tell which label column
    the classification output learns')."""
    run = shared_run(tmp_path_factory, "two_heads")
    meta = json.loads((run / "meta.json").read_text())
    assert [(o["name"], o["columns"]) for o in meta["outputs"]] == [
        ("dense_1", ["digit"]), ("ink", ["ink"])]  # fmt: skip
    three = json.loads((shared_run(tmp_path_factory, "three_tasks") / "meta.json").read_text())
    assert [o["columns"] for o in three["outputs"]] == [["even", "big", "round"], ["digit"],
                                                         ["ink"]]  # fmt: skip
    data = next(run.parent.glob("digits_*.npz"))
    ev = _cli_json(capsys, ["evaluate", str(run), "--data", str(data), "--split", "all"])
    assert {"accuracy", "ink_mae"} <= set(ev)


def test_saved_columns_are_read_and_old_runs_still_infer_them():
    from cnnspec.errors import RunError
    from cnnspec.tasks.saved import plans_of

    outputs = [
        {"name": "d", "task": "classification", "classes": [str(i) for i in range(10)]},
        {"name": "ink", "task": "regression", "classes": ["ink"], "mean": [7.0], "std": [1.0]},
    ]
    meta = {"class_names": ["digit", "ink", "even"], "outputs": outputs}
    with pytest.raises(RunError, match="cannot tell which label column .* 'd'"):
        plans_of(meta)  # written before columns: 'digit' and 'even' are both unclaimed
    named = [{**outputs[0], "columns": ["digit"]}, {**outputs[1], "columns": ["ink"]}]
    plans = plans_of({**meta, "outputs": named})
    assert [p.column_names for p in plans] == [["digit"], ["ink"]]
    old = plans_of({"class_names": ["digit", "ink"], "outputs": outputs})  # one column left
    assert [p.column_names for p in old] == [["digit"], ["ink"]]


@pytest.fixture(scope="module")
def two_heads_onnx(tmp_path_factory):
    run = shared_run(tmp_path_factory, "two_heads")
    dest = tmp_path_factory.mktemp("two_heads_onnx") / "two.onnx"
    assert main(["export", str(run), "--format", "onnx", "-o", str(dest)]) == 0
    return run, dest


@pytest.mark.slow
def test_an_onnx_export_predicts_and_evaluates_every_head(two_heads_onnx, tmp_path, capsys):
    run, onnx = two_heads_onnx
    files = _pngs(_images(run), tmp_path / "img")
    from_run = _cli_json(capsys, ["predict", str(run), *map(str, files), "--out",
                                  str(tmp_path / "run")])  # fmt: skip
    from_onnx = _cli_json(capsys, ["predict", str(onnx), *map(str, files), "--out",
                                   str(tmp_path / "onnx")])  # fmt: skip
    assert [set(p["outputs"]) for p in from_onnx] == [{"dense_1", "ink"}] * len(files)
    assert _close(from_run, from_onnx, 1e-4)
    header = (tmp_path / "onnx" / "predictions.csv").read_text().splitlines()[0]
    assert header == "file,class,probability,ink"
    data = next(run.parent.glob("digits_*.npz"))
    ev_run = _cli_json(capsys, ["evaluate", str(run), "--data", str(data), "--split", "all"])
    ev = _cli_json(capsys, ["evaluate", str(onnx), "--data", str(data), "--split", "all"])
    assert _close(
        {k: ev[k] for k in ("accuracy", "ink_mae", "ink_rmse", "ink_r2")},
        {k: ev_run[k] for k in ("accuracy", "ink_mae", "ink_rmse", "ink_r2")},
        1e-4,
    )
    # beside the export, named after it as a classifier's confusion matrix is
    assert [Path(p).name for p in ev["pictures"]] == ["two.confusion_all.png",
                                                      "two.pred_vs_true_all_ink.png"]  # fmt: skip
    assert all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in ev["pictures"])


@pytest.mark.slow
def test_an_export_answering_fewer_outputs_than_its_metadata_is_one_line(two_heads_onnx, tmp_path,
                                                                         capsys):  # fmt: skip
    """An export made before exports kept every output answers its main output only."""
    run, onnx = two_heads_onnx
    copy = tmp_path / onnx.name
    shutil.copy(onnx, copy)
    meta = json.loads(onnx.with_name(onnx.name + ".meta.json").read_text())
    meta["outputs"].append({"name": "age", "task": "regression", "classes": ["age"],
                            "mean": [0.0], "std": [1.0]})  # fmt: skip
    copy.with_name(copy.name + ".meta.json").write_text(json.dumps(meta))
    [file] = _pngs(_images(run, 1), tmp_path / "img")
    capsys.readouterr()
    assert main(["predict", str(copy), str(file), "--out", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "its metadata names the outputs 'dense_1', 'ink', 'age'" in err, err
    assert "export the run again" in err


def _npz_arrays(run: Path) -> tuple[Path, np.ndarray, np.ndarray, list[str] | None]:
    data = next(run.parent.glob("digits_*.npz"))
    with np.load(data) as f:
        columns = [str(c) for c in f["columns"]] if "columns" in f else None
        return data, f["x"], f["y"], columns


@pytest.mark.slow
@pytest.mark.parametrize("task", ["three_tasks", "segmentation"])
def test_table_and_mask_tasks_train_and_evaluate_on_arrays_as_on_the_npz(
    tmp_path_factory, tmp_path, task
):
    """Was: ``data=(x, y)`` read y as class indices only ("y must hold integer class indices"),
    so no multilabel, regression, several-head or segmentation run could train or be evaluated
    on arrays in memory. A label table's columns are named by a mapping ``{column: values}``;
    masks are y of (N, H, W). Training equals the CLI on an .npz of the same arrays, bit for
    bit, and evaluate gives the same scores."""
    import keras

    run = shared_run(tmp_path_factory, task)
    npz, x, y, columns = _npz_arrays(run)
    labels = y if columns is None else {c: y[:, i] for i, c in enumerate(columns)}
    spec = next(run.parent.glob("*.yaml"))
    mem = cnnspec.train(spec, (x, labels), epochs=1, out=tmp_path / "mem", verbose=0)
    ours = keras.saving.load_model(mem.path / "model.keras").get_weights()
    cli = keras.saving.load_model(run / "model.keras").get_weights()
    assert len(ours) == len(cli) > 0
    assert all(np.array_equal(a, b) for a, b in zip(ours, cli, strict=True))
    assert json.loads((mem.path / "meta.json").read_text())["data"].startswith("arrays (x, y)")

    on_arrays = cnnspec.evaluate(run, (x, labels)).to_dict()
    on_file = cnnspec.evaluate(run, str(npz), split="all").to_dict()
    for key in ("data", "source", "model"):
        on_arrays.pop(key, None), on_file.pop(key, None)
    assert _close(on_arrays, on_file, 1e-6), (on_arrays, on_file)


@pytest.mark.slow
def test_label_columns_given_in_python_are_named_or_refused_in_one_line(tmp_path_factory):
    run = shared_run(tmp_path_factory, "three_tasks")
    npz, x, y, columns = _npz_arrays(run)
    # a DataFrame names its columns as a mapping does
    pd = pytest.importorskip("pandas")
    frame = cnnspec.evaluate(run, (x, pd.DataFrame(y, columns=columns)))
    mapped = cnnspec.evaluate(run, (x, {c: y[:, i] for i, c in enumerate(columns)}))
    assert frame.scores == mapped.scores
    # unnamed, a table's columns are 0..K-1, not the names the model learnt
    with pytest.raises(
        cnnspec.RunError, match=r"does not know: 0, 1, 2, 3, 4.*are even, big, round"
    ):
        cnnspec.evaluate(run, (x, y))
    with pytest.raises(cnnspec.RunError, match=r"y's columns must each hold one value per image"):
        cnnspec.evaluate(run, (x, {"even": y[:, 2], "big": y[:10, 3]}))
    digits = "name: d\ninput: [16, 16, 1]\nlayers: [flatten, 'dense: 10, softmax']\n"
    with pytest.raises(cnnspec.RunError, match=r"names the label columns digit, ink, but this"):
        cnnspec.train(digits, (x, {"digit": y[:, 0], "ink": y[:, 1]}), epochs=1)


@pytest.mark.slow
def test_datasets_with_named_label_columns_read_as_the_label_table(tmp_path_factory):
    """Was: a tf.data.Dataset or PyDataset whose labels name their columns ({column: value})
    was read with np.asarray of the dict, an object array, and refused as not class indices.
    Each element's mapping is a table row; batched, unbatched and PyDataset batches evaluate
    as the arrays they hold."""
    import keras
    import tensorflow as tf

    run = shared_run(tmp_path_factory, "three_tasks")
    npz, x, y, columns = _npz_arrays(run)
    table = {c: y[:, i] for i, c in enumerate(columns)}
    want = cnnspec.evaluate(run, (x, table)).scores

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return (len(x) + 49) // 50

        def __getitem__(self, i):
            part = slice(i * 50, (i + 1) * 50)
            return x[part], {c: v[part] for c, v in table.items()}

    for source in (
        tf.data.Dataset.from_tensor_slices((x, table)),
        tf.data.Dataset.from_tensor_slices((x, table)).batch(32),
        Batches(),
    ):
        assert cnnspec.evaluate(run, source).scores == want, type(source).__name__

    class Drifting(Batches):
        def __getitem__(self, i):
            images, row = super().__getitem__(i)
            return images, (row if i == 0 else {c: row[c] for c in reversed(row)})

    with pytest.raises(cnnspec.RunError, match=r"an element's label columns are .*, those before"):
        cnnspec.evaluate(run, Drifting())


@pytest.mark.slow
def test_explain_reads_each_output_by_its_task(tmp_path_factory, tmp_path, capsys):
    """Was: explain read every model as one softmax classifier (a label-table run's class
    names are its data columns, so a regression map was labelled 'digit'; a head was out of
    reach). Each output is explained by its task's score, the same numbers predict gives."""
    run = shared_run(tmp_path_factory, "three_tasks")
    x = _images(run, 1)
    [png] = _pngs(x, tmp_path / "img")
    outs = cnnspec.predict(run, x)[0].outputs
    base = ["explain", str(run), str(png), "-m", "occlusion,integrated_gradients"]

    ml = _cli_json(capsys, [*base, "-o", str(tmp_path / "ml")])
    assert (ml["output"], ml["task"], ml["score"]) == ("dense_1", "multilabel", "probability")
    probs = outs["dense_1"]["probabilities"]
    best = max(probs, key=probs.get)
    assert ml["inputs"][0]["predicted"]["class"] == best
    assert ml["inputs"][0]["predicted"]["probability"] == pytest.approx(probs[best], abs=1e-5)

    ink = _cli_json(capsys, [*base, "--head", "ink", "-o", str(tmp_path / "ink")])
    assert (ink["output"], ink["task"], ink["score"]) == ("ink", "regression", "value")
    entries = ink["inputs"][0]["explanations"]
    assert {e["class"] for e in entries} == {"ink"}
    value = outs["ink"]["values"]["ink"]  # in the data's units, as predict gives it
    assert all(e["value"] == pytest.approx(value, rel=1e-4) for e in entries)
    assert all(np.load(e["map"]).shape == (16, 16) for e in entries)

    digit = _cli_json(capsys, [*base, "--head", "digit", "-o", str(tmp_path / "digit")])
    assert (digit["task"], digit["score"]) == ("classification", "probability")
    assert digit["inputs"][0]["predicted"]["class"] == outs["digit"]["top"][0]["class"]

    capsys.readouterr()
    assert main([*base, "--head", "nope", "-o", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--head nope" in err[0] and "dense_1, digit, ink" in err[0]


@pytest.mark.slow
def test_explain_of_a_several_output_export_is_one_line(two_heads_onnx, tmp_path, capsys):
    run, onnx = two_heads_onnx
    [png] = _pngs(_images(run, 1), tmp_path / "img")
    capsys.readouterr()
    assert main(["explain", str(onnx), str(png), "-o", str(tmp_path / "ex")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has 2 outputs (dense_1, ink); explain reads one" in err[0], err


@pytest.mark.slow
def test_explain_of_a_binary_mask_scores_both_classes(tmp_path):
    """One sigmoid channel (a binary mask) is class 1's probability per pixel; class 0 is its
    complement (was: an internal error, 'index 1 is out of bounds', for either class)."""
    import keras
    from _task_runs import SEGMENTATION, digits_masks, train

    spec = tmp_path / "binary.yaml"
    spec.write_text(SEGMENTATION.replace("conv: 1x1, 2, p=same, softmax",
                                         "conv: 1x1, 1, p=same, sigmoid"))  # fmt: skip
    run = train(spec, tmp_path / "run", digits_masks(tmp_path / "m.npz", 64))
    x = np.load(tmp_path / "m.npz")["x"][:2]
    share = (
        keras.saving.load_model(run / "model.keras")
        .predict(x.astype(np.float32), verbose=0)
        .mean(axis=(1, 2, 3))
    )
    report = cnnspec.explain(run, x, method="occlusion", top=2)
    for item, p1 in zip(report.inputs, share, strict=True):
        got = {m["class"]: m["pixel_share"] for m in item.maps}
        assert got == pytest.approx({"0": 1.0 - p1, "1": p1}, abs=1e-5)
        assert all(m["array"].shape == (16, 16) for m in item.maps)
