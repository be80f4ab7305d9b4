"""The YAML loader: safe, positioned, strict about duplicates, YAML 1.2 scalars."""

import pytest

from cnnspec import yamlio
from cnnspec.errors import SpecError


@pytest.mark.parametrize(
    "text,value",
    [
        ("1e-3", 0.001),
        ("5.0e-4", 0.0005),
        ("on", "on"),
        ("off", "off"),
        ("yes", "yes"),
        ("no", "no"),
        ("true", True),
        ("False", False),
        ("0x3", "0x3"),
        ("3x3", "3x3"),
        ("012", 12),
        (".inf", float("inf")),
        ("same", "same"),
    ],
)
def test_yaml12_scalars(text, value):
    assert yamlio.loads(f"v: {text}\n").data["v"] == value


def test_positions_are_recorded_for_every_node():
    doc = yamlio.loads("a:\n  b: [1, 2]\n  c:\n    - x: 1\n", "f.yaml")
    assert str(doc.location(("a", "b"))) == "f.yaml:2:3"
    assert str(doc.location(("a", "c", 0, "x"))) == "f.yaml:4:7"
    assert str(doc.location(("a", "c", 0, "missing"))) == "f.yaml:4:7"


def test_duplicate_keys_are_rejected_with_both_lines():
    with pytest.raises(SpecError) as info:
        yamlio.loads("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert "f.yaml:3:1: duplicate key 'a'" in str(info.value)
    assert "first on line 1" in str(info.value)


@pytest.mark.parametrize(
    "tag", ["!!python/object/apply:os.system ['echo hi']", "!!python/name:os.system"]
)
def test_python_tags_are_refused(tag, tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(SpecError) as info:
        yamlio.loads(f"a: {tag.replace('echo hi', f'touch {marker}')}\n", "f.yaml")
    assert "f.yaml:1:" in str(info.value)
    assert not marker.exists()


def test_missing_file_is_a_located_error(tmp_path):
    with pytest.raises(SpecError) as info:
        yamlio.load(tmp_path / "nope.yaml")
    assert "nope.yaml: file not found" in str(info.value)


def test_merge_keys_work():
    doc = yamlio.loads("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert doc.data["other"] == {"x": 1, "y": 2}


@pytest.mark.parametrize(
    "text,words",
    [
        ("[" * 20_000, "nests deeper than 100 levels"),
        ("[&a [x, x, x, x, x, x, x, x, x, x]" + ", [*a, *a, *a, *a, *a]" * 5000 + "]", "200,000"),
        ("{a: 1, a: 2}", "duplicate key 'a'"),
        ("x" * (yamlio.MAX_BYTES + 1), "characters long"),
    ],
    ids=["deep", "aliases", "duplicate", "long"],
)
def test_parse_scalar_is_bounded_like_a_document(text, words):
    # --set values and notation tokens go through parse_scalar: same bounds as a file.
    with pytest.raises(ValueError, match=words):
        yamlio.parse_scalar(text)


def test_parse_scalar_reads_yaml12_values_and_keeps_bad_yaml_as_text():
    assert yamlio.parse_scalar("[1, 2]") == [1, 2]
    assert yamlio.parse_scalar("1e-3") == 0.001
    assert yamlio.parse_scalar("yes") == "yes"
    assert yamlio.parse_scalar("[1, 2") == "[1, 2"
    assert yamlio.parse_scalar("!!python/object:os.system x") == "!!python/object:os.system x"
