"""Generate cnnspec/data_files/applications.json: every keras.applications CNN, for validation
without TensorFlow.

    python tools/applications_table.py [NAME ...]      # all models when no name is given

Each model is built with ``weights=None, include_top=False`` exactly as cnnspec builds a
backbone (Input -> ImagenetPreprocess -> the network via ``input_tensor``). Per layer the table
keeps ``[name, input indices, op on H, op on W, channels, params, fixed params]`` where an op is
how the layer changes one spatial dimension (``null``: unchanged; ``["w", K, s, d, padding]``:
a window; ``["p", before, after]``: zero padding; ``["c", before, after]``: cropping;
``["one"]``: to 1; ``"flat"``: no spatial dimensions any more). cnnspec replays the ops for any
input size, so shapes are exact, not interpolated; this script checks the replay against Keras
at two input sizes (the default and an odd one) for every layer and refuses to write a table
that disagrees.

A developer tool (it uses two private details of Keras: a tensor's ``_keras_history`` to find
a layer's inputs, and a patched ``get_file`` to learn each weight file's name).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "cnnspec" / "data_files" / "applications.json"

# name -> (preprocess mode, default size, min size, extra kwargs, ImageNet weights need the default size)
_CAFFE, _TF, _TORCH, _NONE = "caffe", "tf", "torch", "none"
MODELS: dict[str, tuple] = {
    "VGG16": (_CAFFE, 224, 32),
    "VGG19": (_CAFFE, 224, 32),
    "ResNet50": (_CAFFE, 224, 32),
    "ResNet101": (_CAFFE, 224, 32),
    "ResNet152": (_CAFFE, 224, 32),
    "ResNet50V2": (_TF, 224, 32),
    "ResNet101V2": (_TF, 224, 32),
    "ResNet152V2": (_TF, 224, 32),
    "InceptionV3": (_TF, 299, 75),
    "InceptionResNetV2": (_TF, 299, 75),
    "Xception": (_TF, 299, 71),
    "MobileNet": (_TF, 224, 32),
    "MobileNetV2": (_TF, 224, 32),
    "MobileNetV3Small": (_NONE, 224, 32),  # include_preprocessing=True: rescales inside
    "MobileNetV3Large": (_NONE, 224, 32),
    "DenseNet121": (_TORCH, 224, 32),
    "DenseNet169": (_TORCH, 224, 32),
    "DenseNet201": (_TORCH, 224, 32),
    "NASNetMobile": (_TF, 224, 32, True),
    "NASNetLarge": (_TF, 331, 32, True),
    **{
        f"EfficientNetB{i}": (_NONE, s, 32)
        for i, s in enumerate((224, 240, 260, 300, 380, 456, 528, 600))
    },
    **{f"EfficientNetV2B{i}": (_NONE, s, 32) for i, s in enumerate((224, 240, 260, 300))},
    "EfficientNetV2S": (_NONE, 384, 32),
    "EfficientNetV2M": (_NONE, 480, 32),
    "EfficientNetV2L": (_NONE, 480, 32),
    **{f"ConvNeXt{v}": (_NONE, 224, 32) for v in ("Tiny", "Small", "Base", "Large", "XLarge")},
}


# The ImageNet weight files of these depend on the input rows (other sizes get the default's).
WEIGHT_SIZES = {"MobileNet": [128, 160, 192, 224], "MobileNetV2": [96, 128, 160, 192, 224]}


class _FileName(Exception):
    pass


def weight_file(cls) -> str:
    """The file name keras.applications would download for ImageNet weights (no top)."""
    from keras.src.utils import file_utils

    original = file_utils.get_file

    def fake(fname=None, origin=None, **kwargs):
        raise _FileName(fname or Path(origin).name)

    file_utils.get_file = fake
    try:
        cls(weights="imagenet", include_top=False)
    except _FileName as found:
        return str(found)
    finally:
        file_utils.get_file = original
    return ""


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def spatial_ops(layer) -> tuple:
    """How ``layer`` changes H and W, from its config."""
    import keras

    L = keras.layers
    if isinstance(layer, keras.Sequential):  # ConvNeXt's stem and downsampling blocks
        ops = [spatial_ops(inner) for inner in layer.layers]
        if any(op[0] == "flat" for op in ops):
            return "flat", "flat"
        return tuple(["s", [op[i] for op in ops if op[i] is not None]] for i in range(2))
    cfg = layer.get_config()
    if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D)):
        k, s, d = _pair(cfg["kernel_size"]), _pair(cfg["strides"]), _pair(cfg["dilation_rate"])
        return tuple(["w", k[i], s[i], d[i], cfg["padding"]] for i in range(2))
    if isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
        k = _pair(cfg["pool_size"])
        s = _pair(cfg["strides"] or cfg["pool_size"])
        return tuple(["w", k[i], s[i], 1, cfg["padding"]] for i in range(2))
    if isinstance(layer, L.ZeroPadding2D):
        (t, b), (left, r) = cfg["padding"]
        return ["p", t, b], ["p", left, r]
    if isinstance(layer, L.Cropping2D):
        (t, b), (left, r) = cfg["cropping"]
        return ["c", t, b], ["c", left, r]
    if isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
        return (["one"], ["one"]) if cfg.get("keepdims") else ("flat", "flat")
    if isinstance(layer, L.Reshape):
        shape = cfg["target_shape"]
        if len(shape) == 3 and shape[0] == 1 and shape[1] == 1:
            return ["one"], ["one"]
        return "flat", "flat"
    return None, None


def _producers(tensor, index: dict) -> list[int]:
    """Table indices of the layers behind a tensor, through plain ops (``x + 3.0``: not layers)."""
    import keras

    op = tensor._keras_history.operation
    if op.name == "backbone_preprocess" or isinstance(op, keras.layers.InputLayer):
        return [0]
    if id(op) in index:
        return [index[id(op)]]
    found: list[int] = []
    for t in op._inbound_nodes[0].input_tensors:
        found += [p for p in _producers(t, index) if p not in found]
    return found


def describe(name: str, size: int) -> tuple[dict, list[tuple]]:
    """The table entry of one model, and its real output shapes at ``size``."""
    import keras

    from cnnspec.build.backbone import ImagenetPreprocess

    mode = MODELS[name][0]
    cls = getattr(keras.applications, name)
    inp = keras.Input(shape=(size, size, 3), name="backbone_input")
    x = ImagenetPreprocess(mode, name="backbone_preprocess")(inp)
    app = cls(weights=None, include_top=False, input_tensor=x)
    layers = [
        la
        for la in app.layers
        if not isinstance(la, keras.layers.InputLayer) and la.name != "backbone_preprocess"
    ]
    index = {id(la): i + 1 for i, la in enumerate(layers)}
    rows: list[list] = [["input", [], None, None, 3, 0, 0]]
    shapes = [(size, size, 3)]
    for la in layers:
        inputs = la.input if isinstance(la.input, list) else [la.input]
        parents: list[int] = []
        for t in inputs:
            for p in _producers(t, index):
                if p not in parents:
                    parents.append(p)
        op_h, op_w = spatial_ops(la)
        out = tuple(la.output.shape[1:])
        fixed = (
            la.count_params()
            if isinstance(la, keras.layers.BatchNormalization)
            else int(sum(int(keras.ops.size(w)) for w in la.non_trainable_weights))
        )
        rows.append([la.name, parents, op_h, op_w, int(out[-1]), int(la.count_params()), fixed])
        shapes.append(out)
    return {"rows": rows}, shapes


def check(name: str, rows: list, shapes: list, size: int) -> list[str]:
    """Replay the ops with cnnspec's own code and compare every layer with Keras."""
    from cnnspec.spec import backbone_info as B

    entry = {"layers": rows}
    B.cached_application_info.cache_clear()
    original = B.applications
    B.applications = lambda: {name: entry}  # type: ignore[assignment]
    try:
        info = B.cached_application_info(name, (size, size, 3))
    finally:
        B.applications = original  # type: ignore[assignment]
    return [
        f"{name}@{size}: {layer.name}: cnnspec {layer.shape} keras {shape}"
        for layer, shape in zip(info.layers, shapes, strict=True)
        if tuple(layer.shape) != tuple(shape)
    ]


def _correct_pads(name: str, builds: list[tuple[dict, list]], problems: list[str]) -> list[int]:
    """Indices of ZeroPadding2D layers whose padding follows the input size (correct_pad)."""
    found = []
    first = builds[0][0]["rows"]
    for k, row in enumerate(first):
        pads = [b[0]["rows"][k][2] for b in builds]
        if (
            row[2] is None
            or row[2] == "flat"
            or row[2][0] != "p"
            or all(p == pads[0] for p in pads)
        ):
            continue
        after = row[2][2]
        for (entry, shapes), pad in zip(builds, pads, strict=True):
            size = shapes[entry["rows"][k][1][0]][0]
            if pad != ["p", after - 1 + size % 2, after]:
                problems.append(f"{name}: {row[0]} pads {pads}: not a rule cnnspec knows")
                break
        else:
            found.append(k)
    return found


def main(names: list[str]) -> int:
    import keras

    table = json.loads(OUT.read_text())["models"] if OUT.is_file() and names else {}
    problems: list[str] = []
    for name in names or list(MODELS):
        started = time.time()
        mode, default, min_size, *fixed = MODELS[name]
        # 128 -> 64 -> ... keeps every size even, 129 -> 65 -> 33 ... every size odd: together
        # they tell size-dependent paddings from fixed ones.
        builds = {}
        for size in (default, 128, 129):
            keras.backend.clear_session()
            builds[size] = describe(name, size)
        rows = builds[default][0]["rows"]
        if [r[:2] for r in builds[128][0]["rows"]] != [r[:2] for r in rows] or [
            r[:2] for r in builds[129][0]["rows"]
        ] != [r[:2] for r in rows]:
            problems.append(f"{name}: the layers differ between input sizes")
            continue
        for k in _correct_pads(name, list(builds.values()), problems):
            rows[k][2] = rows[k][3] = ["cp", rows[k][2][2]]
        for size, (_, shapes) in builds.items():
            problems += check(name, rows, shapes, size)
        keras.backend.clear_session()
        entry_file = weight_file(getattr(keras.applications, name))
        if name in WEIGHT_SIZES:  # a pattern: {size} is the input rows
            entry_file = entry_file.replace(f"_{default}_", "_{size}_")
        table[name] = {
            "class": name,
            "preprocess": mode,
            "default_input": [default, default, 3],
            "min_size": min_size,
            "fixed_input_for_imagenet": bool(fixed and fixed[0]),
            "weights_file": entry_file,
            **({"weights_sizes": WEIGHT_SIZES[name]} if name in WEIGHT_SIZES else {}),
            "params": sum(r[5] for r in rows),
            "layers": rows,
        }
        keras.backend.clear_session()
        print(f"{name}: {len(rows)} layers, {table[name]['params']:,} params, "
              f"{time.time() - started:.1f}s", flush=True)  # fmt: skip
    if problems:
        print("\n".join(problems[:50]), file=sys.stderr)
        return 1
    meta = {"keras": keras.__version__, "generator": "tools/applications_table.py"}
    OUT.write_text(json.dumps({"meta": meta, "models": table}, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
