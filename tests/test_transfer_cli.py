"""cnnspec features / fit-classifier on real digits, through the CLI entry point."""

import json

import numpy as np
import pytest

from cnnspec.cli import main
from cnnspec.transfer.digits import write_npz
from cnnspec.transfer.features import FORMAT, SavedClassifier, fit_classifier


@pytest.fixture(scope="module")
def digits59(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("d") / "digits59.npz", [5, 6, 7, 8, 9])


@pytest.fixture(scope="module")
def features(digits59, tmp_path_factory):
    out = tmp_path_factory.mktemp("f") / "features.npz"
    args = ["features", "specs/transfer_digits59.yaml", "--data", str(digits59), "-o", str(out)]
    assert main(args) == 0
    return out


def test_features_file_holds_vectors_labels_splits_and_class_names(features):
    with np.load(features, allow_pickle=False) as npz:
        x, y, split, names = npz["features"], npz["labels"], npz["split"], npz["class_names"]
    assert x.dtype == np.float32 and x.shape == (len(y), 4 * 4 * 32)
    assert set(split) == {"train", "val", "test"}
    assert list(names) == ["5", "6", "7", "8", "9"] and set(y) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("kind, floor", [("logistic", 0.95), ("svm", 0.95), ("knn", 0.9)])
def test_fit_classifier_reports_held_out_accuracy_and_saves_json(features, kind, floor, capsys):
    out = features.with_name(f"clf_{kind}.json")
    assert main(["fit-classifier", str(features), "--model", kind, "-o", str(out)]) == 0
    assert "held-out accuracy" in capsys.readouterr().out
    data = json.loads(out.read_text())  # plain JSON: nothing to unpickle
    assert data["format"] == FORMAT and data["kind"] == kind
    assert data["accuracy"]["held_out"] == "its test split"
    assert data["accuracy"]["test"] >= floor
    with np.load(features, allow_pickle=False) as npz:
        x, y, split = npz["features"], npz["labels"], npz["split"]
    test = split == "test"
    saved = SavedClassifier.load(out)
    assert float((saved.predict(x[test]) == y[test]).mean()) == data["accuracy"]["test"]


@pytest.mark.parametrize("kind", ["logistic", "svm", "knn"])
def test_saved_classifier_reproduces_scikit_learn_binary_and_multiclass(kind):
    from cnnspec.transfer.features import classifier_data

    rng = np.random.default_rng(0)
    for classes in (2, 4):
        y = rng.integers(0, classes, 120)
        x = rng.normal(size=(120, 6)) + y[:, None]
        fitted = fit_classifier(kind, x, y)
        saved = SavedClassifier(classifier_data(fitted, kind, list("abcd")[:classes], x, y))
        probe = rng.normal(size=(50, 6)) * 2 + 1
        np.testing.assert_array_equal(saved.predict(probe), fitted.predict(probe))


def test_features_of_a_trained_model_are_the_input_of_its_last_dense(digits59, tmp_path):
    out = tmp_path / "f.npz"
    model = "specs/transfer_digits04_backbone.keras"
    assert main(["features", model, "--data", str(digits59), "-o", str(out)]) == 0
    with np.load(out, allow_pickle=False) as npz:
        assert npz["features"].shape[1] == 64  # small_resnet's gavgpool, before dense 5
    assert main(["fit-classifier", str(out), "-m", "logistic"]) == 0
    data = json.loads(out.with_name("f.logistic.json").read_text())
    assert data["accuracy"]["test"] > 0.8  # features of digits 0-4 still separate 5-9


def test_cli_errors_are_one_line(features, tmp_path, capsys):
    assert main(["fit-classifier", str(features), "--model", "forest"]) == 1
    err = capsys.readouterr().err
    assert "unknown classifier" in err and "logistic, svm, knn" in err and "Traceback" not in err
    assert main(["features", "specs/lenet5.yaml", "-o", str(tmp_path / "x.npz")]) == 1
    assert "has no backbone" in capsys.readouterr().err
    assert main(["fit-classifier", str(tmp_path / "missing.npz")]) == 1
    assert "cannot read" in capsys.readouterr().err
