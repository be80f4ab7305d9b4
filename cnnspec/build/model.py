"""build_model(spec) -> keras.Model, through the functional API."""

from __future__ import annotations

import keras

from ..spec import ModelSpec
from ..spec.graph import INPUT
from .layers import apply

#: Models :func:`build_model` built in this process (``cnnspec search`` reports, and its tests
#: check, that a candidate refused by its budget never got this far).
builds = 0


def build_model(spec: ModelSpec, heads: bool = False) -> keras.Model:
    """Build the Keras model of ``spec``.

    ``heads=False`` gives the inference model (auxiliary heads dropped). ``heads=True`` gives
    the training model: its outputs are a dict ``{spec.output_name: ..., <head name>: ...}``
    whose keys match :meth:`ModelSpec.loss_weights`. Under a mixed-precision policy the output
    layers compute in float32 (softmax is unstable in float16).
    """
    global builds
    builds += 1
    graph = spec.graph
    outputs_wanted = {graph.output, *(graph.heads.values() if heads else ())}
    mixed = keras.config.dtype_policy().compute_dtype != "float32"
    tensors = {INPUT: keras.Input(shape=graph.input_shape, name=INPUT)}
    for node in graph.nodes.values():
        if node.spec is None or (node.head and not heads):
            continue
        extra = {"dtype": "float32"} if mixed and node.name in outputs_wanted else {}
        tensors[node.name] = apply(
            node.spec,
            node.name,
            [tensors[i] for i in node.inputs],
            [graph.nodes[i].shape for i in node.inputs],
            **extra,
        )
    main = tensors[graph.output]
    if not heads:
        return keras.Model(tensors[INPUT], main, name=spec.name)
    outputs = {spec.output_name: main}
    outputs.update({h: tensors[n] for h, n in graph.heads.items()})
    return keras.Model(tensors[INPUT], outputs, name=spec.name)


def inference_model(model: keras.Model, spec: ModelSpec) -> keras.Model:
    """The inference part of a training model built with ``heads=True`` (shares its weights).

    Heads with a task of their own (``heads.<h>.task``) are outputs too: a dict of outputs.
    """
    main = model.get_layer(spec.output_name).output
    if not spec.task_heads:
        return keras.Model(model.inputs, main, name=spec.name)
    outputs = {spec.output_name: main}
    outputs.update({h: model.get_layer(h).output for h in spec.task_heads})
    return keras.Model(model.inputs, outputs, name=spec.name)
