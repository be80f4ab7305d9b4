"""Data for training, evaluation and prediction.

The contract with the models: every image this package yields is **float32 in [0, 255],
channels-last, already resized and converted (grayscale <-> RGB) to the spec's input shape**.
Scaling to [0, 1] / [-1, 1] happens inside the model (``preprocess:``), never here.

Public API (TensorFlow is imported lazily, inside these functions' modules)::

    load_data(source, input_shape, *, seed=0, validation_split=0.15, test_split=0.15,
              num_classes=None, cache=True) -> Data
        source: "digits" (scikit-learn's bundled 8x8 digits, the default, no download)
              | "mnist" | "fashion_mnist" | "cifar10" | "cifar100" (keras.datasets; offline
                they fail fast with RunError)
              | a folder with one sub-folder per class, or with train/ [val/|validation/] [test/]
                sub-folders that each hold class sub-folders
              | an .npz file with arrays x (N,H,W[,C]) and y (N,) or one-hot (N,K)
        Splits are deterministic (they do not depend on the training seed); a source's own
        train/test split is kept. num_classes, when given, must equal the number of classes.
        Raises cnnspec.errors.RunError (one line) for a missing folder, an empty class folder,
        a corrupt image (named), a class-count mismatch or an input that cannot take images.

    Data: .train / .val / .test  unbatched, cached tf.data.Dataset of (image, int32 label),
                                 .val / .test may be None
          .class_names, .sizes {"train": n, "val": n, "test": n}, .source
          .split(name)           the dataset of a split, or RunError if it is absent
          .files / .diagnose(input_shape)   image files of a folder source / RunError naming
                                            the first one that does not decode

    make_pipeline(ds, batch_size, *, training, augment=(), seed=0, repeat=False) -> tf.data
        shuffle (training) -> repeat -> batch -> augment (training) -> prefetch(AUTOTUNE)

    load_images(paths, input_shape) -> (np.ndarray float32 (N,H,W,C) in [0,255], list[str])
        Decode + resize + channel-convert image files exactly as training does. A corrupt or
        missing file raises RunError naming it.

    IMAGE_EXTENSIONS, KERAS_DATASETS
"""

from __future__ import annotations

from .images import IMAGE_EXTENSIONS, load_images
from .pipeline import make_pipeline
from .sources import KERAS_DATASETS, Data, decode_crop, load_data

__all__ = [
    "IMAGE_EXTENSIONS",
    "KERAS_DATASETS",
    "Data",
    "decode_crop",
    "load_data",
    "load_images",
    "make_pipeline",
]
