"""The CLI: one Typer app; each module here adds its commands.

Modules import Keras/TensorFlow only inside the command functions that need them, so
``cnnspec validate`` and ``cnnspec summary`` stay instant.
"""

import typer

app = typer.Typer(
    name="cnnspec",
    help="Declarative CNN builder: validate, summarise, build, train and export YAML specs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from ..versions import Versions

        typer.echo(Versions.current().describe())  # read from metadata: TensorFlow not imported
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the versions of cnnspec, Keras, TensorFlow and Python, and exit.",
    ),
) -> None:
    """Declarative CNN builder: validate, summarise, build, train and export YAML specs."""
