"""What this cnnspec is: its version, the frameworks' versions, and how it was installed.

Nothing here imports TensorFlow: a framework already imported reports its ``__version__``, one
not imported yet is read from its installed distribution's metadata (milliseconds), so
``cnnspec --version`` is instant.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from . import __version__

NOT_INSTALLED = "not installed"
#: Distributions that provide the ``tensorflow`` module.
_TF_DISTS = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly")


def _version_of(module: str, dists: tuple[str, ...]) -> str:
    loaded = sys.modules.get(module)
    if loaded is not None and isinstance(getattr(loaded, "__version__", None), str):
        return loaded.__version__
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return NOT_INSTALLED


@dataclass(frozen=True)
class Versions:
    """The versions written into run metadata (``meta.json``'s ``versions``) and export metadata
    (``exported_with``): one shape, one place."""

    cnnspec: str
    tensorflow: str
    keras: str
    python: str

    @classmethod
    def current(cls) -> Versions:
        """This process's versions (without importing TensorFlow or Keras)."""
        return cls(
            cnnspec=__version__,
            tensorflow=_version_of("tensorflow", _TF_DISTS),
            keras=_version_of("keras", ("keras", "keras-nightly")),
            python=platform.python_version(),
        )

    def to_dict(self) -> dict[str, str]:
        """``{"cnnspec": ..., "tensorflow": ..., "keras": ..., "python": ...}`` for JSON."""
        return asdict(self)

    def describe(self) -> str:
        """``cnnspec 0.1.0 (keras 3.15.1, tensorflow 2.21.0, python 3.11.7)``."""
        return (
            f"cnnspec {self.cnnspec} (keras {self.keras}, tensorflow {self.tensorflow}, "
            f"python {self.python})"
        )


def source_checkout() -> Path | None:
    """The checkout cnnspec runs from (a pyproject.toml beside the package), else None."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    try:
        if pyproject.is_file() and 'name = "cnnspec"' in pyproject.read_text(encoding="utf-8"):
            return root
    except (OSError, UnicodeDecodeError):
        pass
    return None


def install_hint(extra: str) -> str:
    """How to install an optional extra: ``pip install -e '.[onnx]'`` in a checkout (where
    ``cnnspec[onnx]`` from the package index is another cnnspec), else ``pip install
    'cnnspec[onnx]'``."""
    root = source_checkout()
    if root is not None:
        where = "" if Path.cwd().resolve() == root else f" (in {root})"
        return f"pip install -e '.[{extra}]'{where}"
    return f"pip install 'cnnspec[{extra}]'"
