import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from gfe_sklearn.datasets import _mnist

from ._idx import encode_idx, write_gz

N_SAMPLES = {"train": 30, "test": 20}


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    """Tiny MNIST and Fashion-MNIST served by a file:// mirror, registry md5s patched.

    ``home`` is an empty data home; ``install()`` copies the mirror into it, and
    ``arrays[dataset, subset]`` are the encoded ``(images, labels)``.
    """
    monkeypatch.delenv("GFE_SKLEARN_DATA", raising=False)
    rng = np.random.default_rng(0)
    mirror, arrays = tmp_path / "mirror", {}
    for key, spec in _mnist.DATASETS.items():
        folder = mirror / spec["folder"]
        folder.mkdir(parents=True)
        md5 = {}
        for subset, (image_file, label_file) in _mnist.SUBSET_FILES.items():
            n = N_SAMPLES[subset]
            images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
            images[0, 0, :2] = 0, 255  # the extremes must map to exactly 0 and 1
            labels = (np.arange(n) % 10).astype(np.uint8)
            md5[image_file] = write_gz(folder / image_file, encode_idx(images))
            md5[label_file] = write_gz(folder / label_file, encode_idx(labels))
            arrays[key, subset] = images, labels
        patched = {**spec, "md5": md5, "mirrors": (folder.as_uri() + "/",)}
        monkeypatch.setitem(_mnist.DATASETS, key, patched)

    home = tmp_path / "home"

    def install():
        shutil.copytree(mirror, home, dirs_exist_ok=True)
        return home

    return SimpleNamespace(mirror=mirror, home=home, arrays=arrays, install=install)
