"""Pictures of models and runs, as PNG files (matplotlib's Agg renderer, no display needed).

- ``filters.plot_filters``: a conv layer's kernels as an image grid (Zeiler & Fergus: first-layer
  filters look like edge and colour-blob detectors); RGB/grey cells for the first layer, a
  filters x input-channels grid for deeper ones.
- ``features.plot_features``: the feature maps that chosen layers produce for one image.
- ``curves.plot_curves``: training curves from a run's ``history.csv``.
- ``confusion.plot_confusion``: a confusion matrix (``cnnspec evaluate``).

Every function writes a PNG whose pixel size is fixed by its layout (no tight bounding box) and
returns a :class:`Picture` with that size; matplotlib is imported only inside the functions.
"""

from __future__ import annotations

from ._canvas import Picture

__all__ = ["Picture"]
