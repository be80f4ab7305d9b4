"""Data for training, evaluation and prediction.

The contract with the models: every image this package yields is **in [0, 255], channels-last,
already resized and converted (grayscale <-> RGB) to the spec's input shape**: uint8 for image
files and uint8 arrays (4x less memory in caches and shuffle buffers), float32 for float arrays;
``make_pipeline`` casts batches to float32. Scaling to [0, 1] / [-1, 1] happens inside the model
(``preprocess:``), never here.

Public API (TensorFlow is imported lazily, inside these functions' modules)::

    load_data(source, input_shape, *, seed=0, validation_split=0.15, test_split=0.15,
              num_classes=None, cache="auto", crop=None, echo=None) -> Data
        source: one of the kinds in cnnspec.data.registry (one module each under kinds/;
                ``registry.accepted()`` lists them): digits (the default, no download),
                keras.datasets names, an .npz file, a CSV manifest, an image folder
        Splits are deterministic (they do not depend on the training seed); a source's own
        train/test split is kept. num_classes, when given, must equal the number of classes.
        cache: auto | memory | disk | none (True = auto, False = none), see cache.py.
        crop: ((area min, max), (ratio min, max)) of a random resized crop fused with decoding
        on a streamed training split (see decode_crop). echo: receives the lines that say how
        the data is read (cache choice, pixel scaling) and progress summaries.
        Raises cnnspec.errors.RunError (one line) for a missing folder, an empty class folder,
        a corrupt image (named), a class-count mismatch, an input that cannot take images,
        a path that is not data, bad .npz contents (named index) or a bad manifest row.

    Data: .train / .val / .test  unbatched tf.data.Dataset of (image, int32 label),
                                 cached as chosen; .val / .test may be None
          .class_names, .sizes {"train": n, "val": n, "test": n}, .source, .cache, .notes
          .reading(name)         how a split is read (Reading: in memory, shuffled, cropped),
                                 passed to make_pipeline(reading=...)
          .split(name)           the dataset of a split, or RunError if it is absent
          .files / .diagnose(input_shape)   image files of a folder source / RunError naming
                                            the first one that does not decode

    decode_crop(augment) -> crop argument of load_data for a recipe's augment list, or None

    make_pipeline(ds, batch_size, *, training, augment=(), seed=0, repeat=False,
                  labels=None, reading=None) -> tf.data
        shuffle (training) -> repeat -> batch -> float32 -> augment (training) -> prefetch

    load_images(paths, input_shape) -> (np.ndarray float32 (N,H,W,C) in [0,255], list[str])
        Decode + resize + channel-convert image files exactly as training does. A corrupt or
        missing file raises RunError naming it.

    IMAGE_EXTENSIONS, KERAS_DATASETS
"""

from __future__ import annotations

from .arrays import KERAS_DATASETS
from .images import IMAGE_EXTENSIONS, load_images
from .pipeline import Reading, make_pipeline
from .registry import accepted as accepted_sources
from .sources import Data, decode_crop, load_data

__all__ = [
    "IMAGE_EXTENSIONS",
    "KERAS_DATASETS",
    "Data",
    "Reading",
    "accepted_sources",
    "decode_crop",
    "load_data",
    "load_images",
    "make_pipeline",
]
