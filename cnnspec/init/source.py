"""The weight index of a source: its weight-bearing layers, in order, with their tensor shapes.

Read without TensorFlow and without executing anything: a ``.keras`` file is a zip whose
``config.json`` (read as JSON) gives the layers in the model's order and whose
``model.weights.h5`` (read with h5py) holds ``layers/<class>_<n>/vars/<i>``; a run directory
is read through its ``model.keras``; a ``keras:<Application>`` source is the ImageNet file Keras downloads (legacy HDF5: its
``layer_names`` / ``weight_names`` attributes give the order).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunError

#: Keras layer class -> the spec kind whose weights have the same layout.
KERAS_KINDS: dict[str, str] = {
    "Conv1D": "conv",
    "Conv2D": "conv",
    "Conv3D": "conv",
    "DepthwiseConv1D": "dwconv",
    "DepthwiseConv2D": "dwconv",
    "SeparableConv1D": "sepconv",
    "SeparableConv2D": "sepconv",
    "Conv1DTranspose": "convT",
    "Conv2DTranspose": "convT",
    "Conv3DTranspose": "convT",
    "Dense": "dense",
    "BatchNormalization": "bn",
    "LayerNormalization": "layernorm",
    "Normalization": "normalize",
    "LayerScale": "layerscale",
}

#: A run folder's model.
RUN_MODEL = "model.keras"
KERAS_PREFIX = "keras:"


@dataclass(frozen=True)
class SourceLayer:
    """One weight-bearing layer of the source: where its arrays are in the HDF5 file."""

    name: str
    cls: str
    kind: str
    shapes: tuple[tuple[int, ...], ...]
    paths: tuple[str, ...]

    @property
    def params(self) -> int:
        total = 0
        for shape in self.shapes:
            n = 1
            for d in shape:
                n *= d
            total += n
        return total


@dataclass
class WeightIndex:
    """The weight-bearing layers of a source, in the source model's order."""

    label: str
    file: Path  # the file holding the arrays (.keras zip or .h5)
    member: str | None  # the HDF5 member inside a zip, or None for a plain .h5 file
    layers: list[SourceLayer] = field(default_factory=list)
    config: dict[str, Any] | None = None  # the model's config.json (a .keras file)
    #: How ``layers`` are ordered: GRAPH (:func:`topological`, a .keras file) or KERAS (the
    #: order Keras' functional models keep, :func:`keras_order`: a legacy HDF5 file's).
    order: str = "graph"

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @contextmanager
    def arrays(self) -> Iterator[Any]:
        """The open HDF5 file: ``h5[path][()]`` is one array (read on demand)."""
        import h5py

        if self.member is None:
            with h5py.File(self.file, "r") as h5:
                yield h5
            return
        with open(self.file, "rb") as fh:
            view = stored_member(fh, self.member)
            if view is None:  # compressed: h5py needs a seekable file, so read it whole
                with zipfile.ZipFile(self.file) as zf, zf.open(self.member) as raw:
                    view = io.BytesIO(raw.read())
            with h5py.File(view, "r") as h5:
                yield h5


class MemberView(io.RawIOBase):
    """A read-only, seekable window on an uncompressed zip member: h5py reads only the bytes it
    needs (a weight index reads kilobytes of a 100 MB file, not all of it)."""

    def __init__(self, fh: Any, start: int, size: int) -> None:
        self.fh, self.start, self.size, self.pos = fh, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self.size - self.pos))
        self.fh.seek(self.start + self.pos)
        data = self.fh.read(n)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def stored_member(fh: Any, member: str) -> MemberView | None:
    """A view on ``member`` of the zip file ``fh`` when it is stored uncompressed (as Keras
    saves model.weights.h5), else None."""
    import struct

    info = zipfile.ZipFile(fh).getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    fh.seek(info.header_offset)
    header = fh.read(30)  # the local file header: its name and extra field lengths at 26..30
    if header[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return MemberView(fh, info.header_offset + 30 + name_len + extra_len, info.file_size)


def kind_of(cls: str) -> str | None:
    """The spec kind of a Keras class name (``keras.applications``' own LayerScale too)."""
    return KERAS_KINDS.get(cls.rsplit(">", 1)[-1].rsplit(".", 1)[-1])


def read_index(source: str) -> WeightIndex:
    """The weight index of ``source`` (a path, a run folder or ``keras:Name``); RunError if not."""
    if source.startswith(KERAS_PREFIX):
        return application_index(source[len(KERAS_PREFIX) :])
    path = Path(source)
    if path.is_dir():
        model = path / RUN_MODEL
        if not model.is_file():
            raise RunError(
                f"init: {path} has no {RUN_MODEL}",
                hint="give a finished run folder, or a .keras / .weights.h5 file",
            )
        path = model
    if not path.is_file():
        raise RunError(
            f"init: cannot read {path}: no such file",
            hint="give a .keras file, a .weights.h5 file, a run folder or keras:<Application>",
        )
    if zipfile.is_zipfile(path):
        return keras_file_index(path)
    return h5_index(path, source)


# --- .keras files ---------------------------------------------------------------------------------


def snake(name: str) -> str:
    """Keras' to_snake_case: model.weights.h5 stores layer i of class C as ``layers/c[_n]``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def tensor_refs(value: Any) -> list[str]:
    """The layer names of every serialised Keras tensor in a node's arguments."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [value["config"]["keras_history"][0]]
        return [t for v in value.values() for t in tensor_refs(v)]
    if isinstance(value, (list, tuple)):  # tuples in an in-memory config (keras:Name)
        return [t for v in value for t in tensor_refs(v)]
    return []


def output_names(value: Any) -> list[str]:
    """output_layers: one [name, node, tensor] or a list of them."""
    if value and isinstance(value[0], str):
        return [value[0]]
    return [v[0] for v in value or []]


def topological(parents: dict[str, list[str]], outputs: list[str]) -> dict[str, int]:
    """Position of each layer in a canonical order: post-order from the outputs, inputs in the
    order they are given. Two graphs of the same structure get the same order, whatever order
    their layers were created in (a projection shortcut before or after its body)."""
    order: dict[str, int] = {}
    for out in outputs:
        stack = [(out, False)]
        while stack:
            name, expanded = stack.pop()
            if name in order:
                continue
            if expanded:
                order[name] = len(order)
                continue
            stack.append((name, True))
            stack.extend((p, False) for p in reversed(parents.get(name, [])) if p not in order)
    for name in parents:  # unreachable layers last, in their own order
        order.setdefault(name, len(order))
    return order


GRAPH, KERAS = "graph", "keras"


def keras_order(parents: dict[str, list[str]], outputs: list[str]) -> dict[str, int]:
    """Position of each layer in the order of a Keras functional model's ``layers`` (and so of
    a legacy HDF5 weight file, which Keras loads by position): by depth (the longest path to
    the output) decreasing, ties by first visit of a depth-first walk from the outputs
    (keras.src.ops.function.map_graph)."""
    visit: dict[str, int] = {}
    stack = list(reversed(outputs))
    while stack:
        name = stack.pop()
        if name in visit:
            continue
        visit[name] = len(visit)
        stack.extend(p for p in reversed(parents.get(name, [])) if p not in visit)
    depth = dict.fromkeys(visit, 0)
    post = topological(parents, outputs)
    for name in sorted(visit, key=lambda n: -post[n]):  # consumers before their inputs
        for p in parents.get(name, []):
            if p in depth:
                depth[p] = max(depth[p], depth[name] + 1)
    ranked = sorted(visit, key=lambda n: (-depth[n], visit[n]))
    order = {name: i for i, name in enumerate(ranked)}
    for name in parents:
        order.setdefault(name, len(order))
    return order


def keras_file_index(path: Path) -> WeightIndex:
    """The index of a Keras 3 ``.keras`` file (functional or sequential)."""
    from ..modelio import ArchiveError, check_archive_limits, read_archive_json

    try:
        with zipfile.ZipFile(path) as zf:
            check_archive_limits(zf, path)
            config = read_archive_json(zf, "config.json", path)
            zf.getinfo("model.weights.h5")
        layers = config["config"]["layers"]
    except (ArchiveError, KeyError, TypeError, zipfile.BadZipFile, ValueError) as exc:
        raise RunError(
            f"init: {path} is not a Keras 3 .keras file ({exc})",
            hint="save the model with model.save('file.keras')",
        ) from None
    index = WeightIndex(str(path), path, "model.weights.h5", config=config)
    parents: dict[str, list[str]] = {}
    previous: list[str] = []
    with index.arrays() as h5:
        for item in flatten_nested(layers):
            cls = item.get("class_name", "")
            name = item.get("config", {}).get("name") or item.get("name", "")
            group = item[H5_GROUP]
            refs = [t for node in item.get("inbound_nodes", []) for t in tensor_refs(node)]
            # A Sequential config has no inbound nodes: each layer reads the one before.
            parents[name] = list(dict.fromkeys(refs)) if "inbound_nodes" in item else previous
            previous = [name]
            shapes, paths = _vars(h5, group)
            if shapes:
                index.layers.append(SourceLayer(name, cls, kind_of(cls) or cls, shapes, paths))
    outputs = output_names(config["config"].get("output_layers")) or previous
    order = topological(parents, outputs)
    index.layers.sort(key=lambda layer: order.get(layer.name, len(order)))
    return index


#: Where a layer of a nested Sequential keeps its weights (set by :func:`flatten_nested`).
H5_GROUP = "__h5_group__"
NESTED = ("Sequential",)


def _counter_name(used: dict[str, int], cls: str, prefix: str) -> str:
    key = snake(cls)
    used[key] = used.get(key, -1) + 1
    return f"{prefix}{key}" + (f"_{used[key]}" if used[key] else "")


def _retarget(value: Any, names: dict[str, str]) -> Any:
    """A copy of a node's arguments with tensors of renamed layers pointing at the new name."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = list(value["config"]["keras_history"])
            history[0] = names.get(history[0], history[0])
            return {**value, "config": {**value["config"], "keras_history": history}}
        return {k: _retarget(v, names) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_retarget(v, names) for v in value]
    return value


def flatten_nested(layers: list[dict]) -> list[dict]:
    """A functional config's layers with each nested Sequential (ConvNeXt's stem) replaced by
    its own layers in a chain, under their own names; whatever read the Sequential reads its
    last layer. Each inner layer carries :data:`H5_GROUP`, where model.weights.h5 keeps it."""
    used: dict[str, int] = {}
    out: list[dict] = []
    last: dict[str, str] = {}  # Sequential name -> its last layer's name
    for item in layers:
        cls = item.get("class_name", "")
        group = _counter_name(used, cls, "layers/")
        if "inbound_nodes" not in item:  # a Sequential model's own layers: nothing to rewire
            out.append({**item, H5_GROUP: group})
            continue
        nodes = _retarget(item["inbound_nodes"], last)
        if cls not in NESTED:
            out.append({**item, "inbound_nodes": nodes, H5_GROUP: group})
            continue
        inner_used: dict[str, int] = {}
        previous = None
        for inner in item["config"]["layers"]:
            if inner.get("class_name") == "InputLayer":
                continue
            name = inner["config"]["name"]
            reads = nodes if previous is None else [{"args": [_tensor(previous)], "kwargs": {}}]
            inner_group = _counter_name(inner_used, inner["class_name"], f"{group}/layers/")
            out.append({**inner, "name": name, "inbound_nodes": reads, H5_GROUP: inner_group})
            previous = name
        if previous is not None:
            last[item["name"]] = previous
    return out


def _tensor(name: str) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}}


def _vars(h5: Any, group: str) -> tuple[tuple[tuple[int, ...], ...], tuple[str, ...]]:
    node = h5.get(f"{group}/vars")
    if node is None:
        return (), ()
    keys = sorted(node, key=int)
    return tuple(tuple(node[k].shape) for k in keys), tuple(f"{group}/vars/{k}" for k in keys)


# --- .h5 files ---------------------------------------------------------------------------------


def _legacy_layers(h5: Any) -> Iterator[SourceLayer]:
    """Keras 2's HDF5 format (keras.applications' ImageNet files): ordered by attributes."""
    root = h5.get("model_weights", h5)
    for raw in root.attrs["layer_names"]:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        group = root[name]
        names = [
            w.decode() if isinstance(w, bytes) else str(w) for w in group.attrs["weight_names"]
        ]
        if not names:
            continue
        shapes = tuple(tuple(group[w].shape) for w in names)
        prefix = root.name.strip("/")
        paths = tuple(f"{prefix}/{name}/{w}".lstrip("/") for w in names)
        yield SourceLayer(name, "", _guess_kind(names, shapes), shapes, paths)


def _guess_kind(names: list[str], shapes: tuple) -> str:
    """The kind of a legacy HDF5 layer from its weight names (the file has no classes)."""
    last = [re.sub(r":\d+$", "", n).rsplit("/", 1)[-1] for n in names]
    if "depthwise_kernel" in last:
        return "sepconv" if "pointwise_kernel" in last else "dwconv"
    if "moving_mean" in last:
        return "bn"
    if "kernel" in last:
        return "dense" if len(shapes[last.index("kernel")]) == 2 else "conv"
    if last == ["gamma", "beta"]:
        return "layernorm"
    if last == ["mean", "variance", "count"]:  # an adapted Normalization (EfficientNet's stem)
        return "normalize"
    return "unknown"


def h5_index(path: Path, label: str) -> WeightIndex:
    """The index of a ``.weights.h5`` file (Keras 3) or a legacy Keras 2 HDF5 weight file."""
    import h5py

    index = WeightIndex(label, path, None, order=KERAS)
    try:
        with h5py.File(path, "r") as h5:
            if "layer_names" in h5.attrs or "model_weights" in h5:
                index.layers.extend(_legacy_layers(h5))
                return index
            # Keras 3's .weights.h5 keys layers by class and counter (conv2d_7): no names, no
            # order, so nothing to match by.
            raise RunError(
                f"init: {path} is a Keras 3 .weights.h5 file, which keeps no layer names",
                hint="give the .keras file of the model (model.save('file.keras')) or its run folder",
            )
    except OSError as exc:
        raise RunError(f"init: cannot read {path} as HDF5 ({exc})") from None
    return index


# --- keras:Name ---------------------------------------------------------------------------------


def application_index(model: str, input_shape: tuple = (224, 224, 3)) -> WeightIndex:
    """The ImageNet weights of a keras.applications model, through Keras' own download."""
    from ..spec.backbone_info import applications

    apps = applications()
    if model not in apps:
        from ..errors import did_you_mean

        raise RunError(
            f"init: unknown keras.applications model '{model}'",
            hint=did_you_mean(model, list(apps)) or "see keras.applications",
        )
    from ..build.backbone import keras_home, weight_file

    name = weight_file(model, input_shape)
    cached = keras_home() / "models" / name
    if not cached.is_file():
        fetch_application(model, input_shape)
    return h5_index(cached, f"keras:{model}")


def fetch_application(model: str, input_shape: tuple) -> None:
    """Download the ImageNet file by building the application with Keras (its own download);
    offline or failing, one line naming the file to copy in."""
    import socket

    from ..build.backbone import keras_home, weight_file
    from ..spec.backbone_info import applications

    entry = applications()[model]
    where = keras_home() / "models" / (weight_file(model, input_shape) or f"{model}.h5")
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3.0).close()
        import keras

        cls = getattr(keras.applications, entry["class"])
        cls(weights="imagenet", include_top=False, **entry.get("kwargs", {}))
        return
    except Exception as exc:  # noqa: BLE001 - keras' get_file raises a bare Exception
        problem = "offline" if isinstance(exc, OSError) else str(exc).splitlines()[0][:200]
    raise RunError(
        f"init: cannot get the ImageNet weights of {model} ({problem}); expected the file {where}",
        hint=f"copy {where.name} into {where.parent} (KERAS_HOME={keras_home()}), "
        "or give init: from: a .keras file",
    )
