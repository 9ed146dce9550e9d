import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.utils import Bunch

from gfe_sklearn.datasets import load_fashion_mnist, load_mnist, load_segmented_mnist
from gfe_sklearn.datasets._mnist import DATASETS

from ._idx import encode_idx, write_gz

LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}


# --- synthetic data: every behaviour of the loaders, in milliseconds ---


@pytest.mark.parametrize("dataset", LOADERS)
@pytest.mark.parametrize("subset", ["train", "test"])
def test_bunch_holds_scaled_pixels_labels_and_metadata(synthetic, dataset, subset):
    bunch = LOADERS[dataset](subset=subset, data_home=synthetic.install())
    images, labels = synthetic.arrays[dataset, subset]
    n = len(labels)

    assert isinstance(bunch, Bunch)
    assert bunch.data.shape == (n, 784) and bunch.data.dtype == np.float32
    # Exact: the loader divides by 255 in float32 too, and IEEE division is correctly rounded.
    np.testing.assert_array_equal(bunch.data, images.reshape(n, 784).astype(np.float32) / 255)
    assert bunch.data.min() == 0 and bunch.data.max() == 1
    np.testing.assert_array_equal(np.rint(bunch.data * 255), images.reshape(n, 784))
    assert bunch.target.dtype == np.int64
    np.testing.assert_array_equal(bunch.target, labels)
    assert bunch.images.shape == (n, 28, 28) and np.shares_memory(bunch.images, bunch.data)
    np.testing.assert_array_equal(bunch.images, images / np.float32(255))
    assert bunch.image_shape == (28, 28)
    assert len(bunch.target_names) == 10 and bunch.target_names.dtype.kind == "U"
    assert bunch.feature_names[:2] == ["pixel_0_0", "pixel_0_1"]
    assert len(set(bunch.feature_names)) == 784 and bunch.feature_names[-1] == "pixel_27_27"
    assert DATASETS[dataset]["homepage"] in bunch.DESCR


def test_target_names_name_the_classes(synthetic):
    home = synthetic.install()
    assert list(load_mnist(data_home=home).target_names) == [str(d) for d in range(10)]
    fashion = load_fashion_mnist(data_home=home).target_names
    assert fashion[0] == "T-shirt/top" and fashion[9] == "Ankle boot"


@pytest.mark.parametrize("dataset", LOADERS)
def test_return_X_y_matches_the_bunch(synthetic, dataset):
    home = synthetic.install()
    X, y = LOADERS[dataset](data_home=home, return_X_y=True)
    bunch = LOADERS[dataset](data_home=home)
    np.testing.assert_array_equal(X, bunch.data)
    np.testing.assert_array_equal(y, bunch.target)
    assert X.flags.writeable and X.flags.c_contiguous


@pytest.mark.parametrize("dataset, param", [("mnist", "digits"), ("fashion-mnist", "classes")])
def test_label_filter_keeps_those_labels_in_file_order(synthetic, dataset, param):
    home = synthetic.install()
    full = LOADERS[dataset](data_home=home, subset="test")
    kept = LOADERS[dataset](data_home=home, subset="test", **{param: iter([7, 2, 2])})
    mask = np.isin(full.target, [2, 7])
    np.testing.assert_array_equal(kept.target, full.target[mask])
    np.testing.assert_array_equal(kept.data, full.data[mask])
    assert set(kept.target) == {2, 7}


@pytest.mark.parametrize(
    "digits, error",
    [
        ([10], ValueError),
        ([-1], ValueError),
        ([1.5], ValueError),
        ([True], ValueError),
        ([], ValueError),
        ("01", TypeError),
        (3, TypeError),
    ],
)
def test_bad_digits_are_rejected_before_any_file_is_read(tmp_path, digits, error):
    with pytest.raises(error, match="digits"):
        load_mnist(digits=digits, data_home=tmp_path, download_if_missing=False)


@pytest.mark.parametrize("loader", [load_mnist, load_fashion_mnist, load_segmented_mnist])
def test_unknown_subset_lists_the_valid_ones(tmp_path, loader):
    with pytest.raises(ValueError, match=r"subset must be one of \['test', 'train'\].*'valid'"):
        loader(subset="valid", data_home=tmp_path, download_if_missing=False)


def test_segmented_split_trains_on_0_to_4_and_tests_on_5_to_9(synthetic):
    home = synthetic.install()
    train = load_segmented_mnist(data_home=home)
    test = load_segmented_mnist(subset="test", data_home=home)
    np.testing.assert_array_equal(train.data, load_mnist(data_home=home, digits=range(5)).data)
    np.testing.assert_array_equal(
        test.data, load_mnist(subset="test", data_home=home, digits=range(5, 10)).data
    )
    assert set(train.target) == {0, 1, 2, 3, 4} and set(test.target) == {5, 6, 7, 8, 9}
    assert "Segmented" in train.DESCR and train.image_shape == (28, 28)
    X, y = load_segmented_mnist(subset="test", data_home=home, return_X_y=True)
    np.testing.assert_array_equal(y, test.target)


@pytest.mark.parametrize(
    "file, array, reason",
    [
        ("labels", np.array([0, 1, 10] * 10, dtype=np.uint8), "label 10"),
        ("labels", np.zeros(29, dtype=np.uint8), "29 labels for the 30 images"),
        ("labels", np.zeros((30, 1), dtype=np.uint8), "1-d uint8"),
        ("images", np.zeros((30, 27, 28), dtype=np.uint8), r"\(n, 28, 28\)"),
        ("images", np.zeros((30, 28, 28), dtype=np.float32), r"\(n, 28, 28\)"),
    ],
)
def test_structurally_wrong_files_are_rejected(synthetic, file, array, reason):
    home = synthetic.install()
    name = f"train-{file}-idx{3 if file == 'images' else 1}-ubyte.gz"
    write_gz(home / "mnist" / name, encode_idx(array))
    with pytest.raises(ValueError, match=reason) as excinfo:
        load_mnist(data_home=home)
    assert name in str(excinfo.value)


def test_each_dataset_reads_its_own_folder(synthetic):
    home = synthetic.install()
    (home / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    load_mnist(subset="test", data_home=home, download_if_missing=False)
    with pytest.raises(FileNotFoundError, match="fashion-mnist"):
        load_fashion_mnist(subset="test", data_home=home, download_if_missing=False)


def test_environment_variable_locates_the_data(synthetic, monkeypatch):
    monkeypatch.setenv("GFE_SKLEARN_DATA", str(synthetic.install()))
    np.testing.assert_array_equal(
        load_mnist(download_if_missing=False).target, synthetic.arrays["mnist", "train"][1]
    )


# --- the real files: shapes and checksums from shared/data/SOURCES.md ---


def _real_data_home(dataset):
    env = os.environ.get("GFE_SKLEARN_DATA")
    home = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    folder = home / DATASETS[dataset]["folder"]
    if not all((folder / name).is_file() for name in DATASETS[dataset]["md5"]):
        pytest.skip(f"real {dataset} files not in {folder} (set GFE_SKLEARN_DATA to their home)")
    return home


REAL = {
    ("mnist", "train"): (
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
        1_567_298_545,
    ),
    ("mnist", "test"): ([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009], 264_923_200),
    ("fashion-mnist", "train"): ([6000] * 10, 3_431_114_169),
    ("fashion-mnist", "test"): ([1000] * 10, 573_469_082),
}


@pytest.mark.parametrize("dataset, subset", REAL)
def test_real_data_matches_published_counts_and_pixel_sums(dataset, subset):
    counts, pixel_sum = REAL[dataset, subset]
    X, y = LOADERS[dataset](
        subset=subset,
        data_home=_real_data_home(dataset),
        download_if_missing=False,
        return_X_y=True,
    )
    assert X.shape == (sum(counts), 784) and X.dtype == np.float32
    assert X.min() == 0 and X.max() == 1
    pixels = np.rint(X * 255)
    assert np.abs(X * 255 - pixels).max() < 1e-3  # exactly byte / 255
    assert pixels.astype(np.int64).sum() == pixel_sum
    assert y.dtype == np.int64 and np.bincount(y, minlength=10).tolist() == counts


@pytest.mark.parametrize("subset, digits", [("train", range(5)), ("test", range(5, 10))])
def test_real_segmented_split_counts(subset, digits):
    y = load_segmented_mnist(
        subset=subset,
        data_home=_real_data_home("mnist"),
        download_if_missing=False,
        return_X_y=True,
    )[1]
    counts = REAL["mnist", subset][0]
    assert np.bincount(y, minlength=10).tolist() == [
        counts[d] if d in digits else 0 for d in range(10)
    ]


@pytest.mark.parametrize("dataset", LOADERS)
def test_registry_md5s_match_the_real_files(dataset):
    folder = _real_data_home(dataset) / DATASETS[dataset]["folder"]
    for name, md5 in DATASETS[dataset]["md5"].items():
        assert hashlib.md5((folder / name).read_bytes()).hexdigest() == md5, name
