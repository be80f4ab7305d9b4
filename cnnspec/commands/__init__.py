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
