"""Finding and safely loading trained models and their metadata.

A *model source* is one of:

- a run directory written by ``cnnspec train`` (``runs/<name>/<timestamp>/`` holding ``model.keras``
  and ``meta.json``), or a ``runs/<name>/`` folder (its newest complete run is used);
- a ``.keras`` file;
- an export: a SavedModel folder, a ``.tflite`` file or an ``.onnx`` file.

Metadata lives beside the model: ``meta.json`` in a run directory, ``<name>.meta.json`` next to an
export (``digits.onnx`` -> ``digits.onnx.meta.json``, ``digits_savedmodel/`` ->
``digits_savedmodel.meta.json``).

Safety: a ``.keras`` archive's ``config.json`` is checked *before* Keras sees it (no ``Lambda``
layers, no Python lambdas, no ``TFSMLayer``, no classes outside Keras/cnnspec) and then loaded with
``safe_mode=True``; nothing here unpickles anything. This module imports Keras only inside the
functions that load a model.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .digest import check_digest
from .errors import RunError

#: An export format's name (the registry is :mod:`cnnspec.export.formats`).
Format = str

RUN_MODEL_FILE = "model.keras"
RUN_META_FILE = "meta.json"
META_SUFFIX = ".meta.json"
_META_REQUIRED = ("name", "input_shape", "class_names")

# Layers that carry (or load) code rather than weights; refused even though safe_mode would stop
# the first two, so the user gets one clear line instead of a Keras ValueError.
_CODE_LAYERS = {"Lambda", "TFSMLayer", "__lambda__"}
_ALLOWED_MODULE_ROOTS = ("keras", "cnnspec")


@dataclass(frozen=True)
class ModelSource:
    """A located model: its file or folder, format, run directory (if any) and metadata path."""

    path: Path
    format: Format
    meta_path: Path | None
    run_dir: Path | None = None


def meta_path_for(model_path: Path) -> Path:
    """Where an export's metadata goes: ``out/digits.onnx`` -> ``out/digits.onnx.meta.json``.

    The full name is kept so that exports of one model to several formats in one folder each
    have their own metadata.
    """
    return model_path.with_name(model_path.name + META_SUFFIX)


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / RUN_MODEL_FILE).is_file()


def _is_savedmodel(path: Path) -> bool:
    return path.is_dir() and (path / "saved_model.pb").is_file()


def find_model(path: str | Path) -> ModelSource:
    """Locate the model behind a user-given path (see the module docstring for what is accepted)."""
    try:
        return _find_model(Path(path))
    except OSError as exc:  # a name too long, a loop of links, an unreadable folder
        from .outpaths import reason, shown

        raise RunError(f"{shown(path)}: cannot read this model path: {reason(exc)}") from None


def _file_formats() -> dict[str, Format]:
    """Model file suffix -> format, from the export registry (a folder format has none)."""
    from .export.formats import REGISTRY

    return {f.suffix: f.name for f in REGISTRY.values() if f.suffix}


def _find_model(p: Path) -> ModelSource:
    if not p.exists():
        raise RunError(
            f"{p}: no such file or directory",
            hint="pass a run directory (runs/<name>/<timestamp>), a .keras file or an export",
        )
    if p.is_dir() and not _is_run_dir(p) and not _is_savedmodel(p):
        from .train.rundir import is_complete  # stdlib only: no TensorFlow here

        # Skip runs that did not finish (killed, or a 0-byte model.keras of old versions).
        try:
            runs = sorted(c for c in p.iterdir() if _is_run_dir(c) and is_complete(c))
        except OSError as exc:
            raise RunError(f"{p}: cannot read this folder: {exc.strerror or exc}") from None
        if runs:
            p = runs[-1]  # timestamps sort chronologically
    if _is_run_dir(p):
        meta = p / RUN_META_FILE
        return ModelSource(p / RUN_MODEL_FILE, "keras", meta if meta.is_file() else None, p)
    if _is_savedmodel(p):
        return ModelSource(p, "savedmodel", _existing_meta(p))
    if p.is_file():
        by_suffix = _file_formats()
        fmt = by_suffix.get(p.suffix.lower())
        if fmt is None:
            raise RunError(
                f"{p}: unsupported model file type '{p.suffix or p.name}'",
                hint=f"use a {', '.join(by_suffix)} file, a SavedModel folder or a run directory "
                "(legacy .h5 models are refused: they can carry marshalled Python code)",
            )
        meta = _existing_meta(p)
        if meta is None and fmt == "keras" and (p.parent / RUN_META_FILE).is_file():
            meta = p.parent / RUN_META_FILE
        run_dir = (
            p.parent if p.name == RUN_MODEL_FILE and meta == p.parent / RUN_META_FILE else None
        )
        return ModelSource(p, fmt, meta, run_dir)
    raise RunError(
        f"{p}: not a model: no model.keras, saved_model.pb or runs inside",
        hint="pass a run directory (runs/<name>/<timestamp>), a .keras file or an export",
    )


def _existing_meta(model_path: Path) -> Path | None:
    meta = meta_path_for(model_path)
    return meta if meta.is_file() else None


# --------------------------------------------------------------------------- metadata


def read_meta(path: Path) -> dict[str, Any]:
    """Read and check a metadata JSON file (``name``, ``input_shape``, ``class_names``, ...)."""
    try:
        if path.stat().st_size > MAX_JSON_MEMBER_BYTES:
            raise RunError(
                f"{path}: model metadata of {_size_text(path.stat().st_size)} is over the "
                f"{_size_text(MAX_JSON_MEMBER_BYTES)} limit"
            )
        meta = json.loads(path.read_text(encoding="utf-8"))
        if _json_depth(meta) > MAX_JSON_DEPTH:
            raise RecursionError
    except RecursionError:
        raise RunError(
            f"{path}: model metadata nests deeper than {MAX_JSON_DEPTH} levels; metadata does not"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path}: cannot read model metadata: {exc}") from None
    if not isinstance(meta, dict):
        raise RunError(
            f"{path}: model metadata must be a JSON object, received {type(meta).__name__}"
        )
    missing = [k for k in _META_REQUIRED if k not in meta]
    if missing:
        raise RunError(f"{path}: model metadata lacks {', '.join(missing)}")
    shape = meta["input_shape"]
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(d, int) and d > 0 for d in shape)
    ):
        raise RunError(f"{path}: input_shape must be [H, W, C] positive integers, received {shape}")
    names = meta["class_names"]
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise RunError(f"{path}: class_names must be a non-empty list of strings")
    return meta


def default_meta(name: str, input_shape: list[int], n_classes: int) -> dict[str, Any]:
    """Metadata for a model that came without any: classes are named by their index."""
    return {
        "name": name,
        "input_shape": list(input_shape),
        "class_names": [str(i) for i in range(n_classes)],
        "preprocess": None,
    }


def check_model_source(path: str | Path) -> tuple[ModelSource, dict[str, Any] | None]:
    """Every check on a model source that needs no TensorFlow: located, a ``.keras`` archive
    within its limits and free of code, metadata readable and recorded for these very bytes.
    Commands call it before importing TensorFlow, so a refusal costs milliseconds."""
    source = find_model(path)
    if source.format == "keras":
        check_keras_archive(source.path)
    meta = None
    if source.meta_path is not None:
        meta = read_meta(source.meta_path)
        check_digest(source.path, source.meta_path, meta)
    return source, meta


# --------------------------------------------------------------------------- safe .keras loading


#: Limits on a ``.keras`` archive (README "Limits"). They are checked from the zip's directory
#: (declared sizes) before any member is read, so a zip bomb costs milliseconds, not gigabytes.
MAX_ARCHIVE_BYTES = 4 * 1024**3  #: total declared (uncompressed) size of all members
MAX_JSON_MEMBER_BYTES = 64 * 1024**2  #: config.json / metadata.json
MAX_RATIO = 100  #: declared / compressed size of a member over RATIO_FLOOR (Keras stores, 1:1)
RATIO_FLOOR = 1024**2
MAX_MEMBERS = 10_000
MAX_JSON_DEPTH = 100  #: nesting of config.json (cnnspec's own models: about 12)
_JSON_MEMBERS = ("config.json", "metadata.json")


class ArchiveError(ValueError):
    """A ``.keras`` archive that breaks a limit or cannot be read (a ValueError for spec code)."""


class ArchiveTooLarge(ArchiveError):
    """An archive whose members declare more than its total limit, in all."""


def _size_text(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def check_archive_limits(
    zf: zipfile.ZipFile,
    path: str | Path,
    *,
    max_total: int | None = None,
    max_ratio: int | None = None,
) -> None:
    """Refuse an archive whose declared sizes break the limits above (nothing is decompressed).

    ``max_total`` / ``max_ratio``: other limits for other archives (an ``.npz``).
    """
    max_total = MAX_ARCHIVE_BYTES if max_total is None else max_total
    max_ratio = MAX_RATIO if max_ratio is None else max_ratio
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ArchiveError(f"{path}: the archive has {len(infos)} members (limit {MAX_MEMBERS})")
    total = 0
    for info in infos:
        declared, packed = info.file_size, info.compress_size
        total += declared
        name = info.filename
        if info.compress_type == zipfile.ZIP_STORED and declared != packed:
            raise ArchiveError(
                f"{path}: member '{name}' is stored uncompressed but declares {declared} bytes "
                f"for {packed} (a forged zip header)"
            )
        if declared > RATIO_FLOOR and declared > max_ratio * max(packed, 1):
            raise ArchiveError(
                f"{path}: member '{name}' declares {_size_text(declared)} from "
                f"{_size_text(packed)} compressed (ratio {declared // max(packed, 1)}:1, limit "
                f"{max_ratio}:1); this looks like a zip bomb and is not read"
            )
        if name in _JSON_MEMBERS and declared > MAX_JSON_MEMBER_BYTES:
            raise ArchiveError(
                f"{path}: member '{name}' declares {_size_text(declared)} (limit "
                f"{_size_text(MAX_JSON_MEMBER_BYTES)})"
            )
    if total > max_total:
        raise ArchiveTooLarge(
            f"{path}: the archive declares {_size_text(total)} in all (limit "
            f"{_size_text(max_total)})"
        )


def read_archive_json(zf: zipfile.ZipFile, name: str, path: str | Path) -> Any:
    """A JSON member of an archive already passed by :func:`check_archive_limits`."""
    try:
        with zf.open(name) as fh:
            data = fh.read(MAX_JSON_MEMBER_BYTES + 1)
        if len(data) > MAX_JSON_MEMBER_BYTES:
            raise ArchiveError(f"{path}: member '{name}' is larger than it declares")
        value = json.loads(data)
    except RecursionError:
        value = None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"{path}: member '{name}' is not valid JSON: {exc}") from None
    depth = _json_depth(value) if value is not None else MAX_JSON_DEPTH + 1
    if depth > MAX_JSON_DEPTH:
        raise ArchiveError(
            f"{path}: member '{name}' nests deeper than {MAX_JSON_DEPTH} levels; a model "
            "config does not"
        )
    return value


def _json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON, counted without recursion (stops past the limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        stack.extend((child, depth + 1) for child in children)
    return deepest


def read_keras_config(path: str | Path) -> Any:
    """The ``config.json`` of a ``.keras`` archive, within the limits above; ArchiveError else."""
    try:
        with zipfile.ZipFile(path) as zf:
            check_archive_limits(zf, path)
            if "config.json" not in zf.namelist():
                raise ArchiveError(f"{path}: not a Keras 3 model archive (no config.json inside)")
            return read_archive_json(zf, "config.json", path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"{path}: not a readable .keras archive: {exc}") from None


def check_keras_archive(path: Path) -> None:
    """Refuse a ``.keras`` archive whose config could run code, before Keras deserialises it."""
    try:
        config = read_keras_config(path)
    except ArchiveError as exc:
        unreadable = "not a readable" in str(exc)
        raise RunError(
            str(exc),
            hint="was the file truncated? re-export or retrain it"
            if unreadable
            else "cnnspec reads only .keras archives within its limits (see README, Limits)",
        ) from None
    for layer_name, class_name, module in _walk_classes(config):
        if class_name in _CODE_LAYERS:
            raise RunError(
                f"{path}: refusing to load: layer '{layer_name}' is a {class_name}, "
                "which can run arbitrary Python code",
                hint="cnnspec only loads models built from layers; rebuild it from its spec",
            )
        if module and module.split(".")[0] not in _ALLOWED_MODULE_ROOTS:
            raise RunError(
                f"{path}: refusing to load: layer '{layer_name}' uses class {module}.{class_name} "
                "from outside Keras and cnnspec",
                hint="cnnspec only loads models built from Keras and cnnspec layers",
            )


def _walk_classes(node: Any, layer_name: str = "?"):
    """Yield (layer name, class_name, module) for every serialised object in a Keras config."""
    if isinstance(node, dict):
        if "class_name" in node:
            cfg = node.get("config")
            name = cfg.get("name", layer_name) if isinstance(cfg, dict) else layer_name
            module = node.get("module")
            yield str(name), str(node["class_name"]), module if isinstance(module, str) else None
            layer_name = str(name)
        for value in node.values():
            yield from _walk_classes(value, layer_name)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_classes(value, layer_name)


def load_keras_model(path: str | Path):
    """Load a ``.keras`` file for inference: checked archive, safe mode, not compiled."""
    path = Path(path)
    check_keras_archive(path)
    from .tfquiet import import_tensorflow

    import_tensorflow()  # without its start-up noise
    import keras

    # cnnspec's own registered layers (if any) must be imported before loading
    with contextlib.suppress(ImportError):
        import cnnspec.build  # noqa: F401
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{path}: Keras cannot load this model: {first}") from None


def inference_model(model, output_name: str | None = None):
    """The model as one tensor in, one tensor (class probabilities) out.

    Models built with list inputs (``keras.Model([inp], [out])``) export with list signatures
    that other runtimes and ``model(x)`` handle badly, and a model that still has auxiliary heads
    has several outputs: both are rewired here (same layers, same weights) to a single input and
    the named output (``meta.json``'s ``output_name``) or the only one.
    """
    import keras

    if len(model.inputs) != 1:
        raise RunError(
            f"the model has {len(model.inputs)} inputs; cnnspec exports single-image models only"
        )
    outputs = model.outputs
    if len(outputs) == 1:
        out = outputs[0]
    else:
        names = list(getattr(model, "output_names", []) or [])
        if output_name is None or output_name not in names:
            raise RunError(
                f"the model has {len(outputs)} outputs ({', '.join(names)}) and no output_name "
                "in its metadata says which gives the class probabilities",
                hint="export the inference model that cnnspec train writes (aux heads dropped)",
            )
        out = outputs[names.index(output_name)]
    return keras.Model(model.inputs[0], out, name=model.name)


def load_run_model(path: str | Path):
    """Load a Keras model source plus its metadata: ``(model, meta, source)``.

    Raises RunError when the source is an export (use :func:`cnnspec.export.runtime.open_model`
    for those) or when anything is missing or unsafe.
    """
    source = find_model(path)
    if source.format != "keras":
        raise RunError(
            f"{source.path}: this command needs the Keras model, received a {source.format} export",
            hint="pass the run directory or the .keras file",
        )
    model = load_keras_model(source.path)
    output_name = None
    if source.meta_path is not None:
        output_name = read_meta(source.meta_path).get("output_name")
    model = inference_model(model, output_name if isinstance(output_name, str) else None)
    meta = model_meta(source, model)
    return model, meta, source


def model_meta(source: ModelSource, model=None) -> dict[str, Any]:
    """The metadata of a source: its file if present, else derived from a loaded Keras model."""
    if source.meta_path is not None:
        meta = read_meta(source.meta_path)
        check_digest(source.path, source.meta_path, meta)
        if model is not None:
            _check_meta_matches(meta, model, source.meta_path)
        return meta
    if model is None:
        raise RunError(
            f"{source.path}: no metadata file beside the model ({meta_path_for(source.path).name})",
            hint="export it with cnnspec export, which writes one",
        )
    shape = [int(d) for d in model.inputs[0].shape[1:]]
    return default_meta(source.path.stem, shape, int(model.outputs[0].shape[-1]))


def _check_meta_matches(meta: dict[str, Any], model, meta_path: Path) -> None:
    shape = [int(d) if d is not None else None for d in model.inputs[0].shape[1:]]
    if shape != list(meta["input_shape"]):
        raise RunError(
            f"{meta_path}: input_shape {meta['input_shape']} does not match the model's {shape}"
        )
    if isinstance(meta.get("outputs"), list):  # a task run: class_names are the data's columns
        from .export.outputs import check_units, outputs_of

        check_units(outputs_of(meta, str(meta_path))[0], model.outputs[0], str(meta_path))
        return
    n = model.outputs[0].shape[-1]
    if n is not None and int(n) != len(meta["class_names"]):
        raise RunError(
            f"{meta_path}: {len(meta['class_names'])} class_names for a model with {int(n)} outputs"
        )
