"""CLI: ``cnnspec import SOURCE -o spec.yaml`` (TensorFlow only for a keras:Name source)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import RunError
from ..importer.check import SourceWeights
from . import app


def source_config(source: str, size: int | None) -> dict:
    """The functional config of a .keras file or a keras.applications model."""
    return read_source(source, size)[0]


def read_source(source: str, size: int | None) -> tuple[dict, list[SourceWeights]]:
    """The functional config of a .keras file (read as JSON) or a keras.applications model
    (built with weights=None: only its architecture is read), and its weight-bearing layers."""
    from ..init.source import KERAS_PREFIX

    if not source.startswith(KERAS_PREFIX):
        from ..init.source import keras_file_index
        from ..modelio import read_keras_config

        if not Path(source).is_file():
            raise RunError(
                f"import: {source}: no such file", hint="give a .keras file or keras:<Application>"
            )
        try:
            config = read_keras_config(source)
        except ValueError as exc:
            raise RunError(f"import: {source} is not a Keras 3 .keras file ({exc})") from None
        index = keras_file_index(Path(source))
        return config, [SourceWeights(w.name, w.cls, w.shapes) for w in index.layers]
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
    weights = [
        SourceWeights(
            layer.name, type(layer).__name__, tuple(tuple(w.shape) for w in layer.weights)
        )
        for layer in model.layers
        if layer.weights
    ]
    return keras.saving.serialize_keras_object(model), weights


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
    from ..importer import import_text
    from ..outpaths import atomic_path, check_output

    check_output(output)
    label = source if source.startswith("keras:") else str(Path(source).resolve())
    config, weights = read_source(source, size)
    text, spec = import_text(config, weights, label, header=f"imported from {source}")
    with atomic_path(output) as tmp:
        Path(tmp).write_text(text)
    rows = sum(1 for line in text.splitlines() if line.strip())
    print(f"wrote {output}: {rows} non-blank lines, {spec.graph.total_params:,} params (exact)")
