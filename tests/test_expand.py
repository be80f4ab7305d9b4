"""The expander: define / times / ``${...}`` expressions, hostile input bounded before the work.

Every error test asserts the message and its location (``net.yaml:line:col`` or the ``--set``).
"""

import pytest

from cnnspec.errors import SpecError
from cnnspec.spec import loads_spec
from cnnspec.spec.expand import MAX_DEPTH, MAX_LAYERS
from cnnspec.spec.expressions import FUNCTIONS, MAX_EXPRESSION, ExpressionError, evaluate

HEAD = "name: t\ninput: [16, 16, 1]\npreprocess: none\n"


def _error(text: str, **kwargs) -> str:
    with pytest.raises(SpecError) as info:
        loads_spec(text, file="net.yaml", **kwargs)
    return str(info.value)


def _define(body: str, params: str = "{n: 8}", use: str = "- blk: {n: 8}") -> str:
    """A spec with one define 'blk' (body lines at 6 spaces) used at the top level."""
    return (
        HEAD
        + f"define:\n  blk:\n    params: {params}\n    layers:\n{body}"
        + f"layers:\n  {use}\n  - flatten\n"
    )


# --- issue 9: bounded expansion -------------------------------------------------------------


def test_huge_times_is_refused_before_expanding_located_at_times():
    message = _error(HEAD + "layers:\n  - conv: 3x3, 4, p=same\n    times: 1000000000\n")
    assert message.startswith("net.yaml:6:5: layers[0] conv: times: 1000000000 expands to")
    assert f"more than the limit of {MAX_LAYERS:,} layers" in message
    assert len(message.splitlines()) == 1


def test_huge_times_through_set_is_blamed_on_the_set():
    message = _error(
        HEAD + "layers:\n  - conv: 3x3, 4, p=same\n  - flatten\n",
        overrides=["layers.0.times=1000000000"],
    )
    assert message.startswith("--set layers.0.times=1000000000: layers[0] conv: times: 1000000000")
    assert f"limit of {MAX_LAYERS:,}" in message


def test_nested_defines_that_multiply_past_the_limit_are_refused():
    # d0 -> 10 x d1 -> 10 x d2 ... : 10**8 layers if expanded
    defines = "".join(
        f"  d{k}:\n    layers:\n      - d{k + 1}:\n        times: 10\n" for k in range(7)
    )
    text = HEAD + "define:\n" + defines + "  d7:\n    layers:\n      - bn\n"
    text += "layers:\n  - d0:\n    times: 10\n  - flatten\n"
    message = _error(text)
    assert "expands to" in message and f"limit of {MAX_LAYERS:,}" in message
    assert message.startswith("net.yaml:") and "times:" in message


def test_nesting_deeper_than_the_limit_is_refused():
    depth = MAX_DEPTH + 5
    defines = "".join(f"  d{k}:\n    layers:\n      - d{k + 1}\n" for k in range(depth))
    text = HEAD + "define:\n" + defines + f"  d{depth}:\n    layers:\n      - bn\n"
    text += "layers:\n  - d0\n  - flatten\n"
    message = _error(text)
    assert f"blocks are nested more than {MAX_DEPTH} deep" in message
    assert message.startswith("net.yaml:")


# --- issue 9: bounded arithmetic, located errors ---------------------------------------------


@pytest.mark.parametrize(
    "expr, part",
    [
        ("n**n**n", "goes out of range"),
        ("n**5000", "goes out of range"),
        ("n/0", "division by zero in 'n/0'"),
        ("n // (n - n)", "division by zero"),
        ("(-n)**0.5", "fractional power of a negative number"),
        ("1e308 * 10", "goes out of range"),
        ("n +* 2", "cannot read the expression"),
        ("__import__('os')", "unknown function '__import__'"),
        ("n.real", "only arithmetic on parameters is allowed"),
        ("m * 2", "unknown parameter 'm'"),
        ("ceil(n, 2)", "ceil() takes 1 numbers, received 2"),
        ("min(n)", "min() takes 2 to 64 numbers, received 1"),
        ("0.5 ** -5000", "goes out of range"),
        ("10.0 ** 400", "goes out of range"),
    ],
)
def test_bad_expressions_are_located_errors(expr, part):
    message = _error(_define("      - conv: 3x3, ${" + expr + "}, p=same\n", "{n: 10}"))
    assert part in message, message
    assert message.startswith("net.yaml:8:") and "define.blk.layers[0] conv" in message
    assert len(message.splitlines()) == 1


def test_long_expressions_are_refused_before_parsing():
    expr = "+".join(["n"] * MAX_EXPRESSION)
    message = _error(_define("      - conv: 3x3, ${" + expr + "}, p=same\n"))
    assert f"more than {MAX_EXPRESSION}" in message and message.startswith("net.yaml:8:")


def test_a_parameter_of_the_wrong_type_is_a_located_error():
    message = _error(_define("      - conv: 3x3, ${n*2}, p=same\n", use="- blk: {n: abc}"))
    assert "'n*2' computes with 'abc', which is not a number" in message
    assert message.startswith("net.yaml:8:")


def test_a_number_as_a_parameter_name_is_a_located_error():
    # {n:, 64} was a TypeError; whichever stage refuses it, the answer is one located line
    for params, use in (("{n:, 64}", "- blk: {n: 8}"), ("{n: 8}", "- blk: {n:, 64}")):
        message = _error(_define("      - conv: 3x3, $n, p=same\n", params, use))
        assert message.startswith("net.yaml:") and len(message.splitlines()) <= 2, message
    message = _error(_define("      - conv: 3x3, $n, p=same\n", params="{n: 8, 64: 1}"))
    assert message.startswith("net.yaml:6:") and "received 64" in message
    assert len(message.splitlines()) == 1
    message = _error(_define("      - conv: 3x3, $n, p=same\n", params="{n: 8, my-n: 1}"))
    assert message.startswith("net.yaml:6:") and "must be a name, received 'my-n'" in message
    message = _error(_define("      - conv: 3x3, $n, p=same\n", use="- blk: {n: 8, 64: 1}"))
    assert "unknown parameter '64' of block 'blk'" in message


@pytest.mark.parametrize("name", ["conv", "block", "residual", "times"])
def test_a_define_may_not_shadow_a_built_in_kind(name):
    text = HEAD + f"define:\n  {name}:\n    layers:\n      - bn\nlayers:\n  - conv: 3x3, 4\n"
    text += "  - flatten\n"
    message = _error(text)
    assert message.startswith(f"net.yaml:5:3: define.{name}: '{name}' is a ")
    rename = "my_block" if name == "block" else f"{name}_block"
    assert "a define of that name would hide it" in message and f"'{rename}'" in message
    assert len(message.splitlines()) == 1  # the built-in conv it also uses still counts


def test_the_repeat_index_is_not_a_parameter_name():
    message = _error(_define("      - conv: 3x3, 4\n", params="{i: 1}"))
    assert "'i' is the repeat index of times:, not a parameter name" in message
    assert message.startswith("net.yaml:6:")


# --- issue 10: bugs --------------------------------------------------------------------------


def test_a_list_default_for_a_define_parameter_is_accepted():
    spec = loads_spec(
        _define(
            "      - zeropad: $pad\n      - conv: 3x3, $n\n",
            params="{n: 8, pad: [[0, 1], [0, 1]]}",
            use="- blk: {n: 8}",
        )
    )
    # 16 -> 17 (one row and column after) -> 15 (valid 3x3)
    assert spec.graph.nodes[spec.graph.output].shape == (15 * 15 * 8,)


def test_a_refused_expression_is_reported_once_at_the_expression():
    body = "      - bn\n      - conv: 3x3, ${n +* 2}, p=same\n"
    text = _define(body, use="- blk: {n: 4}\n  - blk: {n: 8}\n  - blk: {n: 16}")
    message = _error(text)
    lines = message.splitlines()
    assert len(lines) == 1, message
    assert lines[0].startswith("net.yaml:9:9: layers[0] blk > define.blk.layers[1] conv:")
    assert "cannot read the expression 'n +* 2'" in lines[0]


# --- issue 10: expressions and the repeat index ----------------------------------------------


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("min(n, 3, 7)", 3),
        ("max(n, 64)", 64),
        ("round(n / 4)", 2),
        ("round(n / 3, 2)", 3.33),
        ("floor(n / 4)", 2),
        ("ceil(n / 4)", 3),
        ("int(n * 0.75)", 7),
        ("abs(-n)", 10),
        ("2 if n > 5 else 1", 2),
        ("1 <= n < 10", False),
        ("max(8, int(n * 1.1 + 4) // 8 * 8)", 8),  # make-divisible, written once
    ],
)
def test_expression_functions(expr, expected):
    assert evaluate(expr, {"n": 10}) == expected


def test_every_function_is_tested():
    tested = {
        "min(n, 3, 7)",
        "max(n, 64)",
        "round(n / 4)",
        "floor(n / 4)",
        "ceil(n / 4)",
        "int(n * 0.75)",
        "abs(-n)",
    }
    assert {t.split("(")[0] for t in tested} == set(FUNCTIONS)


def test_expressions_never_evaluate_code():
    for expr in ("().__class__", "[x for x in (1,)]", "lambda: 1", "open('x')", "n.bit_length()"):
        with pytest.raises(ExpressionError):
            evaluate(expr, {"n": 1})


def test_make_divisible_rounding_in_a_define():
    body = "      - conv: 1x1, ${max(8, int(n * 0.75 + 4) // 8 * 8)}\n"
    spec = loads_spec(_define(body, params="{n: null}", use="- blk: {n: 100}"))
    assert spec.graph.nodes[spec.graph.output].shape == (16 * 16 * 72,)


def test_the_repeat_index_changes_widths_and_rates_along_a_stage():
    spec = loads_spec(
        HEAD
        + "layers:\n  - conv: {K: 3, n_K: '${8 * (i + 1)}', p: same, d: '${i + 1}'}\n"
        + "    times: 3\n  - flatten\n"
    )
    convs = [n.spec for n in spec.graph.nodes.values() if n.kind == "conv"]
    assert [c.n_K for c in convs] == [8, 16, 24]
    assert [c.d for c in convs] == [(1,), (2,), (3,)]


def test_the_repeat_index_reaches_a_define_body_and_if_keeps_items():
    body = (
        "      - conv: 3x3, $n, s=${2 if i == 0 else 1}, p=same\n"
        "      - dropout: ${0.1 * i}\n        if: ${i > 0}\n"
    )
    spec = loads_spec(_define(body, params="{n: 8}", use="- blk: {n: 8}\n    times: 3"))
    kinds = [n.kind for n in spec.graph.nodes.values() if n.kind in ("conv", "dropout")]
    assert kinds == ["conv", "conv", "dropout", "conv", "dropout"]
    assert spec.graph.nodes[spec.graph.output].shape == (8 * 8 * 8,)
    rates = [n.spec.rate for n in spec.graph.nodes.values() if n.kind == "dropout"]
    assert rates == pytest.approx([0.1, 0.2])


def test_the_repeat_index_outside_times_is_explained():
    message = _error(HEAD + "layers:\n  - conv: 3x3, ${4 + i}\n  - flatten\n")
    assert message.startswith("net.yaml:5:5: layers[0] conv: unknown parameter 'i'")
    assert "$i is the repeat index (0, 1, ...) inside an item with times:" in message


def test_if_needs_a_boolean():
    message = _error(HEAD + "layers:\n  - bn:\n    if: 3\n  - flatten\n")
    assert message.startswith("net.yaml:6:5: layers[0] bn: if: needs true or false, received 3")


def test_spec_params_are_read_everywhere_and_set_by_overrides():
    text = HEAD + "params: {w: 4}\nlayers:\n  - conv: 3x3, ${2 * w}\n  - flatten\n"
    assert loads_spec(text).graph.nodes["flatten_1"].shape == (14 * 14 * 8,)
    spec = loads_spec(text, overrides=["params.w=6"])
    assert spec.graph.nodes["flatten_1"].shape == (14 * 14 * 12,)


def test_times_numbers_the_names_of_its_copies():
    text = HEAD + "layers:\n  - conv: 3x3, 4, p=same\n    name: x\n    times: 2\n  - flatten\n"
    assert [n for n in loads_spec(text).graph.nodes if n.startswith("x")] == ["x_1", "x_2"]


def test_a_syntax_warning_never_reaches_the_terminal(recwarn):
    with pytest.raises(ExpressionError, match="cannot read the expression"):
        evaluate("1else 2", {})
    assert not [w for w in recwarn if issubclass(w.category, SyntaxWarning)]


# --- issue 14: spec params inside define bodies; and / or / not; bounded function arguments ---


def test_spec_params_are_read_inside_a_define_body_and_shadowed_by_its_own():
    text = (
        HEAD
        + "params: {w: 4, n: 100}\n"
        + "define:\n  blk:\n    params: {n: 2}\n    layers:\n"
        + "      - conv: 3x3, ${w * n}, p=same\n"
        + "layers:\n  - blk\n  - flatten\n"
    )
    spec = loads_spec(text)
    assert spec.graph.nodes["flatten_1"].shape == (16 * 16 * 8,)  # w from the spec, n its own
    spec = loads_spec(text, overrides=["params.w=6"])
    assert spec.graph.nodes["flatten_1"].shape == (16 * 16 * 12,)


def test_a_scales_params_reach_inside_a_define_body():
    text = (
        HEAD
        + "params: {w: 4}\nscales:\n  big: {params: {w: 16}}\n"
        + "define:\n  blk:\n    layers:\n      - conv: 3x3, $w, p=same\n"
        + "layers:\n  - blk\n  - flatten\n"
    )
    assert loads_spec(text).graph.nodes["flatten_1"].shape == (16 * 16 * 4,)
    assert loads_spec(text, scale="big").graph.nodes["flatten_1"].shape == (16 * 16 * 16,)


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("i > 0 and t > 1", True),
        ("i > 0 and t > 5", False),
        ("i == 0 or t > 5", False),
        ("not i > 0", False),
        ("not (i > 0 and t > 5)", True),
        ("True and not False", True),
        ("true or false", True),
        ("t > 0 and 64 // t > 2", True),
        ("i > 5 and 64 // (i - i) > 2", False),  # short-circuits: never divides by zero
    ],
)
def test_conditions_combine_with_and_or_not(expr, expected):
    assert evaluate(expr, {"i": 1, "t": 2}) is expected


def test_arithmetic_on_conditions_in_a_repeated_define_is_reported_once():
    body = "      - bn\n      - dropout: 0.1\n        if: ${(i > 0) * (t > 1)}\n"
    text = (
        HEAD
        + "params: {t: 2}\n"
        + _define(body, params="{}", use="- blk: {}\n    times: 3")[len(HEAD) :]
    )
    lines = _error(text).splitlines()
    assert len(lines) == 1 and "Hint: combine conditions with and / or / not" in lines[0]


def test_if_with_and_keeps_the_right_copies():
    body = "      - bn\n      - dropout: 0.1\n        if: ${i > 0 and t > 1}\n"
    text = (
        HEAD
        + "params: {t: 2}\n"
        + _define(body, params="{}", use="- blk: {}\n    times: 3")[len(HEAD) :]
    )
    kinds = [n.kind for n in loads_spec(text).graph.nodes.values() if n.kind in ("bn", "dropout")]
    assert kinds == ["bn", "bn", "dropout", "bn", "dropout"]


def test_arithmetic_on_conditions_says_to_combine_them_with_and():
    with pytest.raises(ExpressionError) as info:
        evaluate("(i > 0) * (t > 1)", {"i": 1, "t": 2})
    assert "computes with a condition (true or false) where a number is needed" in str(info.value)
    assert "and / or / not" in info.value.hint
    with pytest.raises(ExpressionError, match="'or' takes conditions"):
        evaluate("i > 0 or t", {"i": 0, "t": 2})


@pytest.mark.parametrize(
    "expr",
    [
        "round(n, -1000000000000000)",
        "round(n, -100000000)",
        "round(n, 1000000000000000)",
        "round(n, 2.5)",
        "min(n, 10 ** 16)",
        "max(n, -(10 ** 16))",
        "floor(1e300)",
        "ceil(-1e300)",
        "int(1e16)",
        "abs(-(10 ** 15) - 1)",
    ],
)
def test_every_function_refuses_huge_arguments_before_computing(expr):
    # On the old code round(n, -10**15) hung: 10**(10**15) was being built.
    with pytest.raises(ExpressionError, match="out of range|digits"):
        evaluate(expr, {"n": 1234})


def test_every_function_has_a_huge_argument_case():
    cases = test_every_function_refuses_huge_arguments_before_computing.pytestmark[0].args[1]
    assert {c.split("(")[0] for c in cases} == set(FUNCTIONS)


def test_round_digits_within_the_bound_work():
    assert evaluate("round(n, -2)", {"n": 1234}) == 1200
    assert evaluate("round(n / 3, 15)", {"n": 3}) == 1
