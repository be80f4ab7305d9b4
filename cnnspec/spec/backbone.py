"""`backbone:` — a pretrained network under the spec's layers (transfer learning).

A BackboneSpec is the layer-like node the graph compiler puts between the input and
``layers:``. Pure Python (no TensorFlow): the shapes, parameter counts and layer names of a
backbone come from :mod:`.backbone_info` (the keras.applications table, or a ``.keras`` file's
own config and weight shapes).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, ValidationInfo, field_validator, model_validator

from ..errors import did_you_mean
from ..shapes import Shape, ShapeError, fmt
from .backbone_info import (
    PREPROCESS_MODES,
    BackboneInfo,
    BackboneLayer,
    application_info,
    applications,
    is_application,
    keras_file_info,
)
from .base import StrictModel
from .layers import LayerSpec

__all__ = [
    "PREPROCESS_MODES",
    "BackboneInfo",
    "BackboneLayer",
    "BackboneSpec",
    "FineTuneSpec",
    "application_info",
    "applications",
    "is_application",
    "keras_file_info",
]

# --- the spec ---------------------------------------------------------------------------------


class FineTuneSpec(StrictModel):
    """Phase 2: unfreeze the backbone from a layer, its top N layers, or all of it."""

    from_: str | None = Field(
        None, alias="from", description="unfreeze this layer and every later one"
    )
    top: PositiveInt | None = Field(None, description="unfreeze the backbone's last N layers")
    all: bool = Field(False, description="unfreeze the whole backbone")
    lr: float = Field(1e-5, gt=0, description="learning rate of phase 2 (lower than phase 1's)")
    epochs: PositiveInt = Field(5, description="epochs of phase 2")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"all": True} if value == "all" else value

    @model_validator(mode="after")
    def _one_choice(self) -> FineTuneSpec:
        chosen = [
            k for k, v in (("from", self.from_), ("top", self.top), ("all", self.all or None)) if v
        ]
        if len(chosen) != 1:
            raise ValueError(
                "fine_tune needs exactly one of from: LAYER, top: N or all: true; received "
                f"{', '.join(chosen) or 'none'}"
            )
        return self

    def describe(self) -> str:
        what = f"from {self.from_}" if self.from_ else (f"top {self.top}" if self.top else "all")
        return f"fine_tune {what} lr={self.lr:g} epochs={self.epochs}"


def _is_path(model: str) -> bool:
    return model.endswith(".keras")


class BackboneSpec(LayerSpec):
    """A pretrained model (a keras.applications name or a .keras file) used as a feature extractor."""

    kind: Literal["backbone"] = "backbone"
    model: str = Field(
        description="a keras.applications name (MobileNetV2, ResNet50, ...) or a .keras file"
    )
    weights: str | None = Field(
        None,
        description="imagenet | none | path/to/file.weights.h5 (default: imagenet for "
        "keras.applications, the file's own weights for a .keras model)",
    )
    cut_at: str | None = Field(
        None, description="take the features at this layer (default: drop the top)"
    )
    pooling: Literal["avg", "max"] | None = Field(
        None, description="global pooling of the features"
    )
    trainable: bool = Field(
        False, description="train the backbone in phase 1 (BatchNorm stays frozen)"
    )
    fine_tune: FineTuneSpec | None = Field(None, description="phase 2: unfreeze and continue")

    positional: ClassVar = ("model",)

    # --- validation (names are checked here, shapes in output_shape) -----------------------------
    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if _is_path(value):
            if not Path(value).is_file():
                raise ValueError(
                    f"backbone file not found, received model={value!r} (paths are relative to the "
                    "current directory); train a spec first (cnnspec train) and point at its model.keras"
                )
            keras_file_info(value)  # the archive's limits and config, blamed on model: (ValueError)
            return value
        table = applications()
        if value not in table:
            lower = {k.lower(): k for k in table}
            guess = lower.get(value.lower()) or did_you_mean(value, list(table)).removeprefix(
                "did you mean "
            ).strip("'?")
            hint = f"; did you mean '{guess}'?" if guess else f"; known: {', '.join(sorted(table))}"
            raise ValueError(
                f"unknown backbone, received model={value!r}: use a keras.applications name or a "
                f".keras file{hint}"
            )
        return value

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value in ("imagenet", "none"):
            model = info.data.get("model")
            if value == "imagenet" and model and _is_path(model):
                raise ValueError(
                    "a .keras backbone carries its own weights, received weights='imagenet'; "
                    "leave weights out, or use none (random initialisation) or a .weights.h5 file"
                )
            return value
        if not value.endswith(".h5"):
            raise ValueError(
                f"weights must be imagenet, none or a .weights.h5 file, received weights={value!r}"
            )
        if not Path(value).is_file():
            raise ValueError(f"weights file not found, received weights={value!r}")
        return value

    @field_validator("cut_at")
    @classmethod
    def _cut_at(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("model"):
            _check_name(info.data["model"], value, "cut_at")
        return value

    @field_validator("fine_tune")
    @classmethod
    def _fine_tune(cls, value: FineTuneSpec | None, info: ValidationInfo) -> FineTuneSpec | None:
        if value is not None and value.from_ and info.data.get("model"):
            _check_name(info.data["model"], value.from_, "fine_tune.from")
        return value

    @model_validator(mode="after")
    def _locate(self) -> BackboneSpec:
        # Shape problems (found later by the graph compiler) point at the backbone: mapping.
        if self.src is None:
            self.__dict__["src"] = (("backbone",), "backbone")
        return self

    # --- derived -------------------------------------------------------------------------------
    @property
    def is_application(self) -> bool:
        return not _is_path(self.model)

    @property
    def weights_source(self) -> str:
        """imagenet, none, a .weights.h5 path, or 'file' (a .keras model's own weights)."""
        if self.weights is not None:
            return self.weights
        return "imagenet" if self.is_application else "file"

    def info(self, input_shape: Shape) -> BackboneInfo:
        """The backbone's layers for ``input_shape``; ShapeError when it cannot take it."""
        if not self.is_application:
            try:
                info = keras_file_info(self.model)
            except (OSError, ValueError) as exc:
                raise ShapeError(
                    str(exc), "point model: at a model.keras from a cnnspec run"
                ) from None
            if tuple(info.input_shape) != tuple(input_shape):
                raise ShapeError(
                    f"the backbone {self.model} takes {fmt(info.input_shape)} images, received "
                    f"input {fmt(input_shape)}",
                    f"set input: {list(info.input_shape)}",
                )
            return info
        entry = applications()[self.model]
        if len(input_shape) != 3:
            raise ShapeError(
                f"{self.model} takes images [H, W, C], received input {fmt(input_shape)}"
            )
        h, w, c = input_shape
        need = entry["min_size"]
        if min(h, w) < need:
            raise ShapeError(
                f"{self.model} needs images of at least {need}x{need}, received input {fmt(input_shape)}",
                f"use input: [{max(h, need)}, {max(w, need)}, {c}] (default {fmt(tuple(entry['default_input']))})",
            )
        if self.weights_source == "imagenet" and c != 3:
            raise ShapeError(
                f"ImageNet weights need 3 channels, received input {fmt(input_shape)}",
                "use input: [H, W, 3] (grayscale data is converted), or weights: none",
            )
        if self.weights_source == "imagenet" and entry.get("fixed_input_for_imagenet"):
            default = tuple(entry["default_input"])
            if tuple(input_shape) != default:
                raise ShapeError(
                    f"{self.model}'s ImageNet weights need input {fmt(default)}, received {fmt(input_shape)}",
                    f"set input: {list(default)} or use weights: none",
                )
        return application_info(self.model, tuple(input_shape))

    def cut(self, input_shape: Shape) -> str:
        """The layer whose output the backbone gives (before pooling)."""
        return self.cut_at or self.info(input_shape).default_cut

    def kept_layers(self, input_shape: Shape) -> list[BackboneLayer]:
        info = self.info(input_shape)
        return info.ancestors(self.cut(input_shape))

    def unfrozen_in_phase2(self, input_shape: Shape) -> list[str]:
        """Names of the backbone layers that phase 2 unfreezes (in order)."""
        ft = self.fine_tune
        names = [layer.name for layer in self.kept_layers(input_shape)]
        if ft is None:
            return []
        if ft.all:
            return names
        if ft.top:
            return names[-ft.top :]
        return names[names.index(ft.from_) :]

    # --- shape rules ---------------------------------------------------------------------------
    def output_shape(self, inputs: list[Shape]) -> Shape:
        info = self.info(inputs[0])
        cut = self.cut(inputs[0])
        layer = info.by_name[cut]
        if self.fine_tune and self.fine_tune.from_:
            kept = {n.name for n in info.ancestors(cut)}
            if self.fine_tune.from_ not in kept:
                raise ShapeError(
                    f"fine_tune.from: '{self.fine_tune.from_}' is not part of the backbone cut at "
                    f"'{cut}'",
                    "choose a layer before cut_at",
                )
        if layer.shape is None:
            raise ShapeError(
                f"cannot tell the output shape of the backbone layer '{cut}'",
                "cut at an earlier layer (cut_at:)",
            )
        shape = layer.shape
        if self.pooling:
            if len(shape) < 2:
                raise ShapeError(
                    f"pooling: {self.pooling} needs a feature map, but '{cut}' gives a vector of "
                    f"{shape[0]}",
                    "remove pooling: or cut at an earlier layer",
                )
            shape = (shape[-1],)
        return shape

    def params(self, inputs: list[Shape]) -> int:
        return sum(layer.params for layer in self.kept_layers(inputs[0]))

    def non_trainable(self, inputs: list[Shape]) -> int:
        kept = self.kept_layers(inputs[0])
        if not self.trainable:
            return sum(layer.params for layer in kept)
        return sum(layer.fixed for layer in kept)

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        """About the multiply-accumulates of the kept layers: each weight once per output position.

        Exact for bias-free convs and depthwise convs; a bias or a normalisation's scale counts
        one more per position (well under 1 % of a CNN's total). BatchNorm statistics are not
        weights of a product and are left out.
        """
        total = 0
        for layer in self.kept_layers(inputs[0]):
            weights = layer.params - layer.fixed
            if weights > 0 and layer.shape is not None:
                total += weights * math.prod(layer.shape[:-1])
        return total

    def notation(self, rank: int = 1) -> str:
        parts = [self.model]
        if self.weights_source != "file":
            parts.append(f"weights={self.weights_source}")
        if self.cut_at:
            parts.append(f"cut_at={self.cut_at}")
        if self.pooling:
            parts.append(f"pooling={self.pooling}")
        parts.append("trainable" if self.trainable else "frozen")
        if self.fine_tune:
            parts.append(self.fine_tune.describe())
        return ", ".join(parts)


def _check_name(model: str, name: str, field: str) -> None:
    """A layer name of the backbone, with 'did you mean' when it is not one."""
    if _is_path(model):
        if not Path(model).is_file():
            return  # reported on model:
        names = keras_file_info(model).names
    elif model in applications():
        names = [row[0] for row in applications()[model]["layers"]]
    else:
        return
    if name not in names:
        guess = did_you_mean(name, names)
        raise ValueError(
            f"{model} has no layer '{name}', received {field}={name!r}"
            + (f"; {guess}" if guess else f"; its last layers are {', '.join(names[-5:])}")
        )
