"""The spec commands, run as a user runs them (subprocesses of the real CLI)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def cli(*args, check=None):
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    if check is not None:
        assert result.returncode == check, result.stderr + result.stdout
    return result


def test_validate_never_imports_tensorflow():
    code = (
        "import sys; from cnnspec.cli import main; rc = main(['validate', 'specs/resnet152.yaml', "
        "'specs/googlenet.yaml']); assert rc == 0, rc; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]; "
        "assert not bad, bad[:5]; print('clean')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV
    )
    assert result.returncode == 0, result.stderr
    assert "clean" in result.stdout


def test_validate_reports_every_file_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ninput: [8, 8, 1]\nlayers:\n  - conv: 3x3, 4\n  - cnv: 3x3\n")
    result = cli("validate", "specs/lenet5.yaml", bad, check=2)
    assert "ok specs/lenet5.yaml" in result.stdout
    assert f"{bad}:5:5: layers[1] cnv: unknown layer kind 'cnv'" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_summary_json_has_totals_and_every_layer():
    data = json.loads(cli("summary", "specs/lenet5.yaml", "--json", check=0).stdout)
    assert data["total_params"] == 61_706
    assert data["total_macs"] == sum(row["macs"] for row in data["layers"]) > 0
    conv = next(row for row in data["layers"] if row["name"] == "conv_1")
    assert (
        conv["output_shape"] == [28, 28, 6]
        and conv["notation"] == "5x5, 6, tanh"
        and conv["params"] == 156
    )


def test_summary_table():
    out = cli("summary", "specs/googlenet.yaml", check=0).stdout
    assert "inception_4a_3x3_reduce" in out and "6,998,552" in out and "aux1" in out


def test_build_writes_a_loadable_model(tmp_path):
    out = tmp_path / "m.keras"
    result = cli("build", "specs/small_inception.yaml", "-o", out, check=0)
    assert "60,966 params" in result.stdout
    import keras

    import cnnspec.build  # noqa: F401

    assert keras.saving.load_model(out, safe_mode=True).count_params() == 60_966


def test_bad_spec_exit_2_and_missing_file(tmp_path):
    result = cli("summary", tmp_path / "nope.yaml", check=2)
    assert "nope.yaml: file not found" in result.stderr and "Traceback" not in result.stderr


def test_set_overrides_apply():
    data = json.loads(
        cli(
            "summary", "specs/lenet5.yaml", "--json", "--set", "layers.7.dense=5, softmax", check=0
        ).stdout
    )
    assert data["output_shape"] == [5]


def test_committed_schema_is_current_and_validates_the_specs(tmp_path):
    out = tmp_path / "s.json"
    cli("schema", "-o", out, check=0)
    assert out.read_text() == (ROOT / "specs" / "cnnspec.schema.json").read_text(), (
        "run: cnnspec schema -o specs/cnnspec.schema.json"
    )
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = json.loads(out.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, (path.name, errors[0].message[:300])
    assert list(
        validator.iter_errors(
            {"name": "x", "input": [8, 8, 1], "layers": [{"conv": {"K": 3, "bogus": 1}}]}
        )
    )


def test_graph_dot_and_svg(tmp_path):
    dot = tmp_path / "a.dot"
    cli("graph", "specs/small_resnet.yaml", "-o", dot, check=0)
    text = dot.read_text()
    assert (
        text.startswith('digraph "small_resnet"')
        and '"basic_2_shortcut_bn" -> "basic_2_add"' in text
    )
    import shutil

    svg = tmp_path / "a.svg"
    result = cli("graph", "specs/small_resnet.yaml", "-o", svg)
    if shutil.which("dot"):
        assert result.returncode == 0 and svg.read_text().lstrip().startswith(("<?xml", "<svg"))
    else:
        assert result.returncode == 1 and "Graphviz" in result.stderr and not svg.exists()
