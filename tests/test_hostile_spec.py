"""Hostile specs (issue 9): every one is a located one-line error, fast, never an internal error.

Each case asserts the message and where it points, not only that something failed.
"""

import os
import re
import time

import pytest
from conftest import ROOT

from cnnspec import yamlio
from cnnspec.cli import main
from cnnspec.errors import SpecError, did_you_mean
from cnnspec.shapes import MAX_DIM, MAX_ELEMENTS, MAX_PARAMS
from cnnspec.spec import loads_spec
from cnnspec.spec.expand import REGISTRY
from cnnspec.spec.types import ACTIVATIONS

HEAD = "name: t\ninput: [16, 16, 1]\nlayers:\n"


def problems(text: str, file: str = "f.yaml", overrides=()) -> list[str]:
    """The lines of the SpecError that loading ``text`` raises (fails if it loads)."""
    started = time.perf_counter()
    with pytest.raises(SpecError) as info:
        loads_spec(text, file, overrides)
    assert time.perf_counter() - started < 30, "a hostile spec must be refused, not expanded"
    return str(info.value).splitlines()


def one(text: str, **kw) -> str:
    lines = problems(text, **kw)
    assert len(lines) == 1, lines
    return lines[0]


# --- YAML -------------------------------------------------------------------------------------


def _bomb(levels: int = 9) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_in_bounded_time_and_memory():
    # 10**9 values once expanded: refused after counting past the bound, not after 4 GB.
    line = one(_bomb() + HEAD + "  - flatten\n")
    assert "more than 200,000 values, counting every use of an alias" in line
    assert re.match(r"f\.yaml:\d+:\d+: ", line)
    assert "alias (*name) repeats" in line


def test_recursive_anchor_is_a_located_error():
    assert one("a: &a [*a]\n" + HEAD + "  - flatten\n") == (
        "f.yaml:1:4: an alias refers to the anchor that contains it (a recursive structure). "
        "Hint: an alias (*name) can only repeat a node that is complete where it is used."
    )


def test_recursive_merge_key_is_a_located_error():
    line = one("a: &a {x: 1, <<: *a}\n" + HEAD + "  - flatten\n")
    assert line.startswith("f.yaml:1:")
    assert "merges a mapping into itself" in line


def test_merge_keys_keep_yaml_semantics_without_blowing_up():
    # Each level merges the previous one 10 times: with PyYAML's flatten this grows 10**n.
    lines = ["m0: &m0 {a: 1, b: 2}"]
    for i in range(1, 30):
        lines.append(f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 10) + f"], k{i}: {i}}}")
    lines.append("own: {<<: *m0, a: 5}")
    started = time.perf_counter()
    doc = yamlio.loads("\n".join(lines) + "\n", "m.yaml")
    assert time.perf_counter() - started < 20  # 10**29 merged keys would never finish
    assert doc.data["own"] == {"a": 5, "b": 2}  # the mapping's own key wins, no duplicate error
    assert doc.data["m29"]["k1"] == 1 and len(doc.data["m29"]) == 31


@pytest.mark.parametrize(
    "char,name,col", [("\x00", "NUL", 12), ("\x1b", "ESC", 12), ("\x07", "BEL", 12)]
)
def test_control_characters_are_located(char, name, col):
    line = one(HEAD + f"  - flatten{char}\n")
    assert line.startswith(f"f.yaml:4:{col}: the character U+{ord(char):04X}")
    assert name in line and "is not allowed in YAML" in line
    assert "ReaderError" not in line


def test_non_utf8_file_gives_line_and_column(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes((HEAD + "  - flatten  # caf\xe9\n").encode("latin-1"))
    with pytest.raises(SpecError) as info:
        yamlio.load(path)
    assert str(info.value) == (
        f"{path}:4:19: the file is not UTF-8 text, received the byte 0xe9. "
        "Hint: save the file as UTF-8."
    )


def test_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)  # nobody writes: opening it for read would block for ever
    with pytest.raises(SpecError) as info:
        yamlio.load(fifo)
    assert "is not a regular file (a pipe, device or socket)" in str(info.value)
    assert str(info.value).startswith(str(fifo))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_device_is_refused_without_reading_it():
    with pytest.raises(SpecError, match=r"^/dev/zero: is not a regular file"):
        yamlio.load("/dev/zero")


def test_file_over_the_size_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as f:
        f.truncate(yamlio.MAX_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(SpecError) as info:
        yamlio.load(path)
    assert f"the file is {yamlio.MAX_BYTES + 1:,} bytes, more than the {yamlio.MAX_BYTES:,}" in (
        str(info.value)
    )


def test_directory_is_refused(tmp_path):
    with pytest.raises(SpecError, match="is a directory, not a spec file"):
        yamlio.load(tmp_path)


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 10_000 + "]" * 10_000,
        "{a: " * 5_000 + "1" + "}" * 5_000,
        "\n" + "".join("  " * i + "- \n" for i in range(1, 300)) + "  " * 300 + "- 1",
    ],
    ids=["flow list", "flow map", "block list"],
)
def test_deep_yaml_is_a_located_error_not_recursion(nested):
    line = one("x: " + nested + "\n" + HEAD + "  - flatten\n")
    assert re.match(r"f\.yaml:\d+:\d+: the document nests deeper than 100 levels\.", line)


def test_depth_through_aliases_is_bounded():
    lines = ["a0: &a0 " + "[" * 60 + "]" * 60]
    lines += [f"a{i}: &a{i} " + "[" * 60 + f"*a{i - 1}" + "]" * 60 for i in range(1, 5)]
    line = one("\n".join(lines) + "\n" + HEAD + "  - flatten\n")
    assert "nests deeper than 100 levels. Hint: flatten the structure (an alias" in line


def test_unclosed_bracket_is_reported_where_it_opens():
    line = one(HEAD + "  - conv: [3, 8\n  - flatten\n  - dense: 10\n")
    assert line.startswith("f.yaml:4:11: invalid YAML: parsing a flow sequence that starts here")
    assert "on line 6, column 10" in line
    assert "close every '['" in line


def test_unclosed_quote_is_reported_where_it_opens():
    line = one(HEAD + "  - conv: '3x3, 8\n  - flatten\n")
    assert line.startswith("f.yaml:4:11: invalid YAML: scanning a quoted scalar that starts here")


def test_dates_stay_strings():
    spec = loads_spec(HEAD + "  - flatten\ntrain: {data: 2024-01-01}\n")
    assert spec.train.data == "2024-01-01"
    assert yamlio.loads("d: 2001-12-14t21:59:43.10-05:00\n").data["d"] == (
        "2001-12-14t21:59:43.10-05:00"
    )


def test_quoted_yes_is_not_a_bool():
    assert one(HEAD + "  - gavgpool: {keepdims: 'yes'}\n") == (
        "f.yaml:4:16: layers[0] gavgpool: keepdims: expected true or false, received 'yes'."
    )
    # ... nor is a bare yes (YAML 1.2 reads it as a string)
    assert "received 'yes'" in one(HEAD + "  - conv: {K: 3, n_K: 4, bias: yes}\n")


def test_bool_is_not_a_number():
    assert one("name: t\ninput: [true, 16, 1]\nlayers:\n  - flatten\n") == (
        "f.yaml:2:1: input: expected a number, received true."
    )
    assert "expected a number, received false" in one(HEAD + "  - flatten\n  - dense: false\n")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_refused(value):
    line = one(HEAD + f"  - rescale: {{scale: {value}}}\n")
    assert line.startswith("f.yaml:4:")
    assert "rescale: scale: input should be a finite number" in line


def test_huge_integer_literal_is_a_located_error():
    line = one(HEAD + "  - dense: " + "9" * 5000 + "\n")
    assert line.startswith("f.yaml:4:")
    assert "a number of 5000 digits is too long" in line


# --- size bounds ------------------------------------------------------------------------------


def test_dense_10_to_the_300_is_a_size_error_not_an_overflow(capsys, tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(HEAD + "  - flatten\n  - dense: 1" + "0" * 300 + "\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"{path}:5:5: layers[1] dense: the output would be 1.0e300, a dimension larger than "
        f"{MAX_DIM:,}. Hint: use fewer units / kernels (n_K) or a smaller input."
    )


def test_float_kernel_count_is_refused():
    line = one(HEAD + "  - conv: {K: 3, n_K: 1e38}\n")
    assert line.startswith("f.yaml:4:18: layers[0] conv: n_K: ")
    assert "1e+38" in line
    line = one(HEAD + "  - conv: {K: 3, n_K: 1e15}\n")
    assert f"a dimension larger than {MAX_DIM:,}" in line


def test_input_larger_than_a_tensor_can_be_is_refused():
    line = one("name: t\ninput: [100000, 100000, 3]\nlayers:\n  - conv: 3x3, 64\n")
    assert line == (
        f"f.yaml:2:1: input: the input is 100000x100000x3 = 30,000,000,000 values per sample, "
        f"more than {MAX_ELEMENTS:,}. Hint: downsample earlier (s=2, pooling) or use a smaller "
        "input."
    )


def test_one_layer_with_too_many_weights_is_refused():
    line = one("name: t\ninput: [4096, 4096, 3]\nlayers:\n  - flatten\n  - dense: 1000\n")
    assert line.startswith("f.yaml:5:5: layers[1] dense: the layer would have 50,331,649,000")
    assert f"more than {MAX_ELEMENTS:,}" in line


def test_model_with_too_many_parameters_is_refused():
    dense = "  - dense: 30000\n"
    line = one("name: t\ninput: [30000]\nlayers:\n" + dense * 6)
    # 5 layers of 900,030,000 reach 4.5 G > 2**32 at the fifth
    assert line.startswith("f.yaml:8:5: layers[4] dense: the model would reach 4,500,150,000")
    assert f"more than {MAX_PARAMS:,}" in line


def test_200_nested_residual_blocks_are_a_located_error():
    text = HEAD
    for i in range(200):
        pad = "  " * (3 * i + 1)
        text += f"{pad}- residual:\n{pad}    body:\n"
    text += "  " * 601 + "- conv: 3x3, 1, p=same\n"
    line = one(text)
    assert re.match(r"f\.yaml:\d+:\d+: the document nests deeper than 100 levels\.", line)


# --- messages ---------------------------------------------------------------------------------


def test_schema_errors_do_not_hide_shape_errors_or_the_train_check():
    text = HEAD + (
        "  - conv: {K: 3, n_K: 8, bogus: 1}\n"  # schema error
        "  - conv: 30x30, 8\n"  # reads the failed layer: skipped, no second error
        "  - conv: 30x30, 8\n"  # independent shape error
        "    from: input\n"
        "  - conv: 3x3, 8, rleu\n"  # expansion error
        "  - dense: 10, softmax\n"  # independent shape error
        "    from: input\n"
        "train: {validation_split: 0.9, test_split: 0.5}\n"
    )
    assert problems(text) == [
        "f.yaml:4:26: layers[0] conv: unknown key 'bogus'. "
        "Hint: conv takes name, from, K, s, p, d, n_K, groups, act, bias.",
        "f.yaml:6:5: layers[2] conv: K=30x30 is larger than its 16x16 input (p=0). "
        "Hint: use p=same or p=7, or a smaller K.",
        "f.yaml:8:5: layers[3] conv: unknown activation, received 'rleu' (did you mean 'relu'?).",
        "f.yaml:9:5: layers[4] dense: dense needs a flat input but follows a spatial tensor of "
        "shape 16x16x1 without flatten. Hint: add '- flatten' or '- gavgpool' before it "
        "(or pointwise: true).",
        "f.yaml:11:1: train: validation_split + test_split leaves under 10% for training; "
        "received 0.9 + 0.5.",
    ]


def test_named_failed_layer_is_skipped_by_its_readers():
    text = HEAD + "  - conv: {K: 3, n_K: 8, bogus: 1}\n    name: a\n  - conv: 3x3, 8\n    from: a\n"
    assert len(problems(text)) == 1


def test_unknown_top_level_key_hint_names_its_owner():
    assert one(HEAD + "  - flatten\nfoo: 1\n") == (
        "f.yaml:5:1: unknown key 'foo'. Hint: a spec takes "
        + ", ".join(
            f.alias or n for n, f in __import__("cnnspec.spec").spec.ModelSpec.model_fields.items()
        )
        + "."
    )
    assert "Hint: train takes data, " in one(HEAD + "  - flatten\ntrain: {foo: 1}\n")


def test_set_errors_are_blamed_on_the_set():
    assert one(HEAD + "  - flatten\n", overrides=["a.b=1"]).startswith(
        "--set a.b=1: unknown key 'a'. Hint: a spec takes name,"
    )
    assert one(HEAD + "  - flatten\n", overrides=["train.foo.bar=1"]).startswith(
        "--set train.foo.bar=1: train: unknown key 'foo'."
    )


def test_misspelt_activation_in_the_notation():
    assert one(HEAD + "  - conv: 3x3, 8, rleu\n") == (
        "f.yaml:4:5: layers[0] conv: unknown activation, received 'rleu' (did you mean 'relu'?)."
    )


@pytest.mark.parametrize(
    "word,kind",
    [
        ("gap", "gavgpool"),
        ("GlobalAveragePooling2D", "gavgpool"),
        ("Conv2D", "conv"),
        ("BatchNormalization", "bn"),
        ("deconv", "convT"),
        ("Conv2DTranspose", "convT"),
        ("drop_path", "droppath"),
        ("StochasticDepth", "droppath"),
        ("layer_scale", "layerscale"),
        ("MaxPooling2D", "maxpool"),
        ("Dense", "dense"),
        ("Linear", "dense"),
        ("ReLU", "act"),
        ("Concatenate", "concat"),
    ],
)
def test_synonyms_are_suggested(word, kind):
    assert kind in REGISTRY  # the table only suggests kinds that exist
    assert one(HEAD + f"  - {word}\n").endswith(
        f"unknown layer kind '{word}'. Hint: did you mean '{kind}'?"
    )


def test_synonym_table_never_suggests_what_is_not_a_choice():
    assert did_you_mean("gap", ["conv", "dense"]) == ""
    assert did_you_mean("SiLU", ACTIVATIONS) == "did you mean 'swish'?"


@pytest.mark.parametrize(
    "recipe,where,wrong,guess",
    [
        ("{early_stopping: {monitor: val_los}}", "6:26", "val_los", "val_loss"),
        ("{early_stopping: {monitor: val_acc}}", "6:26", "val_acc", "val_accuracy"),
        (
            "{schedule: {reduce_on_plateau: {monitor: accurasy}}}",
            "6:40",
            "accurasy",
            "accuracy",
        ),
        ("{metrics: [top3], early_stopping: {monitor: val_top5}}", "6:", "val_top5", "val_top3"),
    ],
)
def test_monitor_must_be_a_logged_metric(recipe, where, wrong, guess):
    line = one(HEAD + "  - flatten\n  - dense: 10, softmax\ntrain: " + recipe + "\n")
    assert line.startswith(f"f.yaml:{where}")
    assert f"'{wrong}' is not a metric this recipe logs, received monitor={wrong}" in line
    assert f"did you mean '{guess}'?" in line


def test_monitor_with_heads_uses_the_output_names():
    googlenet = (ROOT / "specs" / "googlenet.yaml").read_text()
    lines = problems(googlenet, overrides=["train.early_stopping.monitor=val_aux1_los"])
    assert len(lines) == 1 and lines[0].startswith("--set train.early_stopping.monitor")
    assert "did you mean 'val_aux1_loss'?" in lines[0]
    # The main output's metrics are logged under both names (callbacks.LogNames): both monitor.
    for name in ("val_accuracy", "val_predictions_accuracy"):
        spec = loads_spec(googlenet, overrides=[f"train.early_stopping.monitor={name}"])
        assert spec.train.monitor_mode(name) == "max"
    spec = loads_spec(googlenet, overrides=[f"train.early_stopping.monitor=val_{'aux1'}_loss"])
    assert spec.train.early_stopping.monitor == "val_aux1_loss"


@pytest.mark.parametrize(
    "text",
    [
        _bomb() + HEAD + "  - flatten\n",
        HEAD + "  - flatten\x00\n",
        HEAD + "  - dense: 1" + "0" * 300 + "\n",
        "name: t\ninput: [true, 16, 1]\nlayers:\n  - flatten\n",
        "x: " + "[" * 5000 + "]" * 5000 + "\n",
    ],
    ids=["bomb", "nul", "dense", "bool", "deep"],
)
def test_cli_exit_2_never_internal(text, tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:") and "internal error" not in err and "Traceback" not in err


def test_200_nested_defines_are_a_located_error():
    lines = [
        "name: t",
        "input: [8, 8, 2]",
        "define:",
        "  b0:",
        "    layers:",
        "      - conv: 1x1, 2",
    ]
    for i in range(1, 200):
        lines += [f"  b{i}:", "    layers:", "      - residual:", f"          body: [b{i - 1}]"]
    lines += ["layers:", "  - b199"]
    line = one("\n".join(lines) + "\n")
    assert re.match(r"f\.yaml:\d+:\d+: .*blocks are nested more than 32 deep", line)


def test_graph_compiler_bounds_nesting_of_specs_built_in_python():
    from cnnspec.spec import ModelSpec
    from cnnspec.spec.graph import compile_graph

    item = {"kind": "conv", "K": 1, "n_K": 2}
    for _ in range(200):
        item = {"kind": "residual", "body": [item]}
    spec = ModelSpec.model_validate({"name": "t", "input": [8, 8, 2], "layers": [item]})
    with pytest.raises(SpecError, match="blocks are nested more than 32 deep"):
        compile_graph(spec)


def test_hostile_set_values_are_bounded_and_blamed_on_the_set():
    deep = "[" * 500
    line = one(HEAD + "  - flatten\n", overrides=[f"train.metrics={deep}"])
    assert line.startswith("--set train.metrics=[[[")
    assert "the value nests deeper than 100 levels" in line
    # a huge value is shown cut, on one line
    lines = problems(HEAD + "  - flatten\n", overrides=["train.metrics=[" + "x, " * 5000 + "]"])
    assert lines and all(len(line) < 400 for line in lines)


def test_bracket_left_open_at_the_end_is_reported_where_it_opens():
    line = one(HEAD + "  - flatten\ntrain: {metrics: [accuracy, ")
    # both are open: the outer one is reported
    assert line.startswith("f.yaml:5:8: invalid YAML: the '{' that opens here is not closed")


def test_a_head_with_a_failed_item_is_not_shape_checked_without_it():
    text = HEAD + (
        "  - conv: 3x3, 8, p=same\n    name: a\n  - gavgpool\n  - dense: 10, softmax\n"
        "heads:\n  aux:\n    from: a\n    layers:\n"
        "      - flaten\n      - dense: 10, softmax\n"
    )
    # without the flatten that failed, the dense layer would get a spurious shape error
    assert problems(text) == [
        "f.yaml:12:9: heads.aux.layers[0] flaten: unknown layer kind 'flaten'. "
        "Hint: did you mean 'flatten'?"
    ]


@pytest.mark.parametrize(
    "item", ["rescale: {scale: [.nan, 1]}", "normalize: {mean: .inf}", "rescale: {scale: abc}"]
)
def test_a_value_refused_by_every_branch_of_a_union_is_one_line(item):
    """scale/mean take a number or a list: a bad value is one problem, not one per branch."""
    line = one(HEAD + f"  - {item}\n")
    assert line.startswith("f.yaml:4:") and ".float" not in line and "list[" not in line, line
