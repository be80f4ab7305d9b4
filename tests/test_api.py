"""The Python API (issue 20), through its public names only: ``cnnspec.load/build/train/
evaluate/predict/export``, ``Spec``, ``Run``, ``SpecError``/``RunError``."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnspec

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "specs" / "lenet5.yaml")

#: The public API: a name that disappears or a signature that changes fails here (annotations
#: left out: the names, kinds and defaults of the parameters are what callers depend on).
SIGNATURES = {
    "build": "(spec, *, heads=False)",
    "evaluate": "(model, data=None, *, split=None, top_k=3, confusion_png=None)",
    "export": "(model, format='keras', output=None, *, quantize=None, overwrite=False, "
    "tolerance=None)",
    "explain": "(model, inputs, *, method=None, target_class=None, top=1, head=None, layer=None, "
    "sanity=False, deletion=False, out=None)",
    "load": "(source, *, set=None, scale=None)",
    "predict": "(model, inputs, *, top_k=3, out=None, tile=False)",
    "train": "(spec=None, data=None, *, out=None, epochs=None, batch_size=None, set=None, "
    "scale=None, resume=None, init=None, track=None, verbose=None, callbacks=None, echo=None)",
    "RunError": "(self, message, hint='')",
    "Run.model": "property",
    "Spec.input_shape": "property",
    "Spec.layers": "property",
    "Spec.macs": "property",
    "Spec.memory": "(self, batch=32)",
    "Spec.name": "property",
    "Spec.output_shape": "property",
    "Spec.params": "property",
    "Spec.path": "property",
    "Spec.summary": "(self, batch=None)",
    "Spec.title": "property",
    "Spec.to_dict": "(self, batch=None)",
    "Spec.trainable_params": "property",
    "Spec.with_set": "(self, set=None, scale=None)",
    "Spec._repr_html_": "(self)",
}
PUBLIC = {"Run", "RunError", "Spec", "SpecError", "__version__"} | {
    k for k in SIGNATURES if "." not in k
}
RUN_FIELDS = ["path", "metrics", "history"]


def bare(obj) -> str:
    sig = inspect.signature(obj)
    empty = inspect.Parameter.empty
    params = [p.replace(annotation=empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=empty))


def current_signatures() -> dict[str, str]:
    out = {}
    for name in cnnspec.__all__:
        obj = getattr(cnnspec, name)
        if name in ("__version__", "SpecError", "Run"):
            continue
        if not inspect.isclass(obj) or name == "RunError":
            out[name] = bare(obj.__init__ if name == "RunError" else obj)
            continue
        for attr, value in vars(obj).items():
            if attr.startswith("_") and attr != "_repr_html_":
                continue
            out[f"{name}.{attr}"] = "property" if isinstance(value, property) else bare(value)
    out["Run.model"] = "property" if isinstance(vars(cnnspec.Run)["model"], property) else "?"
    return out


def test_the_public_names_and_their_signatures_do_not_change():
    assert set(cnnspec.__all__) == PUBLIC
    assert current_signatures() == SIGNATURES
    import dataclasses

    assert [f.name for f in dataclasses.fields(cnnspec.Run) if f.init] == RUN_FIELDS
    assert isinstance(cnnspec.SpecError([]).problems, list)


def test_importing_every_internal_module_leaves_the_public_functions():
    # cnnspec/train/, cnnspec/build/, cnnspec/export/, evaluate.py and predict.py share the
    # public names: importing them must not replace the functions, and must still work.
    import cnnspec.build.model as builder
    import cnnspec.evaluate  # noqa: F401
    import cnnspec.explain  # noqa: F401
    import cnnspec.export as exports
    import cnnspec.predict  # noqa: F401
    import cnnspec.train.trainer  # noqa: F401

    for name in ("build", "train", "evaluate", "predict", "export", "explain"):
        assert callable(getattr(cnnspec, name)), name
        assert bare(getattr(cnnspec, name)) == SIGNATURES[name]
    assert builder.__name__ == "cnnspec.build.model"
    assert "keras" in exports.REGISTRY  # attribute access reaches the module


def test_import_and_load_never_import_tensorflow():
    code = (
        "import sys, cnnspec\n"
        "s = cnnspec.load('specs/resnet152.yaml')\n"
        "assert s.params > 60_000_000 and s.macs > 10**10, (s.params, s.macs)\n"
        "assert s.memory(batch=32).total > 0\n"
        "assert 'conv' in s.summary() and '<table>' in s._repr_html_() and s.layers\n"
        "getattr(cnnspec.build, '_pytestfixturefunction', None)  # probes import nothing\n"
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=300)


def test_load_a_file_or_text_with_overrides_and_a_scale():
    spec = cnnspec.load(LENET)
    assert (spec.name, spec.params, spec.macs) == ("lenet5", 61_706, 416_520)
    assert spec.input_shape == (32, 32, 1) and spec.output_shape == (10,)
    assert spec.path == Path(LENET)
    text = Path(LENET).read_text()
    same = cnnspec.load(text, set={"train.epochs": 3, "train.optimizer.lr": 0.5})
    assert same.path is None and same.params == spec.params
    assert same.model_spec.train.epochs == 3
    assert same.with_set(["train.epochs=7"]).model_spec.train.epochs == 7
    assert "total params: 61,706" in spec.summary()
    m = spec.memory(batch=32)
    assert m.batch_size == 32 and m.total == m.weights + m.gradients + m.optimizer + m.activations
    assert spec.to_dict(batch=32)["memory"]["total"] == m.total
    html = spec._repr_html_()
    assert html.count("<tr") == len(spec.layers) + 1 and "conv_1" in html
    scaled = cnnspec.load(ROOT / "specs" / "efficientnet.yaml", scale="b1")
    assert scaled.params != cnnspec.load(ROOT / "specs" / "efficientnet.yaml").params


def test_bad_input_raises_the_located_errors_the_cli_prints(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ninput: [8, 8, 1]\nlayers:\n  - conv: 9x9, 4\n  - cnv: 3x3, 4\n")
    with pytest.raises(cnnspec.SpecError) as info:
        cnnspec.load(bad)
    lines = [str(p) for p in info.value.problems]
    assert len(lines) == 2 and all(line.startswith(f"{bad}:") for line in lines)
    assert "did you mean 'conv'" in lines[1] and "K=9x9 is larger" in lines[0]
    with pytest.raises(cnnspec.SpecError) as info:
        cnnspec.load(LENET, set={"train.epohcs": 2})
    assert "--set" in str(info.value)
    with pytest.raises(cnnspec.RunError, match="give a spec file"):
        cnnspec.train()
    with pytest.raises(cnnspec.RunError, match="not a data source"):
        cnnspec.train(LENET, data={"x": 1}, out=tmp_path / "r", verbose=0)
    with pytest.raises(cnnspec.RunError, match="a Run, a run folder"):
        cnnspec.evaluate(object())
    run = tmp_path / "arrays_run"  # a run trained on arrays: resuming needs them again
    run.mkdir()
    (run / "spec.yaml").write_text(Path(LENET).read_text())
    (run / "meta.json").write_text('{"data": "arrays (x, y) of 10x8x8 in memory"}')
    with pytest.raises(cnnspec.RunError, match="not saved with the run"):
        cnnspec.train(resume=run)


def digits_arrays():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images * (255 / 16)).astype(np.uint8), d.target


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The same data, seed and recipe: once through ``cnnspec train`` on an .npz, once through
    ``cnnspec.train`` on the arrays in memory."""
    tmp = tmp_path_factory.mktemp("api")
    x, y = digits_arrays()
    np.savez(tmp / "digits.npz", x=x, y=y)
    args = ["--epochs", "2", "--set", "train.seed=7", "-q"]
    cli = [sys.executable, "cli.py", "train", LENET, "--data", str(tmp / "digits.npz")]
    done = subprocess.run(  # a fresh process, as a user runs it
        [*cli, "--out", str(tmp / "cli"), *args], cwd=ROOT, capture_output=True, text=True,
        timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = cnnspec.train(
        LENET, data=(x, y), out=tmp / "api", epochs=2, set={"train.seed": 7}, verbose=0
    )
    return tmp, run, (x, y)


@pytest.mark.slow
def test_train_on_arrays_equals_the_cli_on_an_npz_bit_for_bit(trained):
    import keras

    tmp, run, _ = trained
    assert run.path == tmp / "api" and (run.path / "model.keras").is_file()
    ours = keras.saving.load_model(run.path / "model.keras").get_weights()
    cli = keras.saving.load_model(tmp / "cli" / "model.keras").get_weights()
    assert len(ours) == len(cli) > 0
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(ours, cli, strict=True))
    assert run.history["epoch"] == [1, 2] and len(run.history["loss"]) == 2
    assert run.metrics["status"] == "completed" and run.metrics["test"]["accuracy"] > 0.5
    assert run.model.count_params() == 61_706


@pytest.mark.slow
def test_evaluate_predict_and_export_a_run(trained):
    tmp, run, (x, y) = trained
    ev = cnnspec.evaluate(run, (x, y))  # data given in Python: every image by default
    assert ev.split == "all" and ev.n == len(y) and ev.accuracy > 0.5
    assert ev.data.startswith("arrays (x, y)")
    with pytest.raises(cnnspec.RunError, match="not saved with the run"):
        cnnspec.evaluate(run)  # trained on arrays: nothing on disk to default to
    named = cnnspec.evaluate(run.path, str(tmp / "digits.npz"))
    assert named.split == "test" and named.n < len(y)
    preds = cnnspec.predict(run, x[:5], top_k=2)
    assert [p.file for p in preds] == [f"inputs[{i}]" for i in range(5)]
    assert all(len(p.top) == 2 and p.top[0][1] >= p.top[1][1] for p in preds)
    hits = sum(p.top[0][0] == str(t) for p, t in zip(preds, y[:5], strict=True))
    assert hits >= 3
    result = cnnspec.export(run, "keras", tmp / "lenet.keras")
    assert result.path == tmp / "lenet.keras" and result.max_abs_diff <= result.tolerance


@pytest.mark.slow
def test_explain_arrays_and_files_give_the_same_maps(trained, tmp_path):
    """cnnspec.explain of an array of images equals the CLI's maps of the same images as
    files; without ``out`` nothing is written and the maps come back as arrays."""
    from PIL import Image

    from cnnspec.cli import main

    _, run, (x, y) = trained
    images = x[:2]  # uint8 (N, 8, 8): resized to 32x32 as in training
    report = cnnspec.explain(run, images, method="occlusion,integrated_gradients", top=2)
    assert [i.file for i in report.inputs] == ["inputs[0]", "inputs[1]"]
    assert report.sheet is None and report.task == "classification"
    maps = report.inputs[0].maps
    assert [(m["method"], m["rank"]) for m in maps] == [
        ("occlusion", 0), ("integrated_gradients", 0), ("occlusion", 1), ("integrated_gradients", 1)
    ]  # fmt: skip
    assert all(m["array"].shape == (32, 32) for m in maps) and "map" not in maps[0]
    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"d{i}.png")
        Image.fromarray(image).save(files[-1])
    out = tmp_path / "maps"
    args = ["explain", str(run.path), *map(str, files), "-m", "occlusion,integrated_gradients"]
    assert main([*args, "--top", "2", "-o", str(out), "--json"]) == 0
    for i, item in enumerate(report.inputs):
        for m in item.maps:
            on_disk = np.load(out / f"d{i}_{m['method']}_c{m['index']}.npy")
            np.testing.assert_allclose(m["array"], on_disk, atol=1e-5)
    with pytest.raises(cnnspec.RunError, match="--head nope: the model has no such output"):
        cnnspec.explain(run, images, head="nope")
    with pytest.raises(cnnspec.RunError, match="an array of images"):
        cnnspec.explain(run, np.zeros(5))


def test_datasets_in_memory_read_as_the_same_arrays():
    """A tf.data.Dataset (batched or not) and a Keras PyDataset read as the arrays they hold;
    only the data given differs, so training on them is training on the arrays."""
    import keras
    import tensorflow as tf

    from cnnspec.data import load_data  # internal: the source the API hands to training

    x, y = digits_arrays()
    x, y = x[:200], y[:200]

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return x[i * 50 : (i + 1) * 50], y[i * 50 : (i + 1) * 50]

    def arrays(source):
        d = load_data(source, (8, 8, 1), cache="memory", validation_split=0.2, test_split=0)
        return [np.concatenate([b.numpy() for b, _ in d.train.batch(500)]), d.sizes]

    want = arrays((x, y))
    for source in (
        tf.data.Dataset.from_tensor_slices((x, y)),
        tf.data.Dataset.from_tensor_slices((x, y)).batch(32),
        Batches(),
    ):
        got = arrays(source)
        assert got[1] == want[1] and np.array_equal(got[0], want[0]), type(source).__name__
    with pytest.raises(cnnspec.RunError, match="infinite"):
        load_data(tf.data.Dataset.from_tensor_slices((x, y)).repeat(), (8, 8, 1))
