"""Bad specs: every problem is one line, located file:line:col, with what was received and a hint."""

import re

import pytest

from cnnspec.errors import SpecError
from cnnspec.spec import loads_spec

HEAD = "name: t\ninput: [16, 16, 1]\nlayers:\n"

# (layers text, expected line, substrings of the message)
CASES = {
    "unknown kind": ("  - cnv: 3x3, 8\n", 4, ["unknown layer kind 'cnv'", "did you mean 'conv'"]),
    "activation as kind": ("  - relu\n", 4, ["unknown layer kind 'relu'", "act: relu"]),
    "misspelt activation as kind": (
        "  - rleu\n",
        4,
        ["unknown layer kind 'rleu'", "did you mean the activation 'relu'? write 'act: relu'"],
    ),
    "unknown key": (
        "  - conv: {K: 3, n_K: 4, strides: 2}\n",
        4,
        ["unknown key 'strides'", "did you mean 's'"],
    ),
    "wrong type": ("  - conv: 3x3, many\n", 4, ["n_K", "received 'many'"]),
    "non-positive size": ("  - conv: 0x3, 4\n", 4, ["K", "must be positive", "received '0x3'"]),
    "zero kernels": ("  - conv: 3x3, 0\n", 4, ["n_K", "received 0"]),
    "bad padding": ("  - conv: 3x3, 4, p=full\n", 4, ["expected same, valid", "received 'full'"]),
    "kernel too large": (
        "  - conv: 3x3, 4, s=4\n  - conv: 5x5, 4\n",
        5,
        ["K=5x5 is larger than its 4x4 input (p=0)", "p=same"],
    ),
    "dense after spatial": (
        "  - conv: 3x3, 4\n  - dense: 10\n",
        5,
        ["without flatten", "received" if False else "14x14x4", "flatten"],
    ),
    "merge mismatch": (
        "  - conv: 3x3, 4, p=same\n    name: a\n  - conv: 3x3, 8, p=same\n  - add: {from: [a, -1]}\n",
        7,
        ["matching shapes", "16x16x4, 16x16x8"],
    ),
    "unknown from": (
        "  - conv: 3x3, 4\n    name: stem\n  - conv: {K: 3, n_K: 4, from: stme}\n",
        6,
        ["unknown layer 'stme'", "did you mean 'stem'"],
    ),
    "cycle / forward ref": (
        "  - conv: {K: 3, n_K: 4, from: later}\n  - conv: 3x3, 4\n    name: later\n",
        4,
        ["defined later", "cycle"],
    ),
    "merge with one input": (
        "  - conv: 3x3, 4\n  - concat\n",
        5,
        ["merges two or more inputs", "from: [a, b]"],
    ),
    "misspelt common key": (
        "  - conv: 3x3, 4\n    nme: a\n",
        4,
        ["unknown key 'nme' beside 'conv'", "did you mean 'name'"],
    ),
    "not a layer": ("  - 5\n", 4, ["a layer must be a kind name or a mapping, received 5"]),
    "too many values": ("  - conv: 3x3, 4, 5\n", 4, ["too many values", "received 5"]),
    "duplicate name": (
        "  - conv: 3x3, 4\n    name: a\n  - conv: 3x3, 4\n    name: a\n",
        6,
        ["'a' is used twice"],
    ),
    "bad times": (
        "  - conv: 3x3, 4\n    times: 0\n",
        5,
        ["times must be a positive integer", "received 0"],
    ),
    "identity shortcut mismatch": (
        "  - residual: {body: ['conv: 3x3, 8, p=same'], shortcut: identity}\n",
        4,
        ["identity shortcut", "shortcut: auto"],
    ),
    "empty output": (
        "  - conv: 3x3, 4, s=2\n  - conv: 3x3, 4, s=2\n  - conv: 3x3, 4, s=2\n  - conv: 3x3, 4\n",
        7,
        ["larger than its 1x1 input"],
    ),
    "dilation with stride": ("  - conv: 3x3, 4, s=2, d=2\n", 4, ["stride above 1", "dilation"]),
    "groups": ("  - conv: 3x3, 3, groups=2\n", 4, ["groups=2 must divide"]),
}


def _error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        loads_spec(text, file="net.yaml")
    return str(info.value)


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_is_located_and_explained(case):
    layers, line, parts = CASES[case]
    message = _error(HEAD + layers)
    first = message.splitlines()[0]
    assert re.match(r"^net\.yaml:\d+:\d+: layers\[\d+\]", first), first
    assert first.startswith(f"net.yaml:{line}:"), first
    for part in parts:
        assert part in first, (part, first)


def test_all_problems_are_reported_not_only_the_first():
    message = _error(HEAD + "  - cnv: 3x3\n  - conv: 3x3, 0\n  - dropout: 1.5\n")
    lines = message.splitlines()
    assert len(lines) == 3
    assert [int(line.split(":")[1]) for line in lines] == [4, 5, 6]


@pytest.mark.parametrize(
    "text,parts",
    [
        (
            "name: t\ninput: [0, 8, 1]\nlayers: [flatten]\n",
            ["net.yaml:2:", "input[0]", "received 0"],
        ),
        (
            "name: t\ninput: [8, 8, 1]\nlayer: [flatten]\n",
            ["net.yaml:3:", "unknown key 'layer'", "did you mean 'layers'"],
        ),
        ("name: t\ninput: [8, 8, 1]\n", ["missing required 'layers'"]),
        (
            "name: t\ninput: [8, 8, 1]\nlayers: [flatten]\ntrain: {epoch: 3}\n",
            ["net.yaml:4:9: train: unknown key 'epoch'", "did you mean 'epochs'"],
        ),
        (
            "name: t\ninput: [8, 8, 1]\nlayers: [flatten]\nheads: {a: {form: x, layers: [flatten]}}\n",
            ["heads.a: unknown key 'form'", "did you mean 'from'"],
        ),
        (
            "name: t\nname: u\ninput: [8, 8, 1]\nlayers: [flatten]\n",
            ["net.yaml:2:1", "duplicate key 'name'"],
        ),
        ("name: t\ninput: [8, 8, 1\nlayers: [flatten]\n", ["net.yaml:", "invalid YAML"]),
        (
            "name: !!python/object:os.system t\ninput: [8, 8, 1]\nlayers: [flatten]\n",
            ["unsupported YAML"],
        ),
        ("", ["empty"]),
        ("- 1\n- 2\n", ["must be a mapping"]),
    ],
)
def test_document_level_errors(text, parts):
    message = _error(text)
    for part in parts:
        assert part in message, (part, message)


def test_define_errors_point_into_the_define_body():
    text = (
        "name: t\ninput: [16, 16, 1]\ndefine:\n  blk:\n    params: {n: null}\n    layers:\n"
        "      - conv: 3x3, $n, q=1\nlayers:\n  - blk: {n: 4}\n  - blk: {nn: 4}\n"
    )
    message = _error(text)
    assert "unknown parameter 'nn' of block 'blk'" in message and "did you mean 'n'" in message
    assert "net.yaml:7:" in message and "unknown key 'q'" in message


def test_override_errors_name_the_override():
    with pytest.raises(SpecError) as info:
        loads_spec(HEAD + "  - flatten\n", file="net.yaml", overrides=["input=[8, 0, 1]"])
    assert "--set input=[8, 0, 1]" in str(info.value)


def test_independent_shape_errors_are_all_reported_dependent_ones_not_repeated():
    message = _error(
        HEAD
        + "  - conv: 3x3, 4, p=same\n    name: a\n"
        + "  - conv: 32x32, 4\n"  # fails: larger than 16x16
        + "  - conv: 3x3, 4\n"  # reads the failed layer: skipped silently
        + "  - conv: {K: 3, n_K: 3, groups: 2, from: a}\n"  # an independent second error
        + "  - dense: 10\n"
    )
    lines = message.splitlines()
    assert len(lines) == 2, lines
    assert "net.yaml:6:" in lines[0] and "K=32x32 is larger" in lines[0]
    assert "net.yaml:8:" in lines[1] and "groups=2" in lines[1]


# --- issues 14 and 15: one real error, hints that point the right way, no internals ---------


def _lines(text: str, **kwargs) -> list[str]:
    with pytest.raises(SpecError) as info:
        loads_spec(text, file="net.yaml", **kwargs)
    return str(info.value).splitlines()


def test_a_define_named_like_a_kind_reports_its_one_error_not_one_per_use():
    text = (
        "name: t\ninput: [8, 8, 3]\n"
        "define:\n  block:\n    params: {n: 4}\n    layers:\n      - conv: 3x3, $n, p=same\n"
        "layers:\n  - block: {n: 4}\n  - block: {n: 8}\n  - block\n  - flatten\n"
    )
    lines = _lines(text)
    assert lines == [
        "net.yaml:4:3: define.block: 'block' is a built-in kind; a define of that name would "
        "hide it. Hint: rename the block, e.g. 'my_block'."
    ]


def test_an_unknown_augment_suggests_the_close_one():
    text = HEAD + "  - flatten\n  - dense: 2\ntrain:\n  augment:\n    - rotation: 0.1\n"
    (line,) = _lines(text)
    assert line.startswith("net.yaml:8:7: train.augment.0: unknown key 'rotation'")
    assert "did you mean 'rotate'?" in line


@pytest.mark.parametrize("key, value", [("epochs", 3), ("data", "digits"), ("batch_size", 8)])
def test_a_train_key_dedented_out_of_train_says_where_it_belongs(key, value):
    text = HEAD + f"  - flatten\n  - dense: 2\ntrain:\n  lr_schedule: none\n{key}: {value}\n"
    lines = [x for x in _lines(text) if f"'{key}'" in x]
    assert lines == [
        f"net.yaml:8:1: unknown key '{key}'. Hint: '{key}' belongs under 'train:'; indent it there."
    ]


def test_fields_written_beside_their_kind_say_to_indent_them():
    text = HEAD + "  - conv:\n    K: 3\n    n_K: 4\n    act: relu\n  - flatten\n"
    (line,) = _lines(text)
    assert line.startswith("net.yaml:4:5: layers[0]: K, n_K, act are written beside 'conv:'")
    assert "Hint: indent K, n_K, act two spaces more than 'conv:'" in line


def test_messages_never_show_the_expanders_bookkeeping():
    text = HEAD + "  - parallel:\n      branches:\n        - [conv: '3x3, 4, p=same']\n"
    text += "  - flatten\n"
    message = "\n".join(_lines(text))
    assert "branches: list should have at least 2 items" in message
    assert "__src__" not in message and "'layers', 0" not in message


def test_the_times_limit_message_adds_up():
    define = "define:\n  a:\n    layers:\n      - bn:\n        times: 99\n"
    text = "name: t\ninput: [8, 8, 3]\n" + define
    text += "layers:\n  - bn:\n    times: 60000\n  - a:\n    times: 446\n  - flatten\n"
    (line,) = _lines(text)
    # 446 copies of 100 layers after 60,000: the figures are the item's and the spec's
    assert (
        "times: 446 expands to at least 44,600 layers, which brings the spec to at least " in line
    )
    assert "104,600, more than the limit of 100,000 layers per spec" in line
