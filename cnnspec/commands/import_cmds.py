"""CLI: ``cnnspec import SOURCE -o spec.yaml`` (TensorFlow only for a keras:Name source)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import RunError
from . import app


def source_config(source: str, size: int | None) -> dict:
    """The functional config of a .keras file (read as JSON) or a keras.applications model
    (built with weights=None: only its architecture is read)."""
    from ..init.source import KERAS_PREFIX

    if not source.startswith(KERAS_PREFIX):
        from ..modelio import read_keras_config

        if not Path(source).is_file():
            raise RunError(
                f"import: {source}: no such file", hint="give a .keras file or keras:<Application>"
            )
        try:
            return read_keras_config(source)
        except ValueError as exc:
            raise RunError(f"import: {source} is not a Keras 3 .keras file ({exc})") from None
    from ..spec.backbone_info import applications

    name, apps = source[len(KERAS_PREFIX) :], applications()
    if name not in apps:
        from ..errors import did_you_mean

        raise RunError(
            f"import: unknown keras.applications model '{name}'",
            hint=did_you_mean(name, list(apps)),
        )
    from ..tfquiet import import_tensorflow

    import_tensorflow()
    import keras

    entry = apps[name]
    shape = (size, size, 3) if size else tuple(entry["default_input"])
    cls = getattr(keras.applications, entry["class"])
    model = cls(weights=None, input_shape=shape, **entry.get("kwargs", {}))
    return keras.saving.serialize_keras_object(model)


@app.command("import")
def import_(
    source: Annotated[
        str, typer.Argument(help="A .keras file or keras:<Application> (keras:ResNet50).")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="The spec file to write.")],
    size: Annotated[
        int | None,
        typer.Option(help="Input height and width for a keras: source.", show_default=False),
    ] = None,
) -> None:
    """Turn a Keras model into an editable spec, with init: {from: SOURCE} (exact or refused)."""
    import yaml

    from ..importer import convert
    from ..outpaths import atomic_path, check_output
    from ..spec import load_spec

    check_output(output)
    label = source if source.startswith("keras:") else str(Path(source).resolve())
    data = convert(source_config(source, size), label)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    with atomic_path(output) as tmp:
        Path(tmp).write_text(f"# imported from {source} by cnnspec import\n" + text)
    spec = load_spec(output)
    print(f"wrote {output}: {len(data['layers'])} rows, {spec.graph.total_params:,} params")
