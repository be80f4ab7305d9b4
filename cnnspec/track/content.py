"""What a tracked run logs, as plain data (pure: no TensorFlow, no MLflow).

Parameters are strings under keys MLflow accepts (letters, digits, ``_ - . / space``): the
resolved spec flattened (``train.optimizer.adam.lr``, ``layers.0.conv``), its hash, the static
analysis (params, MACs, training-memory estimate at the recipe's batch size) and the data
source with a hash of its file list or file (arrays given in memory: shapes, dtypes, bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

#: MLflow's limits on a parameter (mlflow.utils.validation): key length and value length.
MAX_KEY = 250
MAX_VALUE = 6000
#: A spec with more flattened values than this logs the first ones and says so (the artifact
#: spec.yaml always has all of it).
MAX_SPEC_PARAMS = 800
#: Files of a data folder listed for its hash; a bigger folder is hashed by its first ones.
MAX_LISTED_FILES = 5_000_000
#: Data files (a manifest, an .npz) up to this size are hashed by content, bigger by size+mtime.
MAX_HASHED_BYTES = 2 * 1024**3
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-./ ]")


def key(text: str) -> str:
    """``text`` as an MLflow parameter/metric key (other characters become ``_``)."""
    return _BAD_KEY_CHARS.sub("_", text)[:MAX_KEY]


def value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested spec data as dotted keys; list items by index (``layers.3.conv``)."""
    out: dict[str, Any] = {}
    if isinstance(data, dict) and data:
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(data, list | tuple) and data:
        for i, v in enumerate(data):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    else:
        out[prefix] = data
    return out


def without_track(source: dict[str, Any]) -> dict[str, Any]:
    """The spec data without ``train.track``: it says where a run is sent, not what it is."""
    train = source.get("train")
    if isinstance(train, dict) and "track" in train:
        return {**source, "train": {k: v for k, v in train.items() if k != "track"}}
    return source


def spec_hash(source: dict[str, Any]) -> str:
    """sha256 of the resolved spec's data (key order and ``train.track`` ignored): equal specs,
    equal hashes, whether tracked or not."""
    text = json.dumps(without_track(source), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def spec_params(spec: Any) -> dict[str, str]:
    """The resolved spec flattened to parameters, under ``spec.`` (the tracking section left
    out: it names the server, not the run)."""
    flat = flatten(without_track(spec.source_data))
    params = {key(f"spec.{k}"): value(v) for k, v in list(flat.items())[:MAX_SPEC_PARAMS]}
    if len(flat) > MAX_SPEC_PARAMS:
        params["spec._truncated"] = f"{len(flat)} values, first {MAX_SPEC_PARAMS} logged"
    return params


def analysis(spec: Any) -> dict[str, Any]:
    """The static analysis the spec gives without TensorFlow."""
    from ..spec.memory import estimate_training_memory

    g = spec.graph
    memory = estimate_training_memory(spec, spec.train.batch_size)
    return {
        "params": g.total_params,
        "trainable_params": g.trainable_params,
        "macs": g.total_macs,
        "layers": len(g.nodes) - 1,
        "memory_bytes": memory.total,
        "memory_batch": spec.train.batch_size,
    }


def start_params(spec: Any, data: Any = None) -> dict[str, str]:
    """Every parameter known before training: spec, hash, analysis, data source (``data``:
    data given in memory, which the run trains on instead of the recipe's ``train.data``)."""
    params = spec_params(spec)
    params["spec_hash"] = spec_hash(spec.source_data)
    params.update({f"analysis.{k}": str(v) for k, v in analysis(spec).items()})
    params["data.source"] = value(spec.train.data if data is None else in_memory_label(data))
    return params


def in_memory_label(data: Any) -> str:
    """How the run's metadata names data given in memory ('arrays (x, y) of 100x8x8 in
    memory'): the memory source's own label."""
    from ..data.kinds.memory import label

    return label(data)


def data_fingerprint(source: Any) -> dict[str, str]:
    """How the data can be recognised again: a folder by the hash of its file list (relative
    paths and sizes), a file (manifest, .npz) by the hash of its bytes, arrays in memory by
    their shapes, dtypes and the hash of their bytes, a built-in data set by its name."""
    if not isinstance(source, str | os.PathLike):
        return memory_fingerprint(source)
    path = Path(source)
    if path.is_dir():
        h = hashlib.sha256()
        count = 0
        for here, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = Path(here) / name
                try:
                    size = full.stat().st_size
                except OSError:
                    continue
                h.update(f"{full.relative_to(path).as_posix()}\0{size}\n".encode())
                count += 1
                if count >= MAX_LISTED_FILES:
                    break
            if count >= MAX_LISTED_FILES:
                break
        return {"data.kind": "folder", "data.files": str(count), "data.hash": h.hexdigest()}
    if path.is_file():
        st = path.stat()
        if st.st_size > MAX_HASHED_BYTES:
            text = f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}"
            digest = hashlib.sha256(text.encode()).hexdigest()
            return {"data.kind": "file", "data.hash": digest, "data.hash_of": "name+size+mtime"}
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return {"data.kind": "file", "data.bytes": str(st.st_size), "data.hash": h.hexdigest()}
    return {"data.kind": "builtin"}


def memory_fingerprint(data: Any) -> dict[str, str]:
    """Arrays ``(x, y)``: shape, dtype and one sha256 of both (each array's dtype and shape,
    then its bytes in C order). A dataset object is read by training, not here: its type only."""
    if not (isinstance(data, tuple | list) and len(data) == 2):
        return {"data.kind": "memory", "data.type": type(data).__name__}
    import numpy as np

    h = hashlib.sha256()
    out = {"data.kind": "arrays"}
    for name, a in zip("xy", data, strict=True):
        a = np.asarray(a)
        out[f"data.{name}_shape"] = "x".join(map(str, a.shape))
        out[f"data.{name}_dtype"] = str(a.dtype)
        h.update(f"{a.dtype.str}{a.shape}\n".encode())
        hash_array(h, a)
    out["data.hash"] = h.hexdigest()
    return out


def hash_array(h: Any, a: Any) -> None:
    """Feed ``a``'s bytes (C order) to ``h`` in slices of ~64 MiB: no full copy of a
    non-contiguous array."""
    import numpy as np

    if a.dtype.hasobject:  # Python objects (e.g. label strings): their text
        h.update(json.dumps(a.tolist(), default=str).encode())
        return
    rows = a.reshape(1, -1) if a.ndim < 2 else a
    step = max(1, (64 << 20) // max(1, rows[:1].nbytes))
    for i in range(0, len(rows), step):
        h.update(np.ascontiguousarray(rows[i : i + step]).data)


def result_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """metrics.json's final figures as MLflow metrics (``test_accuracy``, ``images_per_s``)."""
    out: dict[str, float] = {}
    for split in ("train", "val", "test"):
        for name, v in (metrics.get(split) or {}).items():
            if isinstance(v, int | float):
                out[key(f"final_{split}_{name}")] = float(v)
    for name in ("images_per_s", "train_time_s", "wall_time_s", "epochs_done"):
        v = metrics.get(name)
        if isinstance(v, int | float):
            out[name] = float(v)
    return out


def hardware_params(hardware: dict[str, Any]) -> dict[str, str]:
    return {key(f"hardware.{k}"): value(v) for k, v in hardware.items()}
