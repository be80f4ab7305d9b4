"""Keras layers for math that Keras lacks (L2-norm pooling, LRN, layer scale, drop-path).

Registered serializable under the ``cnnspec`` package so saved models reload in safe mode
without custom-object scopes (importing :mod:`cnnspec.build` registers them).
"""

from __future__ import annotations

import math

import keras
from keras import ops


def _tuple(value, rank: int) -> tuple[int, ...]:
    value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    return value * rank if len(value) == 1 else value


@keras.saving.register_keras_serializable(package="cnnspec")
class L2Pooling(keras.layers.Layer):
    """sqrt(sum of squares) over each window: the lecture's L2-norm pooling (1D/2D/3D).

    Zero padding does not change a sum of squares, so 'same' pads explicitly with zeros and
    then takes a valid average pool times the window size.
    """

    def __init__(self, pool_size, strides=None, padding="valid", rank=2, **kwargs):
        super().__init__(**kwargs)
        self.rank = int(rank)
        self.pool_size = _tuple(pool_size, self.rank)
        self.strides = _tuple(strides if strides is not None else pool_size, self.rank)
        self.padding = padding

    def _pads(self, spatial):
        pads = []
        for n, k, s in zip(spatial, self.pool_size, self.strides, strict=True):
            out = math.ceil(n / s)
            total = max((out - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return pads

    def call(self, inputs):
        x = ops.square(inputs)
        if self.padding == "same":
            spatial = inputs.shape[1:-1]
            x = ops.pad(x, [(0, 0), *self._pads(spatial), (0, 0)])
        x = ops.average_pool(x, self.pool_size, self.strides, padding="valid")
        return ops.sqrt(x * float(math.prod(self.pool_size)) + 1e-12)

    def compute_output_shape(self, input_shape):
        out = []
        for n, k, s in zip(input_shape[1:-1], self.pool_size, self.strides, strict=True):
            out.append(math.ceil(n / s) if self.padding == "same" else (n - k) // s + 1)
        return (input_shape[0], *out, input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
            "rank": self.rank,
        }


@keras.saving.register_keras_serializable(package="cnnspec")
class GlobalL2Pooling(keras.layers.Layer):
    """sqrt(sum of squares) over all spatial positions."""

    def __init__(self, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = bool(keepdims)

    def call(self, inputs):
        axes = tuple(range(1, len(inputs.shape) - 1))
        return ops.sqrt(ops.sum(ops.square(inputs), axis=axes, keepdims=self.keepdims) + 1e-12)

    def compute_output_shape(self, input_shape):
        if self.keepdims:
            return (input_shape[0], *([1] * (len(input_shape) - 2)), input_shape[-1])
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


@keras.saving.register_keras_serializable(package="cnnspec")
class LocalResponseNormalization(keras.layers.Layer):
    """AlexNet's LRN: x / (k + alpha * sum of x^2 over ``size`` neighbouring channels)^beta."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0, **kwargs):
        super().__init__(**kwargs)
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def call(self, inputs):
        channels = inputs.shape[-1]
        sq = ops.square(inputs)
        rank = len(inputs.shape)
        pad = [(0, 0)] * (rank - 1) + [(self.size // 2, (self.size - 1) // 2)]
        sq = ops.pad(sq, pad)
        total = sq[..., 0:channels]
        for i in range(1, self.size):
            total = total + sq[..., i : i + channels]
        return inputs / ops.power(self.k + self.alpha * total, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "alpha": self.alpha,
            "beta": self.beta,
            "k": self.k,
        }


@keras.saving.register_keras_serializable(package="cnnspec")
class LayerScale(keras.layers.Layer):
    """x * gamma with a learnable per-channel gamma initialised to ``init`` (ConvNeXt)."""

    def __init__(self, init=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.init = float(init)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init),
            trainable=True,
        )

    def call(self, inputs):
        return inputs * ops.cast(self.gamma, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "init": self.init}


@keras.saving.register_keras_serializable(package="cnnspec")
class DropPath(keras.layers.Layer):
    """Stochastic depth: in training, zero a whole sample with probability ``rate`` and scale
    the kept ones by 1 / (1 - rate); the identity at inference."""

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        mask = ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator))
        return inputs / keep * ops.cast(mask, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="cnnspec")
class Normalization(keras.layers.Normalization):
    """keras.layers.Normalization whose statistics enter the graph inside ``call``.

    Keras' layer computes its broadcast mean and variance once, eagerly, outside the traced
    function; tf2onnx turns such captured tensors into graph inputs that nothing feeds, so an
    ONNX export cannot run. Here the weights (``adapt_mean``, ``adapt_variance``) are read in
    ``call`` and constructor constants become numpy arrays (Const ops). Same weights, same order,
    same formula (``(x - mean) / maximum(sqrt(variance), epsilon)``): outputs are bit-identical.
    """

    def build(self, input_shape):
        super().build(input_shape)
        if input_shape is None:
            return
        ndim = len(input_shape)
        keep = {a % ndim for a in self.axis}
        self._stats_shape = tuple(input_shape[d] if d in keep else 1 for d in range(ndim))
        # Constructor constants: the values Keras broadcast and cast in build, kept as numpy.
        self._constants = (
            None
            if self.input_mean is None
            else (ops.convert_to_numpy(self.mean), ops.convert_to_numpy(self.variance))
        )

    def call(self, inputs):
        if not self.built:
            raise ValueError("You must call `.build(input_shape)` on the layer before using it.")
        np_ = self.backend.numpy
        inputs = self.backend.core.convert_to_tensor(inputs, dtype=self.compute_dtype)
        if self._constants is not None:
            mean, variance = (self.backend.core.convert_to_tensor(c) for c in self._constants)
        else:
            mean, variance = (
                np_.reshape(self.backend.core.convert_to_tensor(w), self._stats_shape)
                for w in (self.adapt_mean, self.adapt_variance)
            )
            mean = self.backend.core.cast(mean, self.compute_dtype)
            variance = self.backend.core.cast(variance, self.compute_dtype)
        deviation = np_.maximum(np_.sqrt(variance), keras.config.epsilon())
        if self.invert:
            return np_.add(mean, np_.multiply(inputs, deviation))
        return np_.divide(np_.subtract(inputs, mean), deviation)
