"""The `train:` recipe: how a spec is trained (pure Pydantic, no TensorFlow).

Choices with parameters are single-key mappings whose key names the kind::

    optimizer: {sgd: {lr: 0.01, momentum: 0.9, nesterov: true}}
    optimizer: adam                     # shorthand for {adam: {}}
    schedule: {cosine: {warmup_epochs: 2}}
    loss: {categorical_crossentropy: {label_smoothing: 0.1}}
    augment: [flip_horizontal, {rotate: 0.1}]

Each choice is a model with one optional field per kind and a rule that exactly one is set, so
a typo (``sgdd``) is reported by Pydantic at its exact location (``train.optimizer.sgdd``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, PrivateAttr, StrictBool, field_validator, model_validator

from .base import StrictModel
from .track import TrackSpec
from .types import FieldValueError

Auto = Literal["auto", "on", "off"]


class OneOf(StrictModel):
    """A choice written as a single-key mapping ``{kind: {params}}`` or a bare ``kind``."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `adam` means `{adam: {}}`; `{adam: null}` too.
        if isinstance(value, str):
            value = {value: {}}
        if isinstance(value, dict):
            value = {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> OneOf:
        chosen = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(chosen) != 1:
            kinds = ", ".join(type(self).model_fields)
            raise ValueError(
                f"choose exactly one of {kinds}; received {len(chosen)} ({', '.join(chosen) or 'none'})"
            )
        return self

    @classmethod
    def shorthands(cls) -> list[str]:
        """Kinds that may be written as a bare name (those whose parameters all have defaults)."""
        return list(cls.model_fields)

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        # The JSON schema (editor completion) shows the bare-name shorthand too.
        schema = handler(core_schema)
        return {"anyOf": [{"type": "string", "enum": cls.shorthands()}, schema]}

    @property
    def kind(self) -> str:
        """The chosen kind (the mapping's key)."""
        return next(n for n in type(self).model_fields if getattr(self, n) is not None)

    @property
    def params(self) -> Any:
        """The chosen kind's parameters."""
        return getattr(self, self.kind)


# --- optimizers -------------------------------------------------------------------------------


class _OptimizerParams(StrictModel):
    lr: float = Field(0.001, gt=0, description="Base learning rate (scaled by the schedule).")
    weight_decay: float | None = Field(None, ge=0)
    clipnorm: float | None = Field(None, gt=0)


class SGDSpec(_OptimizerParams):
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False


class AdamSpec(_OptimizerParams):
    beta_1: float = Field(0.9, ge=0, lt=1)
    beta_2: float = Field(0.999, ge=0, lt=1)
    epsilon: float = Field(1e-7, gt=0)
    amsgrad: bool = False


class AdamWSpec(AdamSpec):
    weight_decay: float | None = Field(0.004, ge=0)


class RMSpropSpec(_OptimizerParams):
    rho: float = Field(0.9, ge=0, lt=1)
    momentum: float = Field(0.0, ge=0, lt=1)
    epsilon: float = Field(1e-7, gt=0)


class OptimizerSpec(OneOf):
    """``{sgd|adam|adamw|rmsprop: {...}}``."""

    sgd: SGDSpec | None = None
    adam: AdamSpec | None = None
    adamw: AdamWSpec | None = None
    rmsprop: RMSpropSpec | None = None


# --- learning-rate schedules ---------------------------------------------------------------------


class ConstantSpec(StrictModel):
    """The base learning rate throughout."""


class StepSpec(StrictModel):
    """Multiply the learning rate by ``factor`` every ``every`` epochs."""

    every: int = Field(10, ge=1)
    factor: float = Field(0.1, gt=0, le=1)


class PiecewiseSpec(StrictModel):
    """``factors[i]`` × base lr from epoch ``boundaries[i-1]`` on (``factors[0]`` before)."""

    boundaries: list[int] = Field(min_length=1)
    factors: list[float] = Field(min_length=2)

    @model_validator(mode="after")
    def _lengths(self) -> PiecewiseSpec:
        if len(self.factors) != len(self.boundaries) + 1:
            raise ValueError(
                f"factors needs one more entry than boundaries; received "
                f"{len(self.boundaries)} boundaries and {len(self.factors)} factors"
            )
        b = self.boundaries
        if b[0] < 1 or any(later <= earlier for earlier, later in zip(b, b[1:], strict=False)):
            raise ValueError(
                f"boundaries must be increasing epochs ≥ 1; received {self.boundaries}"
            )
        return self


class ExponentialSpec(StrictModel):
    """lr × decay_rate^(epoch / decay_epochs), smoothly per step."""

    decay_rate: float = Field(0.9, gt=0, le=1)
    decay_epochs: float = Field(1.0, gt=0)


class CosineSpec(StrictModel):
    """Linear warm-up from 0, then cosine decay to ``min_factor`` × lr at the last epoch."""

    warmup_epochs: int = Field(0, ge=0)
    min_factor: float = Field(0.0, ge=0, le=1)


class PlateauSpec(StrictModel):
    """Multiply the lr by ``factor`` when ``monitor`` stops improving for ``patience`` epochs."""

    monitor: str = "val_loss"
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(3, ge=0)
    min_delta: float = Field(1e-4, ge=0, description="smaller changes do not count as improvement")
    min_lr: float = Field(0.0, ge=0)


class ScheduleSpec(OneOf):
    """``{constant|step|piecewise|exponential|cosine|reduce_on_plateau: {...}}``."""

    constant: ConstantSpec | None = None
    step: StepSpec | None = None
    piecewise: PiecewiseSpec | None = None
    exponential: ExponentialSpec | None = None
    cosine: CosineSpec | None = None
    reduce_on_plateau: PlateauSpec | None = None


# --- losses ------------------------------------------------------------------------------------


class CrossentropySpec(StrictModel):
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class SparseCrossentropySpec(StrictModel):
    """Integer labels; no label smoothing."""


class FocalSpec(StrictModel):
    gamma: float = Field(2.0, ge=0)
    alpha: float = Field(0.25, gt=0, le=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class BinaryFocalSpec(StrictModel):
    """Binary focal crossentropy, per label (multilabel)."""

    gamma: float = Field(2.0, ge=0)
    alpha: float = Field(0.25, gt=0, le=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class PlainLossSpec(StrictModel):
    """A loss without parameters (mse, mae)."""


class HuberSpec(StrictModel):
    delta: float = Field(1.0, gt=0)


class LossSpec(OneOf):
    """The loss, by name; which names fit is the output's task's (``cnnspec.tasks``):
    classification ``categorical_crossentropy`` | ``sparse_categorical_crossentropy`` |
    ``categorical_focal_crossentropy``; multilabel ``binary_crossentropy`` | ``focal``;
    regression ``mse`` | ``mae`` | ``huber``; segmentation ``sparse_categorical_crossentropy`` |
    ``dice`` | ``focal`` | ``dice_ce``."""

    categorical_crossentropy: CrossentropySpec | None = None
    sparse_categorical_crossentropy: SparseCrossentropySpec | None = None
    categorical_focal_crossentropy: FocalSpec | None = None
    binary_crossentropy: CrossentropySpec | None = None
    focal: BinaryFocalSpec | None = None
    mse: PlainLossSpec | None = None
    mae: PlainLossSpec | None = None
    huber: HuberSpec | None = None
    dice: PlainLossSpec | None = None
    dice_ce: PlainLossSpec | None = None

    @property
    def one_hot(self) -> bool:
        """Whether the loss wants one-hot labels (the pipeline yields integer labels)."""
        return self.kind != "sparse_categorical_crossentropy"


# --- augmentation ------------------------------------------------------------------------------


class RandomResizedCropSpec(StrictModel):
    """Inception-style crop: a random window of ``scale`` × the area and ``ratio`` aspect
    (width / height, sampled log-uniformly), resized to the input size."""

    scale: list[float] = Field([0.08, 1.0], description="[min, max] area fraction")
    ratio: list[float] = Field([3 / 4, 4 / 3], description="[min, max] width / height")

    @model_validator(mode="after")
    def _ranges(self) -> RandomResizedCropSpec:
        for name, low, high in (("scale", 0, 1), ("ratio", 0.1, 10)):
            value = getattr(self, name)
            if len(value) != 2 or not (low < value[0] <= value[1] <= high):
                raise FieldValueError(
                    name,
                    f"must be [min, max] with {low} < min <= max <= {high}; received {value}",
                )
        return self


class MixUpSpec(StrictModel):
    """Keras MixUp: blend each image and its one-hot label with another of the batch, with a
    weight drawn from Beta(alpha, alpha)."""

    alpha: float = Field(0.2, gt=0, le=10)


class CutMixSpec(StrictModel):
    """Keras CutMix: paste a box from another image of the batch; labels mix by box area.
    ``factor``: the Beta distribution's parameter for the box's area."""

    factor: float = Field(1.0, gt=0, le=10)


class RandAugmentSpec(StrictModel):
    """Keras RandAugment: ``num_ops`` random operations per image at strength ``factor``."""

    num_ops: int = Field(2, ge=1, le=10)
    factor: float = Field(0.5, gt=0, le=1)


class AugmentSpec(OneOf):
    """One random augmentation, applied to training batches only.

    ``flip_horizontal`` / ``flip_vertical`` take no value; rotate (fraction of a full turn),
    translate / zoom (fraction of the size), shear (shear coefficient) and contrast /
    brightness (fraction of the range) take a strength in (0, 1]. The geometric ones and
    ``random_resized_crop`` are composed into one transform per image (one resampling).
    ``mixup`` / ``cutmix`` mix labels too: they need a one-hot (categorical) loss.
    """

    flip_horizontal: dict[str, Any] | None = None
    flip_vertical: dict[str, Any] | None = None
    rotate: float | None = Field(None, gt=0, le=1)
    translate: float | None = Field(None, gt=0, le=1)
    zoom: float | None = Field(None, gt=0, le=1)
    shear: float | None = Field(None, gt=0, le=1)
    contrast: float | None = Field(None, gt=0, le=1)
    brightness: float | None = Field(None, gt=0, le=1)
    random_resized_crop: RandomResizedCropSpec | None = None
    mixup: MixUpSpec | None = None
    cutmix: CutMixSpec | None = None
    randaugment: RandAugmentSpec | None = None

    @classmethod
    def shorthands(cls) -> list[str]:
        return [
            "flip_horizontal",
            "flip_vertical",
            "random_resized_crop",
            "mixup",
            "cutmix",
            "randaugment",
        ]

    @field_validator("flip_horizontal", "flip_vertical")
    @classmethod
    def _no_params(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            raise ValueError(f"takes no parameters; received {value}")
        return value


# --- the rest ----------------------------------------------------------------------------------


class EarlyStoppingSpec(StrictModel):
    monitor: str = "val_loss"
    patience: int = Field(5, ge=0)
    min_delta: float = Field(0.0, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"
    restore_best_weights: bool = True


class TrainSpec(StrictModel):
    """How to train a spec: data, recipe, and how to use the hardware."""

    data: str = Field(
        "digits",
        min_length=1,
        description="a data source: a built-in name (digits, mnist, ...), an image folder, a CSV manifest or an .npz; every kind: cnnspec.data.accepted_sources()",
    )
    validation_split: float = Field(0.15, ge=0, lt=1)
    test_split: float = Field(0.15, ge=0, lt=1)
    cache: Literal["auto", "memory", "disk", "none"] | StrictBool = Field(
        "auto",
        description="where decoded images (uint8 at the input size) are kept between epochs: "
        "auto = memory if they fit a quarter of the machine's memory (CNNSPEC_CACHE_BUDGET), "
        "else disk ($CNNSPEC_CACHE or ~/.cache/cnnspec), else none (stream the files); "
        "true = auto, false = none",
    )
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(10, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    optimizer: OptimizerSpec = Field(default_factory=lambda: OptimizerSpec(adam=AdamSpec()))
    schedule: ScheduleSpec = Field(default_factory=lambda: ScheduleSpec(constant=ConstantSpec()))
    loss: LossSpec = Field(
        default_factory=lambda: LossSpec(categorical_crossentropy=CrossentropySpec())
    )
    metrics: list[str] = Field(
        default_factory=lambda: ["accuracy"],
        description="the main output's metrics (default: its task's; classification: accuracy)",
    )
    targets: list[str] | None = Field(
        None,
        min_length=1,
        description="the label columns the main output learns (regression: numeric columns "
        "of a CSV manifest, e.g. [count]; default: every column the data has)",
    )
    threshold: float = Field(
        0.5, gt=0, lt=1, description="multilabel: a label is predicted above this probability"
    )
    augment: list[AugmentSpec] = Field(default_factory=list)
    early_stopping: EarlyStoppingSpec | None = None
    seed: int = Field(42, ge=0)
    deterministic: Auto = Field(
        "auto", description="op determinism: auto = on without a GPU (bit-identical reruns)"
    )
    mixed_precision: Auto = "auto"
    jit_compile: Auto = "auto"
    distribute: Literal["auto", "none", "mirrored", "multi_worker"] = "auto"
    track: TrackSpec | None = Field(
        None, description="log the run to a tracking server: {mlflow: {uri: ..., experiment: ...}}"
    )

    @field_validator("cache")
    @classmethod
    def _cache(cls, value: str | bool) -> str:
        # true/false from older recipes: true = cache where it fits (auto), false = stream.
        if isinstance(value, bool):
            return "auto" if value else "none"
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        from ..tasks.registry import metric_known, metrics_text

        for name in value:
            if not metric_known(name):
                raise ValueError(f"unknown metric '{name}'; use {metrics_text()}")
        if len(set(value)) != len(value):
            raise ValueError(f"metrics are repeated: {value}")
        return value

    @model_validator(mode="after")
    def _splits(self) -> TrainSpec:
        if self.validation_split + self.test_split >= 0.9:
            raise ValueError(
                "validation_split + test_split leaves under 10% for training; received "
                f"{self.validation_split} + {self.test_split}"
            )
        return self

    @model_validator(mode="after")
    def _mixing_needs_one_hot(self) -> TrainSpec:
        # MixUp/CutMix turn labels into soft labels, which a sparse (integer) loss cannot take.
        mixing = [a.kind for a in self.augment if a.kind in ("mixup", "cutmix")]
        if mixing and not self.loss.one_hot:
            raise FieldValueError(
                "loss",
                f"augment {mixing[0]} mixes labels into soft labels, which "
                f"{self.loss.kind} cannot take; received loss={self.loss.kind}. "
                "Hint: use loss: categorical_crossentropy",
            )
        return self

    @property
    def top_k(self) -> list[int]:
        """The k of every topK metric."""
        return [int(m[3:]) for m in self.metrics if re.match(r"^top[0-9]+$", m)]

    _monitor_modes: dict[str, str] = PrivateAttr(default_factory=dict)

    def set_monitor_modes(self, modes: dict[str, str]) -> None:
        """Which way each name the run logs is better (``spec.monitors.logged``: the loader
        records it, from each output's task)."""
        self._monitor_modes = dict(modes)

    def monitor_mode(self, name: str, mode: str = "auto") -> str:
        """``mode`` unless auto: then min or max as the monitored metric's task says (a loss
        is minimised; a name the loader did not record: min for losses, max for the rest)."""
        if mode != "auto":
            return mode
        found = self._monitor_modes.get(name)
        return found or ("min" if name.endswith("loss") else "max")

    def monitors(self) -> dict[tuple[str, ...], str]:
        """Every metric name the recipe monitors, by its path in ``train:``."""
        found = {}
        if self.early_stopping is not None:
            found[("early_stopping", "monitor")] = self.early_stopping.monitor
        if self.schedule.reduce_on_plateau is not None:
            found[("schedule", "reduce_on_plateau", "monitor")] = (
                self.schedule.reduce_on_plateau.monitor
            )
        return found
