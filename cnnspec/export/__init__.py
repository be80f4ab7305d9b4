"""Exporting a trained model: Keras, SavedModel, TFLite (optionally quantised) and ONNX.

``export_model`` writes the inference model (aux heads already dropped by ``cnnspec train``,
preprocessing inside, class probabilities out) plus ``<name>.meta.json`` beside it, then verifies
the export by loading it with its own runtime and comparing its outputs with the Keras model on
sample inputs. Writes are atomic: everything is written under hidden temporary names in the
destination's folder and renamed into place only after verification, so an interrupted or failed
export leaves nothing at the destination.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
import warnings
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import RunError
from ..modelio import FORMATS, Format, ModelSource, load_run_model, meta_path_for, versions
from ..outpaths import check_output, ctrl_c_is_never_lost, reason

Quantize = Literal["dynamic", "float16"]
QUANTIZE_MODES: tuple[Quantize, ...] = ("dynamic", "float16")

TOLERANCE = 1e-4
TOLERANCE_QUANTISED = 1e-2
N_SAMPLES = 16


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how well it matched the Keras model."""

    path: Path
    meta_path: Path
    format: Format
    quantize: Quantize | None
    max_abs_diff: float
    top1_agreement: float
    tolerance: float
    seconds: float
    size_bytes: int


def default_destination(source: ModelSource, meta: dict[str, Any], fmt: Format, quantize) -> Path:
    """``<run dir>/export/<name>[_dynamic|_float16].<ext>`` (a folder for SavedModel)."""
    base = (source.run_dir or source.path.parent) / "export"
    stem = str(meta.get("name") or "model") + (f"_{quantize}" if quantize else "")
    names = {
        "keras": f"{stem}.keras",
        "savedmodel": f"{stem}_savedmodel",
        "tflite": f"{stem}.tflite",
        "onnx": f"{stem}.onnx",
    }
    return base / names[fmt]


def export_model(
    source_path: str | Path,
    fmt: str,
    out: str | Path | None = None,
    *,
    quantize: str | None = None,
    overwrite: bool = False,
    tolerance: float | None = None,
    n_samples: int = N_SAMPLES,
) -> ExportResult:
    """Export a run directory or ``.keras`` file to ``fmt``, verified, atomically (see module doc)."""
    if fmt not in FORMATS:
        raise RunError(f"unknown export format '{fmt}'", hint=f"use one of {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise RunError(
            f"unknown quantisation '{quantize}'", hint=f"use one of {', '.join(QUANTIZE_MODES)}"
        )
    if quantize is not None and fmt != "tflite":
        raise RunError(f"--quantize applies to tflite exports only, received --format {fmt}")
    started = time.perf_counter()
    if out is not None:  # before the model is loaded: a bad -o costs nothing
        _check_destination(Path(out), fmt, overwrite)
    model, meta, source = load_run_model(source_path)
    dest = Path(out) if out is not None else default_destination(source, meta, fmt, quantize)
    _check_destination(dest, fmt, overwrite)
    meta_dest = meta_path_for(dest)
    if tolerance is None:
        tolerance = TOLERANCE_QUANTISED if quantize else TOLERANCE

    token = uuid.uuid4().hex[:8]
    tmp = dest.with_name(f".{dest.name}.{token}.partial" + _suffix(dest))
    tmp_meta = meta_dest.with_name(f".{meta_dest.name}.{token}.partial")
    # Ctrl-C anywhere before the rename leaves nothing behind and is never lost.
    with ctrl_c_is_never_lost() as check_ctrl_c:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _WRITERS[fmt](model, tmp, quantize)
            diff, agreement = verify_export(model, tmp, fmt, meta["input_shape"], n_samples)
            if not diff <= tolerance:  # also catches NaN
                hint = (
                    "quantisation changes outputs; check accuracy with cnnspec evaluate on the "
                    "export (written with --tolerance) or use --quantize float16"
                    if quantize
                    else "report it with the model's spec; try another format"
                )
                raise RunError(
                    f"export verification failed: {fmt} output differs from Keras by {diff:.3g} "
                    f"(tolerance {tolerance:g}, same top-1 class on {agreement:.0%} of samples); "
                    f"nothing was written to {dest}",
                    hint=hint,
                )
            export_meta = {
                **meta,
                **versions(),
                "format": fmt,
                "quantize": quantize,
                "source": str(source.path),
                "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "verification": {
                    "max_abs_diff": diff,
                    "top1_agreement": agreement,
                    "tolerance": tolerance,
                    "samples": n_samples,
                    "runtime": _runtime_name(fmt),
                },
            }
            tmp_meta.write_text(json.dumps(export_meta, indent=2) + "\n", encoding="utf-8")
            # Checked again: something may have appeared at the destination during the export.
            _check_destination(dest, fmt, overwrite)
            check_ctrl_c()  # a Ctrl-C that TensorFlow swallowed still stops the export here
            # The model is renamed last: a model at the destination always has its metadata beside it.
            os.replace(tmp_meta, meta_dest)
            _move_into_place(tmp, dest)
        except OSError as exc:
            raise RunError(f"cannot write {dest}: {reason(exc)}") from None
        finally:
            for leftover in (tmp, tmp_meta):
                _remove(leftover)
    return ExportResult(
        path=dest,
        meta_path=meta_dest,
        format=fmt,  # type: ignore[arg-type]
        quantize=quantize,  # type: ignore[arg-type]
        max_abs_diff=diff,
        top1_agreement=agreement,
        tolerance=tolerance,
        seconds=time.perf_counter() - started,
        size_bytes=_size(dest),
    )


def _suffix(dest: Path) -> str:
    # Keras insists on the ".keras" suffix; keep every format's own suffix on temp names.
    return dest.suffix if dest.suffix in (".keras", ".tflite", ".onnx") else ""


def _check_destination(dest: Path, fmt: Format, overwrite: bool) -> None:
    wanted = {"keras": ".keras", "tflite": ".tflite", "onnx": ".onnx"}.get(fmt)
    if wanted and dest.suffix != wanted:
        raise RunError(f"-o {dest}: a {fmt} export must end in '{wanted}'")
    if fmt == "savedmodel" and dest.suffix in (".keras", ".tflite", ".onnx", ".pb"):
        raise RunError(f"-o {dest}: a SavedModel is a folder; give a folder name")
    _refuse_protected(dest)
    check_output(dest, "-o", "tree" if fmt == "savedmodel" else "file")
    meta_dest = meta_path_for(dest)
    for path in (dest, meta_dest):
        if not (path.exists() or path.is_symlink()):
            continue
        if not overwrite:
            raise RunError(f"{path} already exists", hint="pass --overwrite or choose another -o")
        if path.is_symlink():
            raise RunError(
                f"-o {dest}: {path} is a symbolic link; --overwrite replaces only an earlier "
                "export, never a link",
                hint="remove the link yourself or choose another -o",
            )
        recognised, why = _is_export_meta(path) if path == meta_dest else _RECOGNISERS[fmt](path)
        if not recognised:
            raise RunError(
                f"-o {dest}: refusing to replace {path}: {why}; --overwrite replaces only an "
                f"earlier {fmt} export",
                hint="move it away yourself or choose another -o",
            )


def _refuse_protected(dest: Path) -> None:
    """Never export onto /, $HOME, the current directory or a folder above it."""
    resolved = dest.resolve()
    cwd = Path.cwd().resolve()
    protected = {Path(resolved.anchor), Path.home().resolve()}
    if resolved in protected or resolved == cwd or resolved in cwd.parents:
        raise RunError(
            f"-o {dest}: refusing to export onto {resolved} (the current directory, a folder "
            "above it, the home folder or the root)",
            hint="give the export its own name, e.g. -o exports/model_savedmodel",
        )


# What an earlier export of each format looks like: (recognised, why not).
_SAVEDMODEL_ENTRIES = {
    "saved_model.pb",
    "saved_model.pbtxt",
    "fingerprint.pb",
    "keras_metadata.pb",
    "variables",
    "assets",
    "assets.extra",
}


def _is_savedmodel_dir(path: Path) -> tuple[bool, str]:
    if not path.is_dir():
        return False, "it is a file, and a SavedModel is a folder"
    if not (path / "saved_model.pb").is_file() or not (path / "variables").is_dir():
        return False, "it is a folder but not a SavedModel (no saved_model.pb and variables/)"
    foreign = sorted(e.name for e in path.iterdir() if e.name not in _SAVEDMODEL_ENTRIES)
    foreign += sorted(
        f"variables/{e.name}"
        for e in (path / "variables").iterdir()
        if not (e.is_file() and e.name.startswith("variables."))
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        return False, f"the SavedModel folder also holds {shown}, which an export never writes"
    return True, ""


def _is_file_with(path: Path, what: str) -> tuple[bool, str]:
    if path.is_dir():
        return False, f"it is a folder, and a {what} export is a file"
    if not path.is_file():
        return False, "it is not a regular file"
    return True, ""


def _is_keras_file(path: Path) -> tuple[bool, str]:
    ok, why = _is_file_with(path, "keras")
    if not ok:
        return ok, why
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False, "it is not a .keras archive (not a zip file)"
    own = {"config.json", "metadata.json", "model.weights.h5"}
    if "config.json" not in names or any(
        n not in own and not n.startswith("assets/") for n in names
    ):
        return False, "it is a zip file but not a Keras model archive"
    return True, ""


def _has_magic(path: Path, what: str, offset: int, magic: bytes) -> tuple[bool, str]:
    ok, why = _is_file_with(path, what)
    if not ok:
        return ok, why
    with path.open("rb") as fh:
        head = fh.read(offset + len(magic))
    if head[offset:] != magic:
        return False, f"it is not a {what} model"
    return True, ""


def _is_export_meta(path: Path) -> tuple[bool, str]:
    ok, why = _is_file_with(path, "metadata")
    if not ok:
        return ok, why
    if path.stat().st_size > 1024**2:
        return False, "it is too large to be export metadata"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False, "it is not JSON"
    if not (isinstance(meta, dict) and {"format", "input_shape", "class_names"} <= set(meta)):
        return False, "it is not the metadata of a cnnspec export"
    return True, ""


_RECOGNISERS = {
    "keras": _is_keras_file,
    "savedmodel": _is_savedmodel_dir,
    # A TFLite flatbuffer has the identifier "TFL3" at byte 4; an ONNX ModelProto starts with
    # field 1 (ir_version, a varint): tag byte 0x08.
    "tflite": lambda path: _has_magic(path, "tflite", 4, b"TFL3"),
    "onnx": lambda path: _has_magic(path, "onnx", 0, b"\x08"),
}


def _move_into_place(tmp: Path, dest: Path) -> None:
    if dest.is_dir() and not dest.is_symlink():
        # A directory cannot be replaced by rename while it has contents: move it aside first.
        aside = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(dest, aside)
        try:
            os.replace(tmp, dest)
        except BaseException:
            os.replace(aside, dest)
            raise
        _remove(aside)
    else:
        os.replace(tmp, dest)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


# --------------------------------------------------------------------------- writers


def _write_keras(model, path: Path, quantize) -> None:
    model.save(path)


def _write_savedmodel(model, path: Path, quantize) -> None:
    model.export(str(path), format="tf_saved_model", verbose=False)


def _write_tflite(model, path: Path, quantize) -> None:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="cnnspec-tflite-") as saved:
        model.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        # Builtin ops only: the file then runs in the plain LiteRT runtime, no Flex delegate.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        try:
            data = converter.convert()
        except Exception as exc:  # noqa: BLE001 - the converter raises ConverterError and others
            text = str(exc).strip().splitlines()
            raise RunError(
                f"TFLite conversion failed: {text[0] if text else type(exc).__name__}",
                hint="a layer may have no TFLite builtin op; try --format onnx or savedmodel",
            ) from None
    path.write_bytes(data)


def _write_onnx(model, path: Path, quantize) -> None:
    try:
        import tf2onnx  # noqa: F401
    except ImportError:
        raise RunError(
            "ONNX export needs tf2onnx, onnx and onnxruntime", hint="pip install 'cnnspec[onnx]'"
        ) from None
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    _refuse_plain_normalization(model)
    # Keras exports to ONNX only a model that has been called once; a freshly loaded one hasn't.
    model(np.zeros((1, *(int(d) for d in model.inputs[0].shape[1:])), np.float32), training=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras' numpy-2 patch of tf2onnx warns about np.object
        model.export(str(path), format="onnx", verbose=False)


def _refuse_plain_normalization(model) -> None:
    """One line, naming the layer, for what tf2onnx cannot convert (before it fails obscurely).

    - keras.layers.Normalization (a model saved before cnnspec built ``normalize`` with its own
      layer): its statistics become graph inputs that nothing feeds;
    - a grouped convolution (``groups`` > 1): Keras runs it as an XLA call;
    - exact GELU: TensorFlow computes it with Erfc, which tf2onnx lacks.
    """
    import keras

    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        stack.extend(getattr(layer, "layers", []))
        if type(layer) is keras.layers.Normalization:
            raise RunError(
                f"layer '{layer.name}' is a plain Keras Normalization (a model built before "
                "cnnspec's own normalize layer), which tf2onnx cannot convert",
                hint="rebuild the model from its spec with this cnnspec (cnnspec build or "
                "train), or export with --format savedmodel or tflite",
            )
        if getattr(layer, "groups", 1) > 1:
            raise RunError(
                f"layer '{layer.name}' is a grouped convolution (groups={layer.groups}), which "
                "tf2onnx cannot convert (Keras runs it as an XLA call)",
                hint="export with --format savedmodel or tflite",
            )
        if getattr(layer, "activation", None) is keras.activations.gelu:
            raise RunError(
                f"layer '{layer.name}' uses the exact GELU activation, which tf2onnx cannot "
                "convert (TensorFlow computes it with Erfc)",
                hint="export with --format savedmodel or tflite",
            )


_WRITERS = {
    "keras": _write_keras,
    "savedmodel": _write_savedmodel,
    "tflite": _write_tflite,
    "onnx": _write_onnx,
}


def _runtime_name(fmt: Format) -> str:
    if fmt == "tflite":
        try:
            import ai_edge_litert  # noqa: F401

            return "ai_edge_litert"
        except ImportError:
            return "tf.lite"
    return {"keras": "keras", "savedmodel": "tf.saved_model", "onnx": "onnxruntime"}[fmt]


# --------------------------------------------------------------------------- verification


def sample_inputs(input_shape: list[int], n: int = N_SAMPLES, seed: int = 0) -> np.ndarray:
    """Deterministic inputs in [0, 255]: noise, flat images and smooth gradients.

    A model of another rank (1D signals, 3D volumes) gets noise and the two flat inputs.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 255.0, size=(n, *input_shape)).astype(np.float32)
    if n >= 4:
        x[0] = 0.0
        x[1] = 255.0
    if n >= 4 and len(input_shape) == 3:
        h, w, _ = input_shape
        x[2] = np.linspace(0.0, 255.0, w, dtype=np.float32)[None, :, None]
        x[3] = np.linspace(0.0, 255.0, h, dtype=np.float32)[:, None, None]
    return x


def verify_export(
    model, path: Path, fmt: Format, input_shape: list[int], n: int
) -> tuple[float, float]:
    """Run the export in its own runtime on sample inputs and compare with the Keras model.

    Returns the max absolute difference of the probabilities and the share of samples whose
    most probable class agrees.
    """
    from .runtime import _RUNTIMES, _first_line

    x = sample_inputs(list(input_shape), n)
    expected = np.asarray(model(x, training=False))
    try:
        runtime = _RUNTIMES[fmt](path)
        got = runtime.predict(x)
    except RunError:
        raise
    except Exception as exc:  # noqa: BLE001 - any runtime failure means the export is unusable
        raise RunError(
            f"export verification failed: the {fmt} runtime cannot run the export: "
            f"{_first_line(exc)}"
        ) from None
    if got.shape != expected.shape:
        raise RunError(
            f"export verification failed: {fmt} output shape {got.shape}, Keras {expected.shape}"
        )
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
    agreement = float((got.argmax(axis=-1) == expected.argmax(axis=-1)).mean())
    return diff, agreement
