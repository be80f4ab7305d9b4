"""Freezing done right (issue 4, §2): what trains in phase 1 and phase 2, and what never does.

Real Keras training on real digits, with the shipped backbone pretrained on digits 0-4.
"""

import numpy as np
import pytest

from cnnspec.spec import load_spec, loads_spec
from cnnspec.transfer.digits import digits_subset

BACKBONE = "specs/transfer_digits04_backbone.keras"
SPEC = f"""
name: ft
input: [32, 32, 1]
backbone:
  model: {BACKBONE}
  cut_at: basic_2_out
  fine_tune: {{from: basic_2_conv_1, lr: 1.0e-3, epochs: 2}}
layers:
  - avgpool: 4x4
  - flatten
  - dense: 5, softmax
"""
# Layers of the block that phase 2 unfreezes and that have trainable weights (BN excluded).
PHASE2 = {"basic_2_conv_1", "basic_2_conv_2", "basic_2_shortcut"}


@pytest.fixture(scope="module")
def digits():
    from cnnspec.data import load_data

    x, y, _ = digits_subset([5, 6, 7, 8, 9])
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        np.savez(f"{tmp}/d.npz", x=x[:160], y=y[:160])
        data = load_data(f"{tmp}/d.npz", (32, 32, 1), validation_split=0.0, test_split=0.0)
        images, labels = (np.stack(a) for a in zip(*data.train.as_numpy_iterator(), strict=True))
    return images, labels


def _snapshot(model):
    backbone = model.get_layer("backbone")
    from cnnspec.build.backbone import network_layers

    return {la.name: [w.numpy().copy() for w in la.weights] for la in network_layers(backbone)}


def _changed(before, after):
    return {
        name
        for name, ws in before.items()
        if any(not np.array_equal(a, b) for a, b in zip(ws, after[name], strict=True))
    }


def _size(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def _fit(model, digits, lr):
    import keras

    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy")
    model.fit(*digits, batch_size=32, epochs=2, verbose=0)


def test_phase1_trains_only_the_head_and_phase2_only_the_chosen_layers(digits):
    from cnnspec.build import build_model
    from cnnspec.build.backbone import is_batchnorm, network_layers
    from cnnspec.train.finetune import unfreeze

    spec = loads_spec(SPEC)
    model = build_model(spec)
    head = model.get_layer("dense_1")
    # Phase 1: only the head's kernel and bias train; the spec's count agrees.
    assert len(model.trainable_weights) == 2
    assert _size(model.trainable_weights) == spec.graph.trainable_params == 512 * 5 + 5
    before, head_before = _snapshot(model), head.get_weights()[0].copy()
    _fit(model, digits, 3e-3)
    assert not _changed(before, _snapshot(model))  # weights and BN moving statistics
    assert not np.array_equal(head_before, head.get_weights()[0])

    # Phase 2: the chosen block trains; BN (moving stats, gamma, beta) and the rest do not.
    names = unfreeze(model, spec)
    assert names[0] == "basic_2_conv_1" and "basic_1_conv_1" not in names
    layers = {la.name: la for la in network_layers(model.get_layer("backbone"))}
    assert all(not layers[n].trainable for n in names if is_batchnorm(layers[n]))
    expected = sum(layers[n].count_params() for n in PHASE2) + 512 * 5 + 5
    assert _size(model.trainable_weights) == expected
    before = _snapshot(model)
    _fit(model, digits, 1e-3)
    changed = _changed(before, _snapshot(model))
    assert changed == PHASE2, changed


def test_top_and_all_choose_layers_from_the_end():
    spec = loads_spec(SPEC.replace("from: basic_2_conv_1", "top: 3"))
    assert spec.backbone.unfrozen_in_phase2((32, 32, 1)) == [
        "basic_2_bn_2",
        "basic_2_add",
        "basic_2_out",
    ]
    every = loads_spec(SPEC.replace("from: basic_2_conv_1", "all: true"))
    names = every.backbone.unfrozen_in_phase2((32, 32, 1))
    assert names[0] == "input" and names[-1] == "basic_2_out" and "basic_3_conv_1" not in names


@pytest.mark.slow
def test_cnnspec_train_runs_both_phases_into_one_run_directory(tmp_path):
    import csv

    import keras

    from cnnspec.train import train
    from cnnspec.transfer.digits import write_npz

    data = write_npz(tmp_path / "digits59.npz", [5, 6, 7, 8, 9])
    spec = load_spec(
        "specs/transfer_digits59.yaml",
        [f"train.data={data}", "train.epochs=2", "backbone.fine_tune.epochs=2"],
    )
    run = tmp_path / "run"
    result = train(spec, run_dir=run, verbose=0, echo=lambda _: None)
    phase1 = list(csv.DictReader((run / "history.csv").open()))
    phase2 = list(csv.DictReader((run / "history_phase2.csv").open()))
    assert len(phase1) == 2 and len(phase2) == 2
    assert result.metrics["phase2"]["first_unfrozen"] == "basic_2_conv_1"
    assert result.metrics["phase2"]["epochs_done"] == 2
    assert result.metrics["test"]["accuracy"] > 0.9
    assert result.metrics["phase1"]["test"]["accuracy"] > 0.9
    # The run's curves carry both phases (phase 2 used to be left out)
    from cnnspec.viz.curves import read_history

    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert read_history(run)["phase"] == [1, 1, 2, 2]
    assert set(result.metrics["per_class"]) == {"split", "classes", "macro"}

    def weights(path, layer):
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
        return model.get_layer("backbone").get_layer(layer).get_weights()

    for layer, moved in (
        ("basic_2_conv_1", True),
        ("basic_1_conv_1", False),
        ("basic_2_bn_1", False),
    ):
        a, b = weights(run / "model_phase1.keras", layer), weights(run / "model.keras", layer)
        same = all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert same != moved, layer


def test_fine_tune_from_a_keras_application_layer_unfreezes_from_there_on():
    from cnnspec.build import build_model
    from cnnspec.build.backbone import is_batchnorm, network_layers
    from cnnspec.train.finetune import unfreeze

    spec = loads_spec(
        "name: m\ninput: [48, 48, 3]\nbackbone:\n  model: MobileNetV2\n  weights: none\n"
        "  pooling: avg\n  fine_tune: {from: block_13_expand}\nlayers:\n  - dense: 3, softmax\n"
    )
    model = build_model(spec)
    assert len(model.trainable_weights) == 2
    unfreeze(model, spec)
    layers = network_layers(model.get_layer("backbone"))
    names = [la.name for la in layers]
    start = names.index("block_13_expand")
    trainable = {la.name for la in layers if la.trainable_weights}
    expected = {la.name for la in layers[start:] if la.weights and not is_batchnorm(la)}
    assert trainable == expected and "block_12_project" not in trainable
    assert not any(is_batchnorm(la) and la.trainable for la in layers)
