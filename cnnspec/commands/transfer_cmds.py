"""CLI: ``cnnspec features`` and ``cnnspec fit-classifier`` (transfer learning by feature
extraction). TensorFlow and scikit-learn are imported inside the commands only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import RunError
from . import app
from .spec_cmds import ScaleOption


def _is_spec(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


@app.command()
def features(
    source: Annotated[
        Path,
        typer.Argument(
            help="A spec with a backbone (its pretrained features), or a trained model "
            "(run directory or .keras: the input of its last dense layer)."
        ),
    ],
    data: Annotated[
        str | None,
        typer.Option(
            help="A built-in name (digits, mnist, ...), an image folder, a CSV manifest or an .npz "
            "(default: the spec's / run's)."
        ),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The .npz to write.")] = Path(
        "features.npz"
    ),
    pool: Annotated[
        str, typer.Option(help="How feature maps become vectors: avg | max | flatten.")
    ] = "avg",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="Override a spec value (specs only).")
    ] = None,
    scale: ScaleOption = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Start the spec from these weights (init.from): a .keras file, a run folder or "
            "keras:Name; features are the input of its last dense layer.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write the fixed-length feature vector of every image (with labels, splits, class names)."""
    import numpy as np

    from ..data import load_data
    from ..data.batches import SPLIT_NAMES, labelled_batches, split_names
    from ..outpaths import atomic_path, check_output
    from ..transfer.features import feature_model

    if pool not in ("avg", "max", "flatten"):
        raise RunError(f"--pool must be avg, max or flatten, received {pool!r}")
    if batch_size < 1:
        raise RunError(f"--batch-size must be at least 1, received {batch_size}")
    check_output(output)  # before the model and the data are loaded
    if _is_spec(source):
        from ..build import build_model
        from ..spec import load_spec
        from .spec_cmds import init_override

        spec = load_spec(source, overrides=[*(sets or []), *init_override(init)], scale=scale)
        if spec.backbone is None and spec.init is None:
            raise RunError(
                f"{source} has no backbone: an untrained spec has no features worth extracting",
                hint="add backbone: or init: to the spec (or --init), or pass a trained run "
                "directory / .keras file",
            )
        model, trained = build_model(spec), False
        if spec.init is not None:  # issue 17: started from a source's weights, as trained
            from ..init import apply
            from ..init.report import total_line

            typer.echo(total_line(apply(model, spec)))
            trained = spec.backbone is None
        shape, default_data = tuple(spec.input), spec.train.data
        split = (spec.train.validation_split, spec.train.test_split)
    else:
        if init is not None:
            raise RunError("--init applies to a spec", hint=f"{source} is a trained model already")
        from ..modelio import load_run_model

        model, meta, _ = load_run_model(source)
        trained = True
        shape, default_data = tuple(meta["input_shape"]), meta.get("data")
        split = (0.15, 0.15)
    source_data = data or default_data
    if not source_data:
        raise RunError("no data to extract features from", hint="pass --data")
    loaded = load_data(source_data, shape, validation_split=split[0], test_split=split[1])
    try:  # one feature model for every split (a model per split retraces)
        extractor = feature_model(model, pool, trained)
    except ValueError as exc:
        raise RunError(f"{source}: {exc}", hint="features come from a dense-headed model") from None
    chunks, labels, names = [], [], []  # one batch of images in memory at a time
    stream = labelled_batches(
        loaded, split_names(loaded, "all"), shape, batch_size, what="extracting features"
    )
    for name, x, y in stream:
        chunks.append(np.asarray(extractor.predict_on_batch(x), dtype=np.float32))
        labels.append(y)
        names += [name] * len(y)
    if not chunks:
        raise RunError(f"data '{loaded.source}' has no images")
    feats, labels = np.concatenate(chunks), np.concatenate(labels)
    # A file object: numpy would append .npz to a path without it (and to the temporary name).
    with atomic_path(output) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            features=feats.astype(np.float32),
            labels=labels.astype(np.int32),
            split=np.array(names),
            class_names=np.array(loaded.class_names),
        )
    counts = ", ".join(f"{n} {names.count(n)}" for n in SPLIT_NAMES if n in names)
    typer.echo(f"wrote {output}: {feats.shape[0]} x {feats.shape[1]} features ({counts})")


@app.command("fit-classifier")
def fit_classifier(
    features_file: Annotated[Path, typer.Argument(help="The .npz written by cnnspec features.")],
    model: Annotated[str, typer.Option("--model", "-m", help="logistic | svm | knn")] = "logistic",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to save it (default: <features>.<model>.json)."),
    ] = None,
    test_split: Annotated[
        float, typer.Option(help="Held-out fraction when the file has no test split.")
    ] = 0.25,
    k: Annotated[int, typer.Option(help="knn: neighbours.")] = 5,
    c: Annotated[float, typer.Option(help="logistic/svm: inverse regularisation strength.")] = 1.0,
) -> None:
    """Train a scikit-learn classifier on features; report held-out accuracy; save it as JSON."""
    import zipfile

    import numpy as np

    from ..outpaths import check_output
    from ..transfer import features as F

    F.check_classifier_options(model, k, c, test_split)
    output = check_output(output or features_file.with_name(f"{features_file.stem}.{model}.json"))
    if not features_file.is_file():  # a FIFO or a device would block or never end
        what = "no such file" if not features_file.exists() else "not a regular file"
        raise RunError(
            f"cannot read {features_file}: {what}", hint="pass the .npz written by cnnspec features"
        )
    from ..data.arrays import check_npz_archive

    check_npz_archive(features_file)  # a zip bomb is refused before anything is decompressed
    try:
        with np.load(features_file, allow_pickle=False) as npz:
            missing = [key for key in ("features", "labels") if key not in npz]
            if missing:
                raise RunError(
                    f"{features_file} lacks the arrays {', '.join(missing)}; it holds "
                    f"{', '.join(sorted(npz.files)) or 'none'}",
                    hint="write it with cnnspec features",
                )
            x, y = npz["features"], npz["labels"]
            split = npz.get("split", None)
            class_names = [str(n) for n in npz["class_names"]] if "class_names" in npz else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        text = str(exc).strip().splitlines()
        raise RunError(
            f"cannot read {features_file}: {text[0] if text else type(exc).__name__}",
            hint="write it with cnnspec features",
        ) from None
    y = F.check_features(x, y, class_names, split, features_file)
    if split is not None and (split == "test").any():
        train_idx, test_idx = np.flatnonzero(split != "test"), np.flatnonzero(split == "test")
        how = "its test split"
        if len(np.unique(y[train_idx])) < 2:
            raise RunError(
                f"{features_file}: the rows outside its test split hold fewer than 2 classes"
            )
    else:
        from sklearn.model_selection import train_test_split

        _check_stratified(y, test_split, features_file, class_names)
        train_idx, test_idx = train_test_split(
            np.arange(len(y)), test_size=test_split, stratify=y, random_state=0
        )
        how = f"a stratified {test_split:.0%} held out"
    fitted = F.fit_classifier(model, x[train_idx], y[train_idx], k=k, c=c)
    data = F.classifier_data(
        fitted, model, class_names or [str(i) for i in range(int(y.max()) + 1)],
        x[train_idx], y[train_idx],
    )  # fmt: skip
    saved = F.SavedClassifier(data)
    predicted = saved.predict(x[test_idx])
    if not np.array_equal(predicted, fitted.predict(x[test_idx])):
        raise RunError("the saved classifier does not reproduce scikit-learn's predictions")
    train_acc = float((saved.predict(x[train_idx]) == y[train_idx]).mean())
    test_acc = float((predicted == y[test_idx]).mean())
    data["accuracy"] = {"train": train_acc, "test": test_acc, "held_out": how}
    F.save_classifier(data, output)
    typer.echo(
        f"{model}: train accuracy {train_acc:.4f} ({len(train_idx)}), held-out accuracy "
        f"{test_acc:.4f} ({len(test_idx)}, {how}) -> {output}"
    )


def _check_stratified(y, test_split: float, source: Path, class_names: list[str] | None) -> None:
    """A stratified split needs 2 rows a class and a class's worth of rows on each side."""
    import math

    import numpy as np

    ids, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        i = int(ids[np.argmin(counts)])
        name = class_names[i] if class_names else str(i)
        raise RunError(
            f"{source}: class {name!r} has only 1 row; a stratified held-out split needs at "
            "least 2 rows of every class",
            hint="add rows of that class or drop it",
        )
    n_test = math.ceil(test_split * len(y))  # as scikit-learn rounds
    if min(n_test, len(y) - n_test) < len(ids):
        raise RunError(
            f"{source}: --test-split {test_split} of {len(y)} rows holds out {n_test}, leaving "
            f"{len(y) - n_test} to train; each side needs at least one row of each of the "
            f"{len(ids)} classes",
            hint="choose a --test-split that leaves every class on both sides",
        )
