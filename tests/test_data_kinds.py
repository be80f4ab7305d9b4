"""Every data source kind in the registry (issue 14, structure): a sample per kind that loads,
the accepted list derived from the registry, and the typed Reading beside each split."""

from __future__ import annotations

import numpy as np
import pytest
from test_data_rows import images
from test_segmentation_data import mask_folder, mask_manifest

from cnnspec.data import Reading, accepted_sources, load_data, make_pipeline
from cnnspec.data.registry import find, kinds
from cnnspec.errors import RunError


def _npz(tmp):
    x = np.random.default_rng(0).integers(0, 255, (12, 8, 8), np.uint8)
    np.savez(tmp / "d.npz", x=x, y=np.arange(12) % 2)
    return str(tmp / "d.npz")


def _manifest(tmp):
    images(tmp / "p")
    rows = "".join(f"p/{c}/{i}.png,{c}\n" for c in "ab" for i in range(4))
    (tmp / "m.csv").write_text(rows)
    return str(tmp / "m.csv")


# name -> (a source of that kind, whether it loads offline)
SAMPLES = {
    "digits": (lambda tmp: "digits", True),
    "digits_multilabel": (lambda tmp: "digits_multilabel", True),  # label tables (tasks)
    "digits_count": (lambda tmp: "digits_count", True),
    "digits_segmentation": (lambda tmp: "digits_segmentation", True),  # masks (segmentation)
    "mask_folder": (lambda tmp: str(mask_folder(tmp / "seg")), True),
    "mask_manifest": (mask_manifest, True),
    "keras": (lambda tmp: "mnist", False),  # a download: only found, not loaded
    "npz": (_npz, True),
    "manifest": (_manifest, True),
    "folder": (lambda tmp: str(images(tmp / "p")), True),
    "memory": (lambda tmp: (np.arange(12 * 64).reshape(12, 8, 8) % 256, np.arange(12) % 2), True),
}


@pytest.mark.parametrize("kind", kinds(), ids=lambda k: k.name)
def test_every_source_kind_has_a_sample_that_it_reads(tmp_path, kind):
    assert kind.name in SAMPLES, f"add a sample for the data source kind {kind.name!r}"
    make, loads = SAMPLES[kind.name]
    source = make(tmp_path)
    assert find(source) is kind
    assert kind.shows in accepted_sources()
    if loads:
        data = load_data(source, (8, 8, 1), cache="none", validation_split=0.25, test_split=0)
        assert data.num_classes >= 2 and data.sizes["train"] > 0


def test_messages_list_the_registry_not_a_hand_written_list(tmp_path):
    with pytest.raises(RunError) as info:
        load_data(str(tmp_path / "nothing"), (8, 8, 1))
    assert accepted_sources() in str(info.value) and "a CSV manifest" in str(info.value)


def test_how_a_split_is_read_travels_beside_it_typed(tmp_path):
    root = str(images(tmp_path / "p"))
    crop = ((0.5, 1.0), (0.75, 1.33))
    streamed = load_data(root, (8, 8, 3), cache="none", crop=crop, test_split=0)
    assert streamed.reading("train") == Reading(shuffled=True, cropped=True)
    assert streamed.reading("val") == Reading()
    cached = load_data(root, (8, 8, 3), cache="memory", test_split=0)
    assert cached.reading("train") == Reading(in_memory=True)
    # survives any transform (an attribute on the dataset would not): the pipeline is told
    ds = streamed.train.map(lambda x, y: (x, y))
    batch = next(iter(make_pipeline(ds, 4, training=True, reading=streamed.reading("train"))))
    assert batch[0].shape[1:] == (8, 8, 3)
