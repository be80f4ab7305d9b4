"""Feature extraction and a new classifier on the features (the lecture's first approach).

* :func:`feature_model`: the model minus its classifier: the ``backbone`` layer's output when
  there is one, else the input of the last dense layer ("remove the last FC layer").
* :func:`extract_features`: one fixed-length vector per image (feature maps are pooled).
* :func:`fit_classifier` trains a scikit-learn classifier (logistic regression, a linear SVM or
  k-nearest neighbours) on standardised features; :func:`save_classifier` writes it as JSON
  (numbers only: no pickle, nothing is executed when it is read back) and
  :class:`SavedClassifier` predicts from that JSON with NumPy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CLASSIFIERS = ("logistic", "svm", "knn")
FORMAT = "cnnspec-classifier/1"
_PASS = ("Activation", "Dropout", "Softmax", "ReLU")


def feature_model(model: Any, pool: str = "avg", trained: bool = True) -> Any:
    """A Keras model from the images to the features of ``model`` (shares its layers).

    ``trained``: the model is trained, so its features are the input of its last dense layer
    ("remove the last FC layer"). Untrained (a spec with a backbone): the backbone's output
    and the parameter-free head layers after it (pooling, flatten).
    Feature maps are pooled (``pool``: avg, max or flatten) into one vector per image.
    """
    import keras

    names = [layer.name for layer in model.layers]
    if trained:
        layers = [la for la in model.layers if type(la).__name__ not in _PASS]
        last = layers[-1]
        if not isinstance(last, keras.layers.Dense):
            raise ValueError(
                f"the model ends in {type(last).__name__} '{last.name}', not a dense classifier"
            )
        out = last.input
    elif "backbone" in names:
        # A nested model's .output is its own inner tensor: call it again on the outer input.
        out = model.get_layer("backbone")(model.inputs[0], training=False)
        for layer in model.layers[names.index("backbone") + 1 :]:
            if layer.weights or type(layer).__name__ in _PASS:
                break
            out = layer(out)
    else:
        raise ValueError("an untrained model without a backbone has no features worth extracting")
    if len(out.shape) > 2:
        pooling = {
            "avg": keras.layers.GlobalAveragePooling2D,
            "max": keras.layers.GlobalMaxPooling2D,
            "flatten": keras.layers.Flatten,
        }[pool]
        out = (
            pooling(name="features_pool")(out) if len(out.shape) == 4 or pool == "flatten" else out
        )
        if len(out.shape) > 2:
            out = keras.layers.Flatten(name="features_flatten")(out)
    return keras.Model(model.inputs, out, name=f"{model.name}_features")


def extract_features(model: Any, images: np.ndarray, batch_size: int = 64, pool: str = "avg",
                     trained: bool = True) -> np.ndarray:  # fmt: skip
    """The feature vectors (N, D) float32 of images in [0, 255] (the model preprocesses)."""
    return np.asarray(feature_model(model, pool, trained).predict(images, batch_size=batch_size, verbose=0),
                      dtype=np.float32)  # fmt: skip


# --- classifiers --------------------------------------------------------------------------------


def check_features(
    x: np.ndarray,
    y: np.ndarray,
    class_names: list[str] | None,
    split: np.ndarray | None,
    source: str | Path,
) -> np.ndarray:
    """Refuse features a classifier cannot honestly be fitted on; the labels as int64.

    One line each, naming the file and the first offending row: rows and labels that do not
    pair up, non-numeric or non-finite features, labels that are not 0-based class ids, fewer
    than two classes, class names that do not cover every label.
    """
    from ..errors import RunError

    where = f"{source}:"
    if x.ndim != 2:
        raise RunError(f"{where} features must be (rows, dimensions), received shape {x.shape}")
    if x.dtype.kind not in "uif":
        raise RunError(f"{where} features must be numbers, received dtype {x.dtype}")
    if y.ndim != 1:
        raise RunError(f"{where} labels must be one class id per row, received shape {y.shape}")
    if len(x) != len(y):
        raise RunError(
            f"{where} {len(x)} feature rows but {len(y)} labels; every row needs its label",
            hint="write the file with cnnspec features",
        )
    if split is not None and split.shape != y.shape:
        raise RunError(f"{where} 'split' has shape {split.shape}, the labels {y.shape}")
    if len(y) == 0:
        raise RunError(f"{where} holds no rows")
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise RunError(
            f"{where} features[{row}, {col}] is {x[row, col].item()!r} ({int(bad.any(axis=1).sum())} "
            "rows have non-finite values)",
            hint="features must be finite numbers; re-extract them or drop those rows",
        )
    if y.dtype.kind not in "iu":
        raise RunError(
            f"{where} labels must be integer class ids 0..K-1, received dtype {y.dtype} "
            f"(labels[0] = {y[0].item()!r})",
            hint="labels are class indices, not values to regress",
        )
    if y.min() < 0:
        i = int(np.argmin(y))
        raise RunError(f"{where} labels must be class ids 0..K-1, received labels[{i}] = {y[i]}")
    present = np.unique(y)
    if len(present) < 2:
        raise RunError(
            f"{where} every label is {int(present[0])}: a classifier needs at least 2 classes"
        )
    if class_names is not None and len(class_names) <= int(y.max()):
        raise RunError(
            f"{where} {len(class_names)} class names for labels up to {int(y.max())}",
            hint="class_names needs one name per class id",
        )
    return y.astype(np.int64)


def check_classifier_options(kind: str, k: int, c: float, test_split: float) -> None:
    """--model, --k, --c and --test-split in range (one line each)."""
    from ..errors import RunError

    if kind not in CLASSIFIERS:
        raise RunError(
            f"unknown classifier, received --model {kind}",
            hint=f"use one of {', '.join(CLASSIFIERS)}",
        )
    if k < 1:
        raise RunError(f"--k must be at least 1 neighbour, received {k}")
    if not c > 0 or not np.isfinite(c):
        raise RunError(f"--c must be a positive number, received {c}")
    if not 0 < test_split < 1:
        raise RunError(f"--test-split must be between 0 and 1 (exclusive), received {test_split}")


def fit_classifier(
    kind: str, x: np.ndarray, y: np.ndarray, *, k: int = 5, c: float = 1.0, seed: int = 0
) -> Any:
    """A scikit-learn pipeline (standardisation + classifier) fitted on features ``x``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind not in CLASSIFIERS:
        raise ValueError(
            f"unknown classifier, received {kind!r}; use one of {', '.join(CLASSIFIERS)}"
        )
    model = {
        "logistic": lambda: LogisticRegression(C=c, max_iter=5000),
        "svm": lambda: LinearSVC(C=c, max_iter=20000, random_state=seed),
        "knn": lambda: KNeighborsClassifier(n_neighbors=min(k, len(y))),
    }[kind]()
    return make_pipeline(StandardScaler(), model).fit(x, y)


def classifier_data(pipeline: Any, kind: str, class_names: list[str], x_train: np.ndarray | None = None,
                    y_train: np.ndarray | None = None) -> dict:  # fmt: skip
    """The fitted pipeline as plain numbers (what :func:`save_classifier` writes)."""
    scaler, clf = pipeline[0], pipeline[-1]
    data: dict[str, Any] = {
        "format": FORMAT,
        "kind": kind,
        "class_names": list(class_names),
        "classes": [int(c) for c in clf.classes_],
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
    }
    if kind in ("logistic", "svm"):
        data["coef"] = clf.coef_.tolist()
        data["intercept"] = np.atleast_1d(clf.intercept_).tolist()
    else:
        data["k"] = int(clf.n_neighbors)
        data["x"] = scaler.transform(x_train).tolist()
        data["y"] = [int(v) for v in y_train]
    return data


def save_classifier(data: dict, path: str | Path) -> Path:
    """Write the classifier's JSON atomically."""
    from ..outpaths import write_text_atomic

    return write_text_atomic(path, json.dumps(data))


@dataclass
class SavedClassifier:
    """A classifier read back from its JSON (predicts with NumPy; never unpickles)."""

    data: dict

    @classmethod
    def load(cls, path: str | Path) -> SavedClassifier:
        data = json.loads(Path(path).read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a cnnspec classifier (format {data.get('format')!r})")
        return cls(data)

    def predict(self, x: np.ndarray) -> np.ndarray:
        d = self.data
        z = (np.asarray(x, dtype=np.float64) - np.array(d["mean"])) / np.array(d["scale"])
        classes = np.array(d["classes"])
        if d["kind"] in ("logistic", "svm"):
            scores = z @ np.array(d["coef"]).T + np.array(d["intercept"])
            if scores.shape[1] == 1:  # binary: one score, positive means classes[1]
                return classes[(scores[:, 0] > 0).astype(int)]
            return classes[scores.argmax(axis=1)]
        train_x, train_y = np.array(d["x"]), np.array(d["y"])
        # squared distances without an (N, M, D) intermediate
        dist = (z**2).sum(1)[:, None] - 2 * z @ train_x.T + (train_x**2).sum(1)[None, :]
        nearest = train_y[np.argsort(dist, axis=1, kind="stable")[:, : d["k"]]]
        votes = np.stack([(nearest == c).sum(1) for c in classes], axis=1)
        return classes[votes.argmax(axis=1)]  # ties: the smallest class, as scikit-learn does
