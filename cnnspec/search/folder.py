"""The search folder (``--out``): a search writes only into a folder it recognises as its own.

A folder the search creates (or finds empty) gets the marker file :data:`MARKER`; a later run
resumes there. Any other existing folder is refused before anything runs, so that a user's own
``search.csv``, ``best.yaml`` or plots are never overwritten. A folder left by an older cnnspec
(no marker, but an Optuna ``search.db`` and nothing but the search's own entries) is recognised
too. Unwritable destinations (a file, a path under ``/proc``) are refused by the export's rules
(:func:`cnnspec.outpaths.check_output`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import RunError
from ..outpaths import check_output, write_text_atomic

MARKER = ".cnnspec-search"
#: What a search writes into its folder (an older one without the marker is recognised by it).
OWN_ENTRIES = frozenset(
    {
        MARKER,
        "search.db",
        "search.db-journal",
        "search.db-wal",
        "search.db-shm",
        ".search.lock",
        "search.csv",
        "best.yaml",
        "plots",
        "trials",
    }
)


def is_own(out: Path) -> bool:
    """Whether ``out`` is a search folder: marked, empty, or an older search's folder."""
    if (out / MARKER).is_file():
        return True
    names = {p.name for p in out.iterdir()}
    if not names:
        return True
    if not names <= OWN_ENTRIES or not (out / "search.db").is_file():
        return False
    from .storage import OPTUNA_TABLES, sqlite_tables

    try:
        return sqlite_tables(out / "search.db") >= OPTUNA_TABLES
    except RunError:
        return False


def check_out(out: Path) -> None:
    """Refuse, before any work, an ``--out`` the search cannot write or does not own."""
    if out.is_dir():
        try:
            own = is_own(out)
        except OSError as exc:
            raise RunError(f"--out {out}: cannot read the folder: {exc.strerror}") from None
        if not own:
            raise RunError(
                f"--out {out}: is a folder that cnnspec search did not create (no {MARKER}); "
                "its search.csv, best.yaml and plots would be overwritten",
                "give a new folder (--out searches/<name>), or an empty one",
            )
    check_output(out, "--out", "dir")


def claim(out: Path) -> None:
    """Create ``out`` (checked by :func:`check_out`) and mark it as a search folder."""
    check_out(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"--out {out}: cannot create the folder: {exc.strerror}") from None
    if not (out / MARKER).is_file():
        write_text_atomic(out / MARKER, "a cnnspec search folder: `cnnspec search` resumes here\n")


def clear(out: Path) -> None:
    """Remove what a search wrote in its folder ``out`` (``--fresh``), keeping the folder."""
    if not is_own(out):
        raise RunError(f"--out {out}: not a search folder, so --fresh leaves it alone")
    try:
        for name in ("trials", "plots"):
            if (out / name).is_dir() and not (out / name).is_symlink():
                shutil.rmtree(out / name)
        for name in ("search.csv", "best.yaml"):
            (out / name).unlink(missing_ok=True)
    except OSError as exc:
        raise RunError(f"--fresh: cannot remove the old results in {out}: {exc}") from None
