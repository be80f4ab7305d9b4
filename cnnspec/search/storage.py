"""The study storage: which URLs are accepted, opening it once per machine, errors as one line.

A storage URL is checked before any trial (:func:`check_url`): in-memory SQLite is refused (each
process would get its own empty study, so the search would be lost and workers would run the
whole plan twice), and so is a database that already holds another program's tables (Optuna
would add its own 13 tables to it). :func:`cnnspec.search.study.open_study` creates the tables under
:func:`locked` (the search folder's lock), so that the workers of one machine never race to create
them ("table studies already exists"), and :func:`retrying` retries a creation that raced a
process of another machine. Every storage error
becomes one line whose hint fits its cause (:func:`storage_error`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import Location, RunError, SpecError
from ..outpaths import check_output

#: Tables every Optuna RDB storage has: a database with tables but none of these is not ours.
OPTUNA_TABLES = frozenset({"studies", "version_info"})
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Tries to create the tables when another machine's process races this one.
CREATE_TRIES = 8
POSTGRES_HINT = "pip install 'psycopg[binary]' (or pip install -e '.[postgres]' in a checkout)"
#: The Python module each URL's default driver needs, and how to install it.
DRIVERS = {
    "postgresql": ("psycopg", POSTGRES_HINT),
    "postgresql+psycopg": ("psycopg", POSTGRES_HINT),
    "postgresql+psycopg2": ("psycopg2", "pip install psycopg2-binary"),
    "mysql": (
        "MySQLdb",
        "pip install mysqlclient (or use mysql+pymysql:// and pip install pymysql)",
    ),
    "mysql+pymysql": ("pymysql", "pip install pymysql"),
}


def parse(url: str) -> Any:
    """The SQLAlchemy URL of ``url``; a malformed one is a one-line error (exit 2)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise _bad_option(
            url,
            f"not a database URL ({str(exc).splitlines()[0][:120]})",
            "sqlite:///path/search.db or postgresql://user:password@host/database",
        ) from None


def _bad_option(url: str, what: str, hint: str) -> SpecError:
    return SpecError.single(f"{what}, received {url!r}", hint=hint, location=Location("--storage"))


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database)."""
    parsed = parse(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    return Path(parsed.database or "")


def check_url(url: str) -> None:
    """Refuse, before any trial, a storage that would lose the search or damage another database.

    In-memory SQLite (``sqlite://``, ``sqlite:///``, ``sqlite:///:memory:``, ``mode=memory``) and
    an existing file that is not an Optuna database are refused; so is a URL whose driver is not
    installed. Never creates or changes anything.
    """
    parsed = parse(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database or ""
        if db in ("", ":memory:") or "mode=memory" in url or db.startswith("file::memory:"):
            raise _bad_option(
                url,
                "an in-memory database keeps the study only in one process, so the search "
                "would be lost and each worker would run the whole plan",
                "leave --storage out (a SQLite file in --out) or give sqlite:///path/search.db",
            )
        check_sqlite_file(Path(db), url)
        return
    _check_driver(parsed, url)


def _check_driver(parsed: Any, url: str) -> None:
    from sqlalchemy.exc import NoSuchModuleError

    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise _bad_option(
            url,
            f"unknown database kind '{parsed.drivername}'",
            "postgresql://user:password@host/database, mysql+pymysql://... or sqlite:///file.db",
        ) from None
    module, hint = DRIVERS.get(parsed.drivername, (None, ""))
    if module is not None and not installed(module):
        raise RunError(
            f"--storage {parsed.render_as_string(hide_password=True)}: the database driver "
            f"'{module}' is not installed",
            hint,
        )


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module blocked in sys.modules (None) has no spec
        return False


def check_sqlite_file(path: Path, url: str) -> None:
    """An existing file must be an (empty or) Optuna SQLite database; a new one must be creatable."""
    if not path.exists():
        check_output(path, "--storage", "file")
        return
    if path.is_dir():
        raise _bad_option(url, "is a folder, not a SQLite file", "give a file name, e.g. search.db")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise RunError(f"--storage {path}: cannot read it: {exc.strerror}") from None
    if not head:
        return  # an empty file is an empty SQLite database
    if head != SQLITE_MAGIC:
        raise _foreign(path, url, "is not a SQLite database")
    tables = sqlite_tables(path)
    if tables and not tables >= OPTUNA_TABLES:
        names = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise _foreign(path, url, f"is another program's database (tables {names})")


def _foreign(path: Path, url: str, what: str) -> SpecError:
    return _bad_option(
        url,
        f"{path} {what}; a search adds Optuna's tables to its storage, so it is left alone",
        "give a new file (sqlite:///path/search.db) or leave --storage out",
    )


def sqlite_tables(path: Path) -> set[str]:
    """The tables of the SQLite file ``path``, opened read-only (the file is never changed)."""
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            rows = con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise RunError(f"--storage {path}: cannot read it as a SQLite database: {exc}") from None
    return {r[0] for r in rows}


def storage_error(url: str, exc: BaseException) -> RunError:
    """One line for an error opening or using the storage at ``url``, hinted by its cause."""
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    low = f"{type(exc).__name__} {exc}".lower()
    if isinstance(exc, ImportError) or "no module named" in low:
        module, hint = DRIVERS.get(_drivername(url), ("", "install the database driver of the URL"))
        hint = hint or "install the database driver of the URL"
        return RunError(
            f"--storage {shown(url)}: the database driver is not installed ({text})", hint
        )
    if "locked" in low or "already exists" in low or "unique constraint" in low:
        return RunError(
            f"--storage {shown(url)}: the database was busy ({text})",
            "another process was creating or writing it at the same moment: run the command "
            "again (the search resumes where it stopped)",
        )
    if "not a database" in low or "malformed" in low:
        return RunError(
            f"--storage {shown(url)}: not a usable SQLite database ({text})",
            "give a new file, or leave --storage out",
        )
    if "connection" in low or "could not connect" in low or "password" in low:
        return RunError(
            f"--storage {shown(url)}: cannot connect to the database ({text})",
            "check that the server runs and the host, port, user, password and database name",
        )
    return RunError(f"--storage {shown(url)}: {type(exc).__name__}: {text}")


def _drivername(url: str) -> str:
    try:
        return parse(url).drivername
    except SpecError:
        return ""


def shown(url: str) -> str:
    """The URL without its password."""
    try:
        return parse(url).render_as_string(hide_password=True)
    except SpecError:
        return url


@contextlib.contextmanager
def locked(path: Path) -> Iterator[Callable[[], None]]:
    """An exclusive lock on ``path`` (one machine); yields a function that releases it early."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    held = [True]

    def release() -> None:
        if held[0]:
            held[0] = False
            fcntl.flock(fd, fcntl.LOCK_UN)

    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield release
    finally:
        release()
        os.close(fd)


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine settings: SQLite waits for a busy file instead of failing at once."""
    return {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}


def retrying(url: str, open_: Callable[[], Any]) -> Any:
    """``open_()`` (which opens the storage at ``url``), retried when it raced another machine's
    process creating the same tables; any other storage error becomes one line."""
    from ..errors import CnnspecError

    for attempt in range(CREATE_TRIES):
        try:
            return open_()
        except CnnspecError:
            raise
        except Exception as exc:  # noqa: BLE001 - any driver error: one line, the URL named
            if not racing(exc, attempt) or attempt == CREATE_TRIES - 1:
                raise storage_error(url, exc) from None
            time.sleep(random.uniform(0.05, 0.5) * (attempt + 1))
    raise AssertionError("unreachable")


def racing(exc: Exception, attempt: int) -> bool:
    """Whether ``exc`` may come from another process creating the tables at the same moment
    (they exist once it is done, so a retry succeeds)."""
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, SQLAlchemyError):
        return any(w in str(exc).lower() for w in ("already exists", "unique", "locked"))
    # Optuna reads the schema version while another process is still writing it: an empty
    # version ("no longer compatible") or none at all (an assert). A real old schema says so
    # again after a few tries.
    return isinstance(exc, (RuntimeError, AssertionError)) and attempt < 3
