"""The backbone builder: a pretrained network as one nested Keras model named ``backbone``.

``backbone`` = [ImagenetPreprocess] -> the network up to ``cut_at`` -> [global pooling]. It is
called with ``training=False`` and its BatchNormalization layers are never trainable: in Keras 3
a non-trainable BatchNormalization always runs in inference mode, and the functional API passes
the outer ``training`` flag to nested models, so ``trainable=False`` on BN is what really keeps
its moving statistics fixed in both phases.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

from ..errors import RunError
from ..spec.backbone import BackboneSpec, applications
from .layers import apply

_MEAN = {"caffe": (103.939, 116.779, 123.68), "torch": (0.485, 0.456, 0.406)}
_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="cnnspec")
class ImagenetPreprocess(keras.layers.Layer):
    """keras.applications' ``preprocess_input`` as a layer (pixels in [0, 255] in).

    caffe: RGB->BGR, minus the ImageNet mean; tf: to [-1, 1]; torch: to [0, 1], then the
    ImageNet mean/std; none: unchanged (the network normalises inside).
    """

    def __init__(self, mode: str = "tf", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf", "torch", "none"):
            raise ValueError(f"unknown preprocessing mode, received mode={mode!r}")
        self.mode = mode

    def call(self, x):
        ops = keras.ops
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_MEAN["torch"], dtype=x.dtype)
            std = ops.convert_to_tensor(_STD, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            mean = ops.convert_to_tensor(_MEAN["caffe"], dtype=x.dtype)
            return ops.flip(x, axis=-1) - mean
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


def leaf_layers(model: Any) -> Iterator[Any]:
    """Every non-container layer of a model, descending into nested models, in order."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from leaf_layers(layer)
        else:
            yield layer


def is_batchnorm(layer: Any) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def set_trainable(backbone: Any, unfrozen: set[str] | None) -> None:
    """Freeze the backbone except the layers named in ``unfrozen`` (None: every layer).

    Names are the backbone's own layers (a nested block such as ConvNeXt's stem counts as one).
    BatchNormalization layers stay frozen (inference mode) whatever is unfrozen.
    """
    if unfrozen is not None and not unfrozen:
        backbone.trainable = False
        return
    backbone.trainable = True
    for layer in network_layers(backbone):
        layer.trainable = unfrozen is None or layer.name in unfrozen
    for layer in leaf_layers(backbone):
        if is_batchnorm(layer):
            layer.trainable = False


def network_layers(backbone: Any) -> list[Any]:
    """The backbone's own network layers (no input, preprocessing or pooling), in order."""
    name = backbone.name
    skip = {f"{name}_input", f"{name}_preprocess", f"{name}_pool"}
    return [layer for layer in backbone.layers if layer.name not in skip]


# --- weights ---------------------------------------------------------------------------------------


def keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def _online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def weight_file(model: str, input_shape: tuple) -> str:
    """The file keras.applications downloads for ImageNet weights (into $KERAS_HOME/models)."""
    entry = applications()[model]
    sizes = entry.get("weights_sizes")
    if not sizes:
        return entry.get("weights_file", "")
    rows = input_shape[0] if input_shape[0] in sizes else entry["default_input"][0]
    return entry["weights_file"].replace("{size}", str(rows))


def _imagenet_app(cls: Any, model: str, input_shape: tuple, **kwargs: Any) -> Any:
    """Build with ImageNet weights: cached, or downloaded with a time limit, else RunError."""
    expected = weight_file(model, input_shape)
    cached = expected and (keras_home() / "models" / expected).is_file()
    problem = ""
    if not cached and not _online():
        problem = "offline"
    else:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            return cls(weights="imagenet", **kwargs)
        except Exception as exc:  # noqa: BLE001 - keras' get_file raises a bare Exception
            text = str(exc)
            found = re.search(r"https?://\S+/([^/\s:]+\.h5)", text)
            if found:
                expected = found.group(1)
            problem = text.splitlines()[0][:200]
        finally:
            socket.setdefaulttimeout(previous)
    where = keras_home() / "models" / (expected or "<the model's weight file>.h5")
    raise RunError(
        f"cannot get the ImageNet weights of {model} ({problem}); expected the file {where}",
        hint=f"copy {where.name} into {where.parent} (KERAS_HOME={keras_home()}), "
        "or use weights: path/to/file.weights.h5, or weights: none",
    )


def _application(spec: BackboneSpec, name: str, input_shape: tuple) -> Any:
    entry = applications()[spec.model]
    cls = getattr(keras.applications, entry["class"])
    inp = keras.Input(shape=input_shape, name=f"{name}_input")
    x = ImagenetPreprocess(entry["preprocess"], name=f"{name}_preprocess")(inp)
    kwargs = {"include_top": False, "input_tensor": x, **entry.get("kwargs", {})}
    if spec.weights_source == "imagenet":
        app = _imagenet_app(cls, spec.model, input_shape, **kwargs)
    else:
        app = cls(weights=None, **kwargs)
        if spec.weights_source != "none":
            _load_weights_by_name(app, cls, spec.weights_source, input_shape, entry)
    # Layers by position: auto-generated names (rescaling_3) depend on what was built before.
    table = entry["layers"]
    layers = [layer for layer in app.layers if not isinstance(layer, keras.layers.InputLayer)]
    own = [layer for layer in layers if layer.name != f"{name}_preprocess"]
    names = [row[0] for row in table[1:]]
    if len(own) != len(names):
        raise RunError(
            f"keras.applications.{entry['class']} has {len(own)} layers but the cnnspec table "
            f"lists {len(names)}",
            hint="regenerate cnnspec/data_files/applications.json with tools/applications_table.py",
        )
    for layer, wanted in zip(own, names, strict=True):
        if layer.name != wanted:  # an auto-generated name (rescaling_3): the table's name
            layer.name = wanted
    cut = spec.cut(input_shape)
    out = own[names.index(cut)].output if cut != table[0][0] else x
    return inp, out


def _load_weights_by_name(app: Any, cls: Any, path: str, input_shape: tuple, entry: dict) -> None:
    """A .weights.h5 of the standalone keras.applications model, copied layer by layer."""
    standalone = cls(
        weights=None, include_top=False, input_shape=input_shape, **entry.get("kwargs", {})
    )
    try:
        standalone.load_weights(path)
    except Exception as exc:  # noqa: BLE001 - keras raises ValueError/KeyError/OSError here
        raise RunError(
            f"cannot load {path} into {entry['class']}(include_top=False): {exc}",
            hint="save it with model.save_weights() from the same keras.applications model",
        ) from None
    mine = [la for la in app.layers if la.weights]
    theirs = [la for la in standalone.layers if la.weights]
    for a, b in zip(mine, theirs, strict=True):
        a.set_weights(b.get_weights())


def _keras_file(spec: BackboneSpec, name: str, input_shape: tuple) -> Any:
    from ..modelio import load_keras_model

    src = load_keras_model(spec.model)  # config checked for code first, then safe mode
    if spec.weights_source == "none":
        src = keras.models.clone_model(src)  # same architecture, fresh initialisation
    elif spec.weights_source != "file":
        try:
            src.load_weights(spec.weights_source)
        except Exception as exc:  # noqa: BLE001
            raise RunError(f"cannot load {spec.weights_source} into {spec.model}: {exc}") from None
    cut = spec.cut(input_shape)
    return src.input, src.get_layer(cut).output


def backbone_model(spec: BackboneSpec, name: str, input_shape: tuple) -> Any:
    """The nested Keras model of a backbone spec, frozen as phase 1 wants it."""
    builder = _application if spec.is_application else _keras_file
    inp, out = builder(spec, name, tuple(input_shape))
    if spec.pooling:
        pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
        if len(out.shape) == 5:
            pool = {
                "avg": keras.layers.GlobalAveragePooling3D,
                "max": keras.layers.GlobalMaxPooling3D,
            }
        elif len(out.shape) == 3:
            pool = {
                "avg": keras.layers.GlobalAveragePooling1D,
                "max": keras.layers.GlobalMaxPooling1D,
            }
        out = pool[spec.pooling](name=f"{name}_pool")(out)
    model = keras.Model(inp, out, name=name)
    set_trainable(model, None if spec.trainable else set())
    return model


@apply.register
def _(spec: BackboneSpec, name, inputs, in_shapes, **kw):
    model = backbone_model(spec, name, tuple(in_shapes[0]))
    return model(inputs[0], training=False)
