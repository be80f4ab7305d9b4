"""cnnspec: a declarative CNN builder on Keras 3.

The public API is what ``__all__`` lists (see ``cnnspec.api``); every other module is internal
and may change. Importing this package (or loading a spec) never imports TensorFlow; only
``build``, ``train``, ``evaluate``, ``predict``, ``export`` and ``explain`` do, when called.
"""

import sys as _sys

__all__ = [
    "Run",
    "RunError",
    "Spec",
    "SpecError",
    "__version__",
    "build",
    "evaluate",
    "explain",
    "export",
    "load",
    "predict",
    "train",
]

__version__ = "0.1.0"

from . import api as _api  # noqa: E402
from .api.entry import Entry as _Entry  # noqa: E402
from .api.entry import Package as _Package  # noqa: E402
from .errors import RunError, SpecError  # noqa: E402

Run, Spec, load = _api.Run, _api.Spec, _api.load
# Each shares its name with an internal module (cnnspec/train/, cnnspec/build/, ...).
build = _Entry(_api.build, __name__ + ".build")
train = _Entry(_api.train, __name__ + ".train")
evaluate = _Entry(_api.evaluate, __name__ + ".evaluate")
predict = _Entry(_api.predict, __name__ + ".predict")
export = _Entry(_api.export, __name__ + ".export")
explain = _Entry(_api.explain, __name__ + ".explain")
_sys.modules[__name__].__class__ = _Package
