"""Entry point of the ``cnnspec`` console script (and of ``python cli.py``)."""

from __future__ import annotations

import os
import sys

#: Commands that never import TensorFlow.
#: (search: only its trials need it; runs and diff read run folders; import: only keras:Name.)
_LIGHT = {"validate", "summary", "schema", "graph", "search", "runs", "diff", "import"}
#: Commands that check everything they can without TensorFlow first, then import it themselves
#: (through tfquiet.import_tensorflow): their refusals cost milliseconds, not the 5 s import.
_CHECKS_FIRST = {"train", "export", "predict", "evaluate"}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and an exit code (2 spec, 1 run)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from .commands import (  # noqa: F401
        app,
        explain_cmds,
        import_cmds,
        model_cmds,
        runs_cmds,
        search_cmds,
        spec_cmds,
        train_cmds,
        transfer_cmds,
    )
    from .errors import CnnspecError

    _print_spec_warnings()
    command = argv[0] if argv and not argv[0].startswith("-") else None  # not --version
    if command and command not in _LIGHT | _CHECKS_FIRST and not {"-h", "--help"} & set(argv):
        from .tfquiet import import_tensorflow

        import_tensorflow()

    try:
        # Not standalone, Typer answers Ctrl-C by returning 130 (it never raises it here).
        if app(args=argv, prog_name="cnnspec", standalone_mode=False) == 130:
            raise KeyboardInterrupt
    except CnnspecError as exc:
        if debug:
            raise
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer/click exits (e.g. --help)
        return int(exc.code or 0)
    except OSError as exc:  # a file system refusal no check foresaw: still one line, exit 1
        if debug:
            raise
        from .outpaths import reason, shown

        where = f"{shown(exc.filename)}: " if exc.filename else ""
        print(f"cnnspec: {where}{reason(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        import typer

        if isinstance(exc, typer.Exit):
            return exc.exit_code
        if isinstance(exc, typer.Abort):
            print("aborted", file=sys.stderr)
            return 1
        if isinstance(exc, typer.TyperException):  # usage errors: shown like Click does
            exc.show()
            return getattr(exc, "exit_code", 2)
        if debug:
            raise
        print(
            f"cnnspec: internal error: {type(exc).__name__}: {exc}. "
            "Hint: rerun with --debug for a traceback and report it.",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_spec_warnings() -> None:
    """Show a SpecWarning as its one located line on stderr (not Python's two-line form)."""
    import warnings

    from .errors import SpecWarning

    # Each command prints the warnings of its own spec (once each, however often it is loaded):
    # setting the filter also forgets what an earlier command in this process printed.
    warnings.filterwarnings("default", category=SpecWarning)
    shown = warnings.showwarning
    if getattr(shown, "cnnspec", False):
        return

    def show(message, category, *args, **kwargs):
        if issubclass(category, SpecWarning):
            print(str(message), file=sys.stderr)
        else:
            shown(message, category, *args, **kwargs)

    show.cnnspec = True
    warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
