"""Array sources: scikit-learn's digits, keras.datasets and .npz files (with their checks)."""

from __future__ import annotations

import os
import socket
import zipfile
from pathlib import Path

import numpy as np

from ..errors import RunError
from .kinds.keras import KERAS_DATASETS


def digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 17 grey levels (0..16) -> [0, 255]
    x = (digits.images.astype(np.float32) * (255.0 / 16.0))[..., None]
    return x, digits.target.astype(np.int32), [str(i) for i in range(10)]


#: Deflate cannot pack real arrays much tighter than this; a bomb's zeros pack at ~1030:1.
NPZ_MAX_RATIO = 1000


def check_npz_archive(path: Path) -> None:
    """Refuse an ``.npz`` from its zip directory before any array is decompressed.

    An .npz is read whole into memory: it may declare at most half of this machine's memory
    in all, and no member may be a zip bomb (a ratio deflate does not reach on real data).
    """
    from ..modelio import ArchiveError, ArchiveTooLarge, check_archive_limits
    from .cache import total_memory

    budget = total_memory() // 2
    try:
        with zipfile.ZipFile(path) as zf:
            check_archive_limits(zf, path, max_total=budget, max_ratio=NPZ_MAX_RATIO)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError):
        return  # not a zip: np.load says what it is
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ArchiveTooLarge as exc:
        raise RunError(
            str(exc),
            hint="an .npz is loaded whole, so it may declare at most half of this machine's "
            "memory; use an image folder or a CSV manifest, which stream",
        ) from None
    except ArchiveError as exc:
        raise RunError(str(exc), hint="re-save the arrays with numpy.savez_compressed") from None


def open_npz(source: str, names_from: tuple[str, ...] = ("class_names",)):
    """x, y and the names stored under the first of ``names_from`` the file holds (else None)
    of an .npz, checked as an archive before it is read; RunError naming the file."""
    path = Path(source)
    if not path.is_file():
        raise RunError(f"data file not found: {path}")
    check_npz_archive(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "x" not in npz or "y" not in npz:
                raise RunError(f"{path} must hold arrays 'x' and 'y'; it holds {sorted(npz.files)}")
            x, y = npz["x"], npz["y"]
            key = next((k for k in names_from if k in npz), None)
            names = [str(n) for n in npz[key]] if key else None
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # object arrays: strings, mixed types, ...
            raise RunError(
                f"{path} holds Python objects (an object array), not numbers; it is not read "
                "(loading it could run code)",
                hint="save x and y as numeric arrays (x uint8 in [0, 255] or float in [0, 1])",
            ) from None
        raise RunError(f"cannot read {path}: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RunError(f"cannot read {path}: {exc or type(exc).__name__}") from None
    return path, x, y, names


def read_npz(source: str):
    """x, y, class names and the scaling rule applied (a line for the run's log) of an .npz."""
    path, x, y, names = open_npz(source)
    return check_arrays(x, y, names, path)


def check_arrays(x, y, names, path: str | Path):
    """x in [0, 255] (N, H, W, C), y int32 class indices, class names and the scaling rule
    applied, from arrays named ``path`` in messages (an .npz file, or arrays given in Python)."""
    path = Path(path)
    if x.dtype.kind not in "uif":
        raise RunError(
            f"{path}: x must hold pixel values (numbers); received dtype {x.dtype}",
            hint="save x as uint8 in [0, 255] or float in [0, 1]",
        )
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise RunError(
            f"{path}: x must have shape (N, H, W) or (N, H, W, C) with C in 1, 3, 4; "
            f"received {x.shape}"
        )
    if len(x) == 0:
        raise RunError(f"{path} holds no images (x has shape {x.shape})")
    if 0 in x.shape[1:3]:
        raise RunError(f"{path}: the images are empty (zero size); x has shape {x.shape}")
    if y.ndim == 2 and y.shape[1] == 1:  # a column of class indices (N, 1), not one-hot
        y = y[:, 0]
    elif y.ndim == 2:  # one-hot
        y = y.argmax(axis=1)
    if y.ndim != 1 or len(y) != len(x):
        raise RunError(f"{path}: y must have shape ({len(x)},); received {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise RunError(
            f"{path}: y must hold integer class indices 0..K-1; received dtype {y.dtype}"
        )
    if y.min() < 0:
        i = int(np.argmin(y))
        raise RunError(
            f"{path}: y must hold class indices 0..K-1; y[{i}] is {int(y[i])}",
            hint="labels are 0-based class indices (or one-hot rows)",
        )
    x, scaling = _pixel_scale(x, path)
    k = int(y.max()) + 1
    names = names or [str(i) for i in range(k)]
    if len(names) < k:
        raise RunError(f"{path}: class_names has {len(names)} entries but y goes up to {k - 1}")
    return x, y.astype(np.int32), names, scaling


# A [0, 1] data set with a few stray values above 1 (a rounding slip, a bad pixel) would be
# taken for [0, 255] and train on almost-black images; real [0, 255] data has far more.
_STRAY_SHARE = 0.001


def _pixel_scale(x: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    """x in [0, 255] and the rule used, stated; RunError for values that fit no rule.

    Integer x: taken as [0, 255]. Float x: every value in [0, 1] -> multiplied by 255;
    values above 1 -> taken as [0, 255] unless fewer than 0.1% exceed 1 (ambiguous: refused).
    Non-finite or negative values, or values above 255, are refused with their index.
    """

    def at(mask: np.ndarray) -> str:
        index = np.unravel_index(int(np.argmax(mask)), x.shape)
        return f"x[{', '.join(str(int(i)) for i in index)}] = {x[index].item()!r}"

    hint = "save x as uint8 in [0, 255] or float in [0, 1]"
    if x.dtype.kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            raise RunError(
                f"{path}: pixels must be finite; {at(~finite)} "
                f"({int((~finite).sum())} non-finite values)",
                hint=hint,
            )
    low, high = x.min(), x.max()
    if low < 0 or high > 255:
        bad = (x < 0) | (x > 255)
        raise RunError(
            f"{path}: pixels must be in [0, 1] or [0, 255]; {at(bad)} "
            f"(range {float(low):g}..{float(high):g})",
            hint=hint,
        )
    if x.dtype.kind != "f":
        return x, f"pixels: {path.name} holds {x.dtype} in [0, 255]: used as they are"
    if high <= 1.0:
        note = f"pixels: {path.name} holds {x.dtype} in [0, 1]: multiplied by 255"
        return (x.astype(np.float32) * 255.0), note
    above = x > 1.0
    share = float(above.mean())
    if share < _STRAY_SHARE:
        raise RunError(
            f"{path}: pixels look like [0, 1] but {int(above.sum())} exceed 1 ({at(above)}); "
            "the scale is ambiguous",
            hint="clip x to [0, 1], or store [0, 255] values",
        )
    note = (
        f"pixels: {path.name} holds {x.dtype} in [0, 255] ({share:.1%} of values above 1): "
        "used as they are"
    )
    return x.astype(np.float32), note


def keras_dataset(name: str):
    import keras

    module, cache_name, names = KERAS_DATASETS[name]
    home = os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras"))
    cached = Path(home) / "datasets" / cache_name
    if not cached.exists() and not online():
        raise RunError(
            f"cannot download dataset '{name}': no network connection",
            hint="connect once (it is cached in ~/.keras/datasets) or use data: digits",
        )
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # a stalled download fails instead of hanging
    try:
        (x, y), (x_test, y_test) = getattr(keras.datasets, module).load_data()
    except Exception as exc:  # noqa: BLE001 - network / archive errors of every kind
        raise RunError(
            f"cannot download dataset '{name}': {type(exc).__name__}: {exc}",
            hint="check the network connection or use data: digits",
        ) from None
    finally:
        socket.setdefaulttimeout(old)
    if x.ndim == 3:
        x, x_test = x[..., None], x_test[..., None]
    return (x, y.reshape(-1)), (x_test, y_test.reshape(-1)), names


def online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False
