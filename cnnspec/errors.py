"""The error types users see.

Every problem a user can cause is reported as one line:
``file:line:col: <path> <kind>: <what>, received <value>. Hint: <hint>``.
``SpecError`` is a bad spec (exit code 2); ``RunError`` is a run that failed (exit code 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Location:
    """Where a problem is: a file and a 1-based line/column (either may be unknown)."""

    file: str = "<spec>"
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        if self.col is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.col}"


@dataclass
class Problem:
    """One problem in a spec."""

    location: Location
    message: str
    hint: str = ""
    path: str = ""

    def __str__(self) -> str:
        where = f"{self.location}: " + (f"{self.path}: " if self.path else "")
        text = where + _sentence(self.message)
        if self.hint:
            text += " Hint: " + _sentence(self.hint)
        return text


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith((".", "?", "!")) else text + "."


class CnnspecError(Exception):
    """Base class of every error cnnspec reports to users."""

    exit_code = 1


@dataclass
class SpecError(CnnspecError):
    """A spec (or its overrides) is invalid. Carries every problem found, not only the first."""

    problems: list[Problem] = field(default_factory=list)
    exit_code = 2

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    @classmethod
    def single(
        cls, message: str, *, hint: str = "", location: Location | None = None, path: str = ""
    ) -> SpecError:
        return cls([Problem(location or Location(), message, hint, path)])


class RunError(CnnspecError):
    """A run (training, export, prediction, ...) failed for a reason the user can act on."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        text = _sentence(message)
        if hint:
            text += " Hint: " + _sentence(hint)
        super().__init__(text)


class SpecWarning(UserWarning):
    """A spec that works, but likely not as meant; the CLI prints it as its one located line."""


#: Keras/PyTorch argument names users type out of habit -> the notation's names.
SYNONYMS = {
    "strides": "s",
    "stride": "s",
    "padding": "p",
    "kernel_size": "K",
    "kernel": "K",
    "k": "K",
    "filters": "n_K",
    "n_k": "n_K",
    "out_channels": "n_K",
    "activation": "act",
    "dilation": "d",
    "dilation_rate": "d",
    "use_bias": "bias",
    "pool_size": "K",
    "depth_multiplier": "multiplier",
    "epsilon": "eps",
    "out_features": "units",
    "rate": "rate",
}


#: Names from other frameworks and papers -> the names cnnspec uses (layer kinds, activations).
#: Keys are normalised (lower case, no ``_``/``-``/spaces, no ``1d``/``2d``/``3d`` suffix); a
#: target is suggested only when it is one of the choices at hand, so a name that does not exist
#: (yet) is never suggested.
NAME_SYNONYMS = {
    **dict.fromkeys(
        ("gap", "globalaveragepooling", "globalavgpool", "globalaveragepool", "adaptiveavgpool"),
        "gavgpool",
    ),
    **dict.fromkeys(("gmp", "globalmaxpooling", "globalmaxpool", "adaptivemaxpool"), "gmaxpool"),
    **dict.fromkeys(("convolution", "convolutional"), "conv"),
    **dict.fromkeys(
        (
            "deconv",
            "deconvolution",
            "convtranspose",
            "convtransposed",
            "transposedconv",
            "transposeconv",
            "upconv",
            "fractionallystridedconv",
        ),
        "convT",
    ),
    **dict.fromkeys(("batchnorm", "batchnormalization", "norm", "bnorm"), "bn"),
    **dict.fromkeys(("layernormalization", "ln"), "layernorm"),
    **dict.fromkeys(("fc", "linear", "fullyconnected", "innerproduct", "ip", "mlp"), "dense"),
    **dict.fromkeys(("maxpooling", "pool", "pooling", "mp"), "maxpool"),
    **dict.fromkeys(("averagepooling", "avgpooling", "meanpool", "averagepool"), "avgpool"),
    **dict.fromkeys(("droppath", "stochasticdepth", "dropconnect", "droppaths"), "droppath"),
    **dict.fromkeys(("layerscale", "ls", "scale"), "layerscale"),
    **dict.fromkeys(("concatenate", "cat", "merge"), "concat"),
    **dict.fromkeys(("sum", "plus", "elementwiseadd"), "add"),
    **dict.fromkeys(("mul", "product", "elementwisemultiply"), "multiply"),
    **dict.fromkeys(("zeropadding", "pad", "padding"), "zeropad"),
    **dict.fromkeys(("upsampling", "interpolate", "resize"), "upsample"),
    **dict.fromkeys(("cropping", "cropping2d"), "crop"),
    **dict.fromkeys(("rescaling",), "rescale"),
    **dict.fromkeys(("separableconv", "separableconvolution"), "sepconv"),
    **dict.fromkeys(("depthwiseconv", "depthwise", "depthwiseconvolution"), "dwconv"),
    **dict.fromkeys(("channelshuffle",), "shuffle"),
    **dict.fromkeys(("transpose",), "permute"),
    **dict.fromkeys(("normalization", "standardize"), "normalize"),
    **dict.fromkeys(("localresponsenormalization",), "lrn"),
    **dict.fromkeys(
        ("resblock", "residualblock", "bottleneck", "basicblock", "skip", "shortcut"), "residual"
    ),
    **dict.fromkeys(("sequential", "group", "stage"), "block"),
    **dict.fromkeys(("branches", "branch"), "parallel"),
    **dict.fromkeys(
        (
            "relu",
            "activation",
            "leakyrelu",
            "prelu",
            "relu6",
            "gelu",
            "sigmoid",
            "tanh",
            "softmax",
            "swish",
            "silu",
            "elu",
            "selu",
            "hardswish",
        ),
        "act",
    ),
    **dict.fromkeys(("silu",), "swish"),
    **dict.fromkeys(("hswish",), "hard_swish"),
    **dict.fromkeys(("lrelu",), "leaky_relu"),
}


def _normalise(word: str) -> str:
    import re

    return re.sub(r"(?<=[a-z])[123]d", "", re.sub(r"[\s_\-]", "", word.lower()))


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | set[str] | dict) -> str:
    """A 'Did you mean ...?' hint for a misspelt word, or '' when nothing is close (see
    :func:`closest`)."""
    name = closest(word, choices)
    return f"did you mean '{name}'?" if name is not None else ""


def closest(word: str, choices: list[str] | tuple[str, ...] | set[str] | dict) -> str | None:
    """The choice a misspelt ``word`` most likely meant, or None when nothing is close.

    In order: an argument name from Keras/PyTorch (``strides`` -> ``s``), the same name in
    another case or spelling (``Dense``, ``drop_path``), a common synonym (``gap`` ->
    ``gavgpool``, ``Conv2D`` -> ``conv``, ``BatchNormalization`` -> ``bn``), then edit distance.
    """
    import difflib

    word = str(word)
    names = [str(c) for c in choices]
    if word in SYNONYMS and SYNONYMS[word] in names:
        return SYNONYMS[word]
    key = _normalise(word)
    same = [c for c in names if _normalise(c) == key and c != word]
    if same:
        return same[0]
    target = NAME_SYNONYMS.get(key)
    if target in names and target != word:
        return target
    close = difflib.get_close_matches(word, sorted(names), n=1, cutoff=0.6)
    if not close:  # 'MaxPooling2D' is far from 'maxpool' as written, close once normalised
        by_key = {_normalise(c): c for c in names}
        found = difflib.get_close_matches(key, sorted(by_key), n=1, cutoff=0.6)
        close = [by_key[found[0]]] if found else []
    return close[0] if close else None
