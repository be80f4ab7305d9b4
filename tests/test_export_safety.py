"""Loading models is safe: checked .keras archives, safe mode, no pickles, no code from files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from _model_fixtures import digits_run, run_cli, write_digit_pngs

from cnnspec.errors import RunError
from cnnspec.modelio import find_model, load_keras_model


def _save_lambda_model(path: Path, marker: Path) -> None:
    """A model whose Lambda layer writes ``marker`` whenever the layer runs (or is rebuilt)."""
    import keras

    inp = keras.Input((16, 16, 1))
    # The path must be a constant inside the lambda's code (Keras serialises code, not closures).
    code = f"lambda x: (open({str(marker)!r}, 'a').close(), x)[1]"
    touch = keras.layers.Lambda(eval(code), name="sneaky")  # test-only: builds a hostile file
    x = keras.layers.Flatten()(touch(inp))
    keras.Model(inp, keras.layers.Dense(10, activation="softmax")(x)).save(path)
    marker.unlink()  # building the model ran the lambda once


def test_a_lambda_layer_is_refused_before_any_code_runs(tmp_path):
    import keras

    path, marker = tmp_path / "lambda.keras", tmp_path / "ran-code"
    _save_lambda_model(path, marker)
    with pytest.raises(RunError, match="layer 'sneaky' is a Lambda.*arbitrary Python code"):
        load_keras_model(path)
    assert not marker.exists()
    # Control: the file really does carry code — an unsafe load runs it.
    keras.saving.load_model(path, compile=False, safe_mode=False)
    assert marker.exists()


def test_cli_refuses_a_lambda_model_with_one_line(tmp_path, capsys):
    path, marker = tmp_path / "lambda.keras", tmp_path / "ran-code"
    _save_lambda_model(path, marker)
    images = write_digit_pngs(tmp_path / "imgs", [0])
    assert run_cli(["predict", path, *images]) == 1
    err = capsys.readouterr().err.strip()
    assert "refusing to load" in err and "Lambda" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not marker.exists()


def _rewrite_config(src: Path, dst: Path, edit) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            zout.writestr(item, data)


def test_a_class_from_outside_keras_is_refused(tmp_path):
    def smuggle(config):
        layer = config["config"]["layers"][1]
        layer["module"] = "os"
        layer["class_name"] = "system"

    bad = tmp_path / "bad.keras"
    _rewrite_config(digits_run() / "model.keras", bad, smuggle)
    with pytest.raises(RunError, match="uses class os.system from outside Keras and cnnspec"):
        load_keras_model(bad)


def test_the_untouched_archive_loads(tmp_path):
    good = tmp_path / "good.keras"
    _rewrite_config(digits_run() / "model.keras", good, lambda config: None)
    model = load_keras_model(good)
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04 truncated", "not a readable .keras archive"),
        (b"just text", "not a readable .keras archive"),
    ],
)
def test_corrupt_keras_files_are_refused(tmp_path, content, message):
    path = tmp_path / "broken.keras"
    path.write_bytes(content)
    with pytest.raises(RunError, match=message):
        load_keras_model(path)


def test_truncated_keras_file_is_refused(tmp_path):
    data = (digits_run() / "model.keras").read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match="not a readable .keras archive"):
        load_keras_model(path)


@pytest.mark.parametrize("name", ["model.h5", "model.pkl", "model.npy"])
def test_pickle_and_legacy_formats_are_refused(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x80\x04K\x01.")  # a pickle of the integer 1
    with pytest.raises(RunError, match="unsupported model file type"):
        find_model(path)


def test_runs_folder_resolves_to_its_newest_run(tmp_path):
    import shutil

    runs = tmp_path / "digits"
    shutil.copytree(digits_run(), runs / "20250101-000000")
    shutil.copytree(digits_run(), runs / "20260101-000000")
    source = find_model(runs)
    assert source.run_dir == runs / "20260101-000000"
    assert source.format == "keras" and source.meta_path == runs / "20260101-000000/meta.json"


def test_metadata_that_contradicts_the_model_is_refused(tmp_path):
    import shutil

    from cnnspec.modelio import load_run_model

    run = tmp_path / "run"
    shutil.copytree(digits_run(), run)
    meta = json.loads((run / "meta.json").read_text())
    meta["class_names"] = ["a", "b"]
    (run / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match="2 class_names for a model with 10 outputs"):
        load_run_model(run)
    (run / "meta.json").write_text("{not json")
    with pytest.raises(RunError, match="cannot read model metadata"):
        load_run_model(run)


# --------------------------------------------------------------------------- export --overwrite


def _user_folder(path: Path) -> dict[str, str]:
    """A folder holding a user's files (returned as name -> content, to check they survive)."""
    files = {"notes.txt": "my notes", "data/labels.csv": "a,b\n"}
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return files


def _assert_survived(path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        assert (path / name).read_text() == text, f"{path / name} was lost"


def _fake_savedmodel_with_user_file(path: Path) -> dict[str, str]:
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"\x08\x01")
    (path / "variables" / "variables.index").write_bytes(b"")
    return _user_folder(path)


@pytest.mark.parametrize(
    ("fmt", "name", "make", "message"),
    [
        (
            "savedmodel",
            "mine",
            _user_folder,
            "refusing to replace .*mine: it is a folder but not a SavedModel.*--overwrite "
            "replaces only an earlier",
        ),
        (
            "savedmodel",
            "almost_savedmodel",
            _fake_savedmodel_with_user_file,
            "the SavedModel folder also holds data, notes.txt, which an export never writes.*"
            "--overwrite replaces only an earlier",
        ),
        ("keras", "x.keras", _user_folder, "x.keras: is a folder; a file is written there"),
        ("tflite", "x.tflite", _user_folder, "x.tflite: is a folder; a file is written there"),
    ],
)
def test_overwrite_never_replaces_a_users_folder(tmp_path, fmt, name, make, message):
    from cnnspec.export import export_model

    dest = tmp_path / name
    dest.mkdir()
    files = make(dest)
    with pytest.raises(RunError, match=message):
        export_model(digits_run(), fmt, dest, overwrite=True)
    _assert_survived(dest, files)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp files left


@pytest.mark.parametrize(
    ("fmt", "name", "content", "message"),
    [
        ("keras", "model.keras", b"my own zip? no, my notes", "it is not a .keras archive"),
        ("tflite", "model.tflite", b"notes notes notes", "it is not a tflite model"),
        ("onnx", "model.onnx", b"notes", "it is not a onnx model"),
    ],
)
def test_overwrite_never_replaces_a_file_that_is_not_an_export(
    tmp_path, fmt, name, content, message
):
    from cnnspec.export import export_model

    dest = tmp_path / name
    dest.write_bytes(content)
    with pytest.raises(RunError, match=f"refusing to replace .*{name}: {message}"):
        export_model(digits_run(), fmt, dest, overwrite=True)
    assert dest.read_bytes() == content


@pytest.mark.parametrize("target", [".", "..", "~", "/"])
def test_overwrite_never_targets_cwd_its_parents_home_or_root(tmp_path, monkeypatch, target):
    from cnnspec.export import export_model

    work = tmp_path / "work"
    work.mkdir()
    files = _user_folder(work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    dest = Path(target).expanduser()
    with pytest.raises(RunError, match="refusing to export onto .*current directory.*root"):
        export_model(digits_run(), "savedmodel", dest, overwrite=True)
    _assert_survived(work, files)


def test_cli_export_onto_a_user_folder_is_one_line_and_keeps_the_files(tmp_path, capsys):
    dest = tmp_path / "photos"
    dest.mkdir()
    files = _user_folder(dest)
    code = run_cli(["export", digits_run(), "--format", "savedmodel", "-o", dest, "--overwrite"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err == (
        f"-o {dest}: refusing to replace {dest}: it is a folder but not a SavedModel (no "
        "saved_model.pb and variables/); --overwrite replaces only an earlier savedmodel export. "
        "Hint: move it away yourself or choose another -o."
    )
    _assert_survived(dest, files)


@pytest.mark.parametrize("fmt", ["keras", "savedmodel"])
def test_overwrite_replaces_an_earlier_export_of_the_same_format(tmp_path, fmt):
    from cnnspec.export import export_model

    dest = tmp_path / ("m.keras" if fmt == "keras" else "m_savedmodel")
    first = export_model(digits_run(), fmt, dest)
    before = json.loads(first.meta_path.read_text())["exported_at"]
    second = export_model(digits_run(), fmt, dest, overwrite=True)
    assert second.path == dest and second.max_abs_diff <= 1e-4
    assert json.loads(second.meta_path.read_text())["exported_at"] >= before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [dest.name, f"{dest.name}.meta.json"]
    )
    # ... but not when a user's file has been put inside the SavedModel folder since
    if fmt == "savedmodel":
        (dest / "keep.txt").write_text("mine")
        with pytest.raises(RunError, match="also holds keep.txt"):
            export_model(digits_run(), fmt, dest, overwrite=True)
        assert (dest / "keep.txt").read_text() == "mine"


def test_a_link_at_the_destination_is_not_followed_or_replaced(tmp_path):
    from cnnspec.export import export_model

    target = tmp_path / "elsewhere"
    target.mkdir()
    files = _user_folder(target)
    link = tmp_path / "link_savedmodel"
    link.symlink_to(target, target_is_directory=True)
    with pytest.raises(RunError, match="is a symbolic link"):
        export_model(digits_run(), "savedmodel", link, overwrite=True)
    assert link.is_symlink()
    _assert_survived(target, files)
