"""cnnspec export: every format verified by its own runtime, metadata beside it, atomic writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _model_fixtures import CLASS_NAMES, INPUT_SHAPE, digits_run, digits_split, run_cli

from cnnspec.digest import model_digest
from cnnspec.errors import RunError
from cnnspec.export import REGISTRY, export_model, sample_inputs
from cnnspec.versions import Versions

REPO = Path(__file__).resolve().parents[1]

# Every registered format, plain and in each of its quantisation modes (a new format is tested
# by adding it to the registry).
CASES = [
    (fmt.name, q, fmt.default_name("digits" + (f"_{q}" if q else "")))
    for fmt in REGISTRY.values()
    for q in (None, *fmt.quantize_modes)
]


def _own_runtime_predict(fmt: str, path: Path, x: np.ndarray) -> np.ndarray:
    """Run an export with its runtime's own API, not through cnnspec's wrappers."""
    if fmt == "keras":
        import keras

        return np.asarray(keras.saving.load_model(path, compile=False, safe_mode=True)(x))
    if fmt == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))  # keep a reference: serve() uses its variables
        return loaded.serve(tf.constant(x)).numpy()
    if fmt == "tflite":
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # TF 2.21 still ships the (deprecated) interpreter
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter  # noqa: N806

        it = Interpreter(model_path=str(path))
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        it.resize_tensor_input(inp["index"], list(x.shape))
        it.allocate_tensors()
        it.set_tensor(inp["index"], x)
        it.invoke()
        return it.get_tensor(out["index"]).copy()
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize(("fmt", "quantize", "name"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_export_is_verified_and_runs_in_its_own_runtime(tmp_path, fmt, quantize, name):
    import keras

    run = digits_run()
    dest = tmp_path / name
    result = export_model(run, fmt, dest, quantize=quantize)

    assert result.path == dest and dest.exists()
    tolerance = {None: 1e-4, "float16": 1e-2, "dynamic": 5e-2}[quantize]
    assert result.tolerance == tolerance
    assert 0.0 <= result.max_abs_diff <= tolerance
    meta = json.loads((tmp_path / (name + ".meta.json")).read_text())
    assert meta["format"] == fmt and meta["quantize"] == quantize
    assert meta["input_shape"] == INPUT_SHAPE and meta["class_names"] == CLASS_NAMES
    assert meta["name"] == "digits" and meta["exported_with"] == Versions.current().to_dict()
    assert meta["model_sha256"] == model_digest(dest)  # what predict checks the model against
    assert meta["verification"]["max_abs_diff"] == result.max_abs_diff
    # nothing but the export and its metadata in the folder (no temp leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, name + ".meta.json"])

    # Independently: the export, in its own runtime, agrees with Keras on real digits and is
    # as accurate as the Keras model.
    x, y = digits_split("test")
    reference = np.asarray(
        keras.saving.load_model(run / "model.keras", compile=False)(x, training=False)
    )
    got = _own_runtime_predict(fmt, dest, x)
    assert got.shape == (len(x), len(CLASS_NAMES))
    # The export checked itself on 16 samples; on all 269 test digits a quantised export can
    # stray a little further: what matters there is
    # that it stays close and classifies as well.
    assert np.abs(got - reference).max() <= (2 * tolerance if quantize else tolerance)
    keras_acc = (reference.argmax(1) == y).mean()
    export_acc = (got.argmax(1) == y).mean()
    assert keras_acc >= 0.9
    assert export_acc >= keras_acc - (0.01 if quantize else 0.0)


def test_quantised_tflite_is_smaller(tmp_path):
    run = digits_run()
    plain = export_model(run, "tflite", tmp_path / "a.tflite")
    dynamic = export_model(run, "tflite", tmp_path / "b.tflite", quantize="dynamic")
    half = export_model(run, "tflite", tmp_path / "c.tflite", quantize="float16")
    assert dynamic.size_bytes < half.size_bytes < plain.size_bytes
    assert plain.max_abs_diff < 1e-5 < dynamic.max_abs_diff  # quantisation really happened


def test_default_destination_is_in_the_run(tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(digits_run(), run)
    result = export_model(run, "tflite")
    assert result.path == run / "export" / "digits.tflite"
    assert (run / "export" / "digits.tflite.meta.json").is_file()
    # another format in the same folder gets its own metadata
    onnx = export_model(run, "onnx")
    assert onnx.meta_path == run / "export" / "digits.onnx.meta.json"
    assert json.loads(result.meta_path.read_text())["format"] == "tflite"


def test_existing_destination_needs_overwrite(tmp_path):
    run = digits_run()
    dest = tmp_path / "sm"
    export_model(run, "savedmodel", dest)
    marker = dest / "assets" / "old-marker"
    marker.parent.mkdir(exist_ok=True)
    marker.write_text("old")
    with pytest.raises(RunError, match="already exists"):
        export_model(run, "savedmodel", dest)
    assert marker.exists()
    export_model(run, "savedmodel", dest, overwrite=True)
    assert not marker.exists() and (dest / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm", "sm.meta.json"]


def test_failed_verification_leaves_nothing(tmp_path):
    """A real verification failure (quantised model against a zero tolerance) writes nothing."""
    dest = tmp_path / "out" / "q.tflite"
    with pytest.raises(RunError, match="verification failed.*nothing was written"):
        export_model(digits_run(), "tflite", dest, quantize="dynamic", tolerance=0.0)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "pytorch"}, "unknown export format 'pytorch'"),
        ({"fmt": "onnx", "quantize": "dynamic"}, "tflite exports only"),
        ({"fmt": "tflite", "quantize": "int4"}, "unknown quantisation 'int4'"),
        ({"fmt": "onnx", "out": "x.tflite"}, "must end in '.onnx'"),
    ],
)
def test_bad_requests_are_one_line_errors(tmp_path, kwargs, message):
    kwargs = dict(kwargs)
    if "out" in kwargs:
        kwargs["out"] = tmp_path / kwargs["out"]
    with pytest.raises(RunError, match=message) as info:
        export_model(digits_run(), **kwargs)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_an_export_cannot_be_exported_again(tmp_path):
    first = export_model(digits_run(), "tflite", tmp_path / "a.tflite")
    with pytest.raises(RunError, match="needs the Keras model, received a tflite export"):
        export_model(first.path, "onnx", tmp_path / "b.onnx")


def test_cli_export_prints_the_difference(tmp_path, capsys):
    dest = tmp_path / "d.onnx"
    assert run_cli(["export", digits_run(), "--format", "onnx", "-o", dest]) == 0
    out = capsys.readouterr().out
    assert f"wrote {dest}" in out and "max abs diff" in out
    assert run_cli(["export", digits_run(), "--format", "onnx", "-o", dest]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err
    assert run_cli(["export", tmp_path / "missing", "--format", "onnx"]) == 1
    assert "no such file" in capsys.readouterr().err


# The export's writer is slowed down after it has written the whole SavedModel under its
# temporary name (a slow disk): the signal then always lands between the write and the commit,
# however loaded the machine. (Signalling as soon as the temporary folder appeared raced the
# 0.15-0.5 s write on a loaded CI and lost twice.)
_INTERRUPTIBLE = """
import signal, sys, time
from pathlib import Path
# Ctrl-C as at a terminal, also when the tests run in a background job (which ignores SIGINT).
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {repo!r})
import dataclasses
import cnnspec.export as E
fmt = E.REGISTRY["savedmodel"]

def slow_write(model, path, quantize):
    fmt.write(model, path, quantize)
    Path({marker!r}).write_text("written")
    time.sleep(120)

E.REGISTRY["savedmodel"] = dataclasses.replace(fmt, write=slow_write)
try:
    E.export_model({run!r}, "savedmodel", {dest!r})
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_export_leaves_nothing_at_the_destination(tmp_path, sig):
    """Interrupt a real export after it wrote its files, before it committed: the destination
    never appears."""
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "model_savedmodel"
    marker = tmp_path / "written"
    code = _INTERRUPTIBLE.format(
        repo=str(REPO), run=str(digits_run()), dest=str(dest), marker=str(marker)
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert any(p.name.endswith(".partial") for p in out.iterdir())  # written, not committed
    proc.send_signal(sig)
    proc.wait(timeout=120)
    assert proc.returncode in (130, -signal.SIGKILL), proc.stderr.read().decode()[-2000:]
    assert not dest.exists()
    assert not (out / "model_savedmodel.meta.json").exists()
    leftovers = [p.name for p in out.iterdir()]
    if sig == signal.SIGINT:  # cleanup ran
        assert leftovers == []
    else:  # no cleanup possible; whatever is left is a hidden temp, never the destination
        assert all(name.startswith(".") and ".partial" in name for name in leftovers)


def _swallowed_ctrl_c() -> None:
    """Ctrl-C arriving inside code that swallows KeyboardInterrupt (as C++ code may)."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler runs here
    except KeyboardInterrupt:
        pass


@pytest.fixture
def ctrl_c_as_at_a_terminal():
    """SIGINT raises KeyboardInterrupt (a background job's pytest inherits it ignored)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_a_swallowed_ctrl_c_still_stops_the_export_before_its_commit(ctrl_c_as_at_a_terminal):
    from cnnspec.outpaths import ctrl_c_is_never_lost

    with ctrl_c_is_never_lost() as check:
        check()  # nothing pressed: nothing happens
    with pytest.raises(KeyboardInterrupt), ctrl_c_is_never_lost() as check:
        _swallowed_ctrl_c()
        check()  # where export_model checks, just before the rename
    # A Ctrl-C that came back as another error (pybind11 turns it into RuntimeError) is a Ctrl-C.
    with pytest.raises(KeyboardInterrupt), ctrl_c_is_never_lost():
        _swallowed_ctrl_c()
        raise RuntimeError("KeyboardInterrupt: <EMPTY MESSAGE>")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    # An ignored SIGINT (nohup, a background job) stays ignored: nothing is installed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with ctrl_c_is_never_lost() as check:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        check()  # nothing came through
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_sample_inputs_cover_the_pixel_range():
    x = sample_inputs([8, 8, 3], 16)
    assert x.dtype == np.float32 and x.shape == (16, 8, 8, 3)
    assert x.min() == 0.0 and x.max() == 255.0
    assert np.array_equal(sample_inputs([8, 8, 3], 16), x)  # deterministic


def test_export_warnings_are_not_shown(tmp_path, recwarn):
    warnings.simplefilter("always")
    export_model(digits_run(), "onnx", tmp_path / "w.onnx")
    assert not [w for w in recwarn if "np.object" in str(w.message)]


def test_a_real_cnnspec_train_run_exports_and_predicts_alike(tmp_path, capsys):
    """End to end with the real trainer: LeNet-5 (built with list inputs) on digits."""
    from _model_fixtures import write_digit_pngs

    from cnnspec.predict import predict_files

    run = tmp_path / "lenet"
    args = ["train", REPO / "specs" / "lenet5.yaml", "--data", "digits", "--epochs", "3"]
    assert run_cli([*args, "--out", run, "-q"]) == 0
    # training records the digest of the model it wrote: predict checks the pair (15.9)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["model_sha256"] == model_digest(run / "model.keras")
    assert meta["versions"] == Versions.current().to_dict()
    images = write_digit_pngs(tmp_path / "imgs", list(range(1760, 1780)))
    answers = {}
    for fmt in REGISTRY:
        result = export_model(run, fmt)
        assert result.max_abs_diff <= 1e-4 and result.top1_agreement == 1.0
        answers[fmt] = predict_files(result.path, images, k=2)
    reference = predict_files(run, images, k=2)
    for fmt, preds in answers.items():
        for ref, got in zip(reference, preds, strict=True):
            assert [c for c, _ in got.top] == [c for c, _ in ref.top], fmt
            assert abs(got.top[0][1] - ref.top[0][1]) <= 1e-4, fmt


CUSTOM_SPEC = """
name: custom_layers
input: [16, 16, 1]
layers:
  - conv: 3x3, 8, p=same, relu
  - lrn: 5, alpha=1.0e-4, beta=0.75, k=2
  - l2pool: 2x2, s=2
  - conv: 3x3, 8, p=same, relu
  - gl2pool
  - dense: 10, softmax
"""


@pytest.mark.parametrize("fmt", list(REGISTRY))
def test_cnnspec_custom_layers_export(tmp_path, fmt):
    """cnnspec's own registered layers (LRN, L2 pooling) pass the safety check and export."""
    from _model_fixtures import write_run_dir

    from cnnspec.build import build_model
    from cnnspec.spec import load_spec

    (tmp_path / "s.yaml").write_text(CUSTOM_SPEC)
    model = build_model(load_spec(tmp_path / "s.yaml"))
    run = write_run_dir(tmp_path / "run", model)
    config = json.loads(zipfile.ZipFile(run / "model.keras").read("config.json"))
    modules = {layer.get("module", "") for layer in config["config"]["layers"]}
    assert any(m.startswith("cnnspec.") for m in modules)  # really custom classes
    result = export_model(
        run,
        fmt,
        tmp_path
        / {"keras": "m.keras", "savedmodel": "m", "tflite": "m.tflite", "onnx": "m.onnx"}[fmt],
    )
    assert result.max_abs_diff <= 1e-4


# Layer settings whose ONNX export once failed: Keras' Normalization (its statistics became graph
# inputs nothing feeds) and transposed convolutions asking for rows past the 'valid' output (tf2onnx
# wrote negative pads; no runtime loads them), and 1D/3D inputs (sample inputs were images only).
# Each model is the layer alone (inputs scaled to [0, 1]), so the comparison sees its raw output.
# native: convT as Keras' own layer (padding, output_padding, then a crop) with the same weights.
ONNX_LAYERS = {
    "normalize": ([6, 6, 3], "normalize: {mean: [0.5, 0.4, 0.3], variance: [0.1, 0.2, 0.3]}", None),
    "normalize-constants": (
        [6, 6, 3],
        "normalize: {mean: [0.5, 0.4, 0.3], variance: [0.1, 0.2, 0.3], constants: true}",
        None,
    ),
    "convT-valid-K<s": ([5, 5, 2], "convT: 1x1, 3, s=2, p=valid", ("valid", None, 0)),
    "convT-same-K<s": ([5, 5, 2], "convT: 1x1, 3, s=2, p=same, relu", ("same", None, 0)),
    "convT-same-mixed": ([5, 5, 2], "convT: 2x3, 3, s=3, p=same", ("same", None, 0)),
    "convT-p0-op": ([5, 5, 2], "convT: 3x3, 3, s=2, p=0, op=1", ("valid", 1, 0)),
    "convT-valid-op": ([5, 5, 2], "convT: 3x3, 3, s=3, p=valid, op=2, relu", ("valid", 2, 0)),
    "convT-p1-op2": ([5, 5, 2], "convT: 2x2, 3, s=3, p=1, op=2", ("valid", 2, 1)),
    "convT-1d": ([12, 2], "convT: 3, 3, s=2, p=valid, op=1", ("valid", 1, 0)),
    "convT-3d": ([3, 3, 3, 2], "convT: 1, 3, s=2, p=same", ("same", None, 0)),
}


@pytest.mark.parametrize("case", sorted(ONNX_LAYERS))
def test_layer_kind_exports_to_onnx(tmp_path, case):
    import keras

    from cnnspec.build import build_model
    from cnnspec.spec import loads_spec

    shape, layer, native = ONNX_LAYERS[case]
    spec = loads_spec(f"name: t\ninput: {shape}\nlayers:\n  - {layer}\n")
    model = build_model(spec)
    model.save(tmp_path / "m.keras")
    result = export_model(tmp_path / "m.keras", "onnx", tmp_path / "m.onnx")
    assert result.max_abs_diff <= 1e-4
    x = sample_inputs(shape, 4, seed=1)
    got = _own_runtime_predict("onnx", result.path, x)
    np.testing.assert_allclose(got, np.asarray(model(x)), rtol=1e-5, atol=1e-5)
    if native is None:
        return
    padding, output_padding, crop = native
    rank = len(shape) - 1
    conv = model.get_layer("convT_1")
    ref = keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Rescaling(1 / 255),
            getattr(keras.layers, f"Conv{rank}DTranspose")(
                3,
                conv.kernel_size,
                strides=conv.strides,
                padding=padding,
                output_padding=output_padding,
                activation=conv.activation,
            ),
            getattr(keras.layers, f"Cropping{rank}D")(crop),
            *[lyr for lyr in model.layers if lyr.name == "convT_1_act"],
        ]
    )
    ref.layers[1].set_weights(conv.get_weights())
    np.testing.assert_allclose(got, np.asarray(ref(x)), rtol=1e-5, atol=1e-5)


def test_a_model_with_keras_own_normalization_loads_and_says_why_onnx_refuses_it(tmp_path):
    """A .keras saved before cnnspec's Normalization: it loads (safe mode), exports to
    SavedModel, and ONNX refuses it with one line naming the layer."""
    import keras

    from cnnspec.modelio import load_keras_model

    inp = keras.Input((6, 6, 3))
    norm = keras.layers.Normalization(axis=-1, name="normalize_1")
    norm.build((None, 6, 6, 3))
    norm.adapt_mean.assign([100.0, 110.0, 120.0])
    norm.adapt_variance.assign([3000.0, 3100.0, 3200.0])
    norm.finalize_state()
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(norm(inp)))
    model = keras.Model(inp, out)
    path = tmp_path / "old.keras"
    model.save(path)
    x = sample_inputs([6, 6, 3], 4)
    loaded = load_keras_model(path)
    assert type(loaded.get_layer("normalize_1")) is keras.layers.Normalization
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    assert export_model(path, "savedmodel", tmp_path / "sm").max_abs_diff <= 1e-4
    with pytest.raises(
        RunError,
        match="layer 'normalize_1' is a plain Keras Normalization.*--format savedmodel or tflite",
    ):
        export_model(path, "onnx", tmp_path / "old.onnx")
    assert not (tmp_path / "old.onnx").exists()


UNCONVERTIBLE = {
    # what tf2onnx cannot convert -> the one line naming the layer (before: an obscure
    # "invalid model" from ONNX Runtime, after a full conversion)
    "grouped conv": (
        "  - conv: {K: 3, n_K: 6, groups: 3}\n",
        r"layer 'conv_1' is a grouped convolution \(groups=3\), which tf2onnx cannot convert",
    ),
    "exact gelu": (
        "  - conv: 3x3, 6, gelu\n",
        r"layer 'conv_1' uses the exact GELU activation, which tf2onnx cannot convert",
    ),
}


@pytest.mark.parametrize("case", UNCONVERTIBLE)
def test_what_onnx_cannot_convert_is_refused_naming_the_layer(tmp_path, case):
    from cnnspec.build import build_model
    from cnnspec.spec import loads_spec

    layer, message = UNCONVERTIBLE[case]
    spec = loads_spec(
        f"name: u\ninput: [8, 8, 6]\nlayers:\n{layer}  - gavgpool\n  - dense: 3, softmax\n"
    )
    path = tmp_path / "u.keras"
    build_model(spec).save(path)
    with pytest.raises(
        RunError, match=message + r".*Hint: export with --format savedmodel or tflite"
    ):
        export_model(path, "onnx", tmp_path / "u.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.keras"]
    assert export_model(path, "tflite", tmp_path / "u.tflite").max_abs_diff <= 1e-4  # the hint


@pytest.mark.slow
def test_efficientnet_b0_exports_to_onnx(tmp_path):
    """specs/efficientnet.yaml (normalize with weights in its stem) in ONNX Runtime."""
    from cnnspec.build import build_model
    from cnnspec.spec import load_spec

    model = build_model(load_spec(REPO / "specs" / "efficientnet.yaml", scale="b0"))
    model.save(tmp_path / "b0.keras")
    result = export_model(tmp_path / "b0.keras", "onnx", tmp_path / "b0.onnx", n_samples=4)
    assert result.max_abs_diff <= 1e-4 and result.top1_agreement == 1.0
    x = sample_inputs([224, 224, 3], 2, seed=3)
    got = _own_runtime_predict("onnx", result.path, x)
    np.testing.assert_allclose(got, np.asarray(model(x)), rtol=1e-4, atol=1e-6)
