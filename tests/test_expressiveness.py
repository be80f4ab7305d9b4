"""The language expresses keras.applications networks exactly: same parameter count, and after a
layer-by-layer weight copy, the same outputs on the same input.

Residual bottlenecks (ResNet-50), inverted residuals with depthwise convs and asymmetric padding
(MobileNetV2), dense concatenation (DenseNet-121).
"""

import numpy as np
import pytest

from cnnspec.spec import load_spec

CASES = {
    "resnet50": ("ResNet50", 25_636_712),
    "mobilenetv2": ("MobileNetV2", 3_538_984),
    "densenet121": ("DenseNet121", 8_062_504),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_spec_equals_keras_applications_weight_for_weight(name):
    import keras

    from cnnspec.build import build_model

    app, params = CASES[name]
    spec = load_spec(f"specs/{name}.yaml", ["preprocess=none"])
    ours = build_model(spec)
    ref = getattr(keras.applications, app)(weights=None)
    assert spec.graph.total_params == ours.count_params() == ref.count_params() == params
    ours_w = [layer for layer in ours.layers if layer.weights]
    ref_w = [layer for layer in ref.layers if layer.weights]
    assert len(ours_w) == len(ref_w)
    for a, b in zip(ours_w, ref_w, strict=True):
        assert type(a) is type(b), (a.name, b.name)
        assert [w.shape for w in a.weights] == [w.shape for w in b.weights], (a.name, b.name)
        a.set_weights(b.get_weights())
    # Random BN statistics so the comparison exercises every weight, not only the convs.
    rng = np.random.default_rng(0)
    for a, b in zip(ours_w, ref_w, strict=True):
        if isinstance(b, keras.layers.BatchNormalization):
            new = [w + rng.uniform(0.1, 0.5, w.shape).astype("float32") for w in b.get_weights()]
            a.set_weights(new)
            b.set_weights(new)
    x = rng.uniform(0, 1, (2, 224, 224, 3)).astype("float32")
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), ref.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_squeeze_and_excitation_and_asymmetric_kernels():
    from cnnspec.build import build_model
    from cnnspec.spec import loads_spec

    spec = loads_spec(
        "name: se\ninput: [17, 17, 32]\npreprocess: none\nlayers:\n"
        "  - conv: 1x7, 32, p=same, relu\n  - conv: 7x1, 32, p=same, relu\n    name: x\n"
        "  - gavgpool: {keepdims: true}\n  - conv: 1x1, 8, swish\n  - conv: 1x1, 32, sigmoid\n"
        "  - multiply: {from: [x, -1]}\n"
    )
    g = spec.graph
    assert g.nodes[g.output].shape == (17, 17, 32)
    assert g.total_params == (7 * 32 * 32 + 32) * 2 + (32 * 8 + 8) + (8 * 32 + 32)
    model = build_model(spec)
    assert model.count_params() == g.total_params
    assert tuple(model.output.shape[1:]) == (17, 17, 32)
