"""Loaders for MNIST, Fashion-MNIST and the segmented MNIST split."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from os import PathLike

import numpy as np
from sklearn.utils import Bunch

from ._base import corrupt_file_error, fetch_files, read_idx

__all__ = ["load_mnist", "load_fashion_mnist", "load_segmented_mnist"]

IMAGE_SHAPE = (28, 28)
N_PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
N_CLASSES = 10

SUBSET_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# Labels kept in each subset of the segmented split: test classes are never seen in training.
SEGMENTED_DIGITS = {"train": (0, 1, 2, 3, 4), "test": (5, 6, 7, 8, 9)}

_MNIST_SOURCE = """\
Source: Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten
digits", http://yann.lecun.com/exdb/mnist/ ; described in Y. LeCun, L. Bottou,
Y. Bengio and P. Haffner, "Gradient-based learning applied to document recognition",
Proceedings of the IEEE 86(11):2278-2324, 1998.
"""

_MNIST_DESCR = f"""\
MNIST handwritten digits
------------------------
Grayscale 28x28 images of the handwritten digits 0-9: 60,000 training images
(``subset="train"``) and 10,000 test images (``subset="test"``).

{_MNIST_SOURCE}"""

_FASHION_MNIST_DESCR = """\
Fashion-MNIST
-------------
Grayscale 28x28 images of Zalando article pictures in 10 classes (T-shirt/top, Trouser,
Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot): 60,000 training images
(``subset="train"``) and 10,000 test images (``subset="test"``), 6,000 and 1,000 per class.

Source: H. Xiao, K. Rasul and R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017;
https://github.com/zalandoresearch/fashion-mnist (MIT licence).
"""

_SEGMENTED_DESCR = f"""\
Segmented MNIST
---------------
The segmented split of MNIST used in the gradient flow encoding papers to test
generalisation to unseen classes: ``subset="train"`` holds the 30,596 MNIST training
images of the digits 0-4, ``subset="test"`` the 4,861 MNIST test images of the digits 5-9.
Labels keep their MNIST values (5-9 in the test subset).

{_MNIST_SOURCE}"""

# One entry per dataset; fetch_files reads "name", "folder", "md5", "mirrors", "homepage".
# md5s are the published md5s of the original gzipped files.
DATASETS = {
    "mnist": {
        "name": "MNIST",
        "folder": "mnist",
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        "mirrors": (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        "homepage": "http://yann.lecun.com/exdb/mnist/",
        "target_names": tuple(str(digit) for digit in range(N_CLASSES)),
        "descr": _MNIST_DESCR,
    },
    "fashion-mnist": {
        "name": "Fashion-MNIST",
        "folder": "fashion-mnist",
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        "mirrors": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        "homepage": "https://github.com/zalandoresearch/fashion-mnist",
        "target_names": (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        "descr": _FASHION_MNIST_DESCR,
    },
}


def load_mnist(
    *,
    subset: str = "train",
    data_home: str | PathLike | None = None,
    download_if_missing: bool = True,
    return_X_y: bool = False,
    digits: Iterable[int] | None = None,
) -> Bunch | tuple[np.ndarray, np.ndarray]:
    """Load the MNIST handwritten digits, pixels scaled to [0, 1].

    The four gzipped IDX files are read from ``<data_home>/mnist/`` and downloaded there
    when missing.

    Parameters
    ----------
    subset : {"train", "test"}, default="train"
        The 60,000 training images or the 10,000 test images.
    data_home : str or path-like, default=None
        Folder holding the ``mnist/`` subfolder. By default the environment variable
        ``GFE_SKLEARN_DATA``, else ``~/gfe_sklearn_data``; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        Download missing files (md5-checked) instead of raising ``FileNotFoundError``.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    digits : iterable of int in 0..9, default=None
        Keep only the images of these digits. Labels keep their values. None keeps all.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the attributes:

        data : ndarray of shape (n_samples, 784), dtype float32
            Flattened images, row by row, scaled to [0, 1].
        target : ndarray of shape (n_samples,), dtype int64
            Digit labels 0..9.
        images : ndarray of shape (n_samples, 28, 28), dtype float32
            ``data`` reshaped to images (a view: both share memory).
        target_names : ndarray of shape (10,), dtype str
            ``"0"`` .. ``"9"``; ``target_names[target]`` names each sample.
        feature_names : list of str
            ``"pixel_<row>_<col>"`` for each of the 784 columns of ``data``.
        image_shape : tuple of int
            ``(28, 28)``.
        DESCR : str
            Description of the dataset and its source.

    (data, target) : tuple if ``return_X_y`` is True
        The ``data`` and ``target`` arrays described above.

    Raises
    ------
    FileNotFoundError
        When files are missing and cannot be downloaded; the message says which files,
        where to put them and where to get them.
    OSError
        When the data folder is a file (``NotADirectoryError``), cannot be read, or cannot
        be written to download into (``PermissionError``); the message names the path.
    ValueError
        For an unknown ``subset``, labels outside 0..9 in ``digits``, or a corrupt file.

    See Also
    --------
    load_fashion_mnist : The same for Fashion-MNIST.
    load_segmented_mnist : Digits 0-4 for training, 5-9 for testing.

    Examples
    --------
    >>> from gfe_sklearn.datasets import load_mnist
    >>> X, y = load_mnist(subset="test", return_X_y=True)  # doctest: +SKIP
    >>> X.shape, X.dtype, y[:5]  # doctest: +SKIP
    ((10000, 784), dtype('float32'), array([7, 2, 1, 0, 4]))
    >>> zeros_and_ones = load_mnist(digits=[0, 1])  # doctest: +SKIP
    >>> zeros_and_ones.images.shape  # doctest: +SKIP
    (12665, 28, 28)
    """
    return _load(
        "mnist",
        subset=subset,
        data_home=data_home,
        download_if_missing=download_if_missing,
        return_X_y=return_X_y,
        labels=digits,
        labels_param="digits",
    )


def load_fashion_mnist(
    *,
    subset: str = "train",
    data_home: str | PathLike | None = None,
    download_if_missing: bool = True,
    return_X_y: bool = False,
    classes: Iterable[int] | None = None,
) -> Bunch | tuple[np.ndarray, np.ndarray]:
    """Load Fashion-MNIST (Zalando article images), pixels scaled to [0, 1].

    The four gzipped IDX files are read from ``<data_home>/fashion-mnist/`` and downloaded
    there when missing.

    Parameters
    ----------
    subset : {"train", "test"}, default="train"
        The 60,000 training images or the 10,000 test images.
    data_home : str or path-like, default=None
        Folder holding the ``fashion-mnist/`` subfolder. By default the environment variable
        ``GFE_SKLEARN_DATA``, else ``~/gfe_sklearn_data``; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        Download missing files (md5-checked) instead of raising ``FileNotFoundError``.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    classes : iterable of int in 0..9, default=None
        Keep only the images of these class labels. Labels keep their values.
        None keeps all.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the attributes:

        data : ndarray of shape (n_samples, 784), dtype float32
            Flattened images, row by row, scaled to [0, 1].
        target : ndarray of shape (n_samples,), dtype int64
            Class labels 0..9.
        images : ndarray of shape (n_samples, 28, 28), dtype float32
            ``data`` reshaped to images (a view: both share memory).
        target_names : ndarray of shape (10,), dtype str
            ``"T-shirt/top"``, ``"Trouser"``, ... ``"Ankle boot"``, indexed by label.
        feature_names : list of str
            ``"pixel_<row>_<col>"`` for each of the 784 columns of ``data``.
        image_shape : tuple of int
            ``(28, 28)``.
        DESCR : str
            Description of the dataset and its source.

    (data, target) : tuple if ``return_X_y`` is True
        The ``data`` and ``target`` arrays described above.

    Raises
    ------
    FileNotFoundError
        When files are missing and cannot be downloaded; the message says which files,
        where to put them and where to get them.
    OSError
        When the data folder is a file (``NotADirectoryError``), cannot be read, or cannot
        be written to download into (``PermissionError``); the message names the path.
    ValueError
        For an unknown ``subset``, labels outside 0..9 in ``classes``, or a corrupt file.

    See Also
    --------
    load_mnist : The same for MNIST digits.

    Examples
    --------
    >>> from gfe_sklearn.datasets import load_fashion_mnist
    >>> fashion = load_fashion_mnist(subset="test")  # doctest: +SKIP
    >>> fashion.data.shape, fashion.target_names[fashion.target[0]]  # doctest: +SKIP
    ((10000, 784), np.str_('Ankle boot'))
    """
    return _load(
        "fashion-mnist",
        subset=subset,
        data_home=data_home,
        download_if_missing=download_if_missing,
        return_X_y=return_X_y,
        labels=classes,
        labels_param="classes",
    )


def load_segmented_mnist(
    *,
    subset: str = "train",
    data_home: str | PathLike | None = None,
    download_if_missing: bool = True,
    return_X_y: bool = False,
) -> Bunch | tuple[np.ndarray, np.ndarray]:
    """Load the segmented MNIST split: digits 0-4 to train on, unseen digits 5-9 to test on.

    ``subset="train"`` gives the MNIST training images of the digits 0-4 (30,596 images),
    ``subset="test"`` the MNIST test images of the digits 5-9 (4,861 images). Labels keep
    their MNIST values. Files are shared with :func:`load_mnist`.

    Parameters
    ----------
    subset : {"train", "test"}, default="train"
        Which side of the split to load.
    data_home : str or path-like, default=None
        Folder holding the ``mnist/`` subfolder. By default the environment variable
        ``GFE_SKLEARN_DATA``, else ``~/gfe_sklearn_data``; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        Download missing files (md5-checked) instead of raising ``FileNotFoundError``.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        The same attributes as :func:`load_mnist` returns.

    (data, target) : tuple if ``return_X_y`` is True
        The ``data`` and ``target`` arrays.

    Raises
    ------
    FileNotFoundError
        When files are missing and cannot be downloaded.
    OSError
        When the data folder is a file, cannot be read, or cannot be written to download
        into; the message names the path.
    ValueError
        For an unknown ``subset`` or a corrupt file.

    See Also
    --------
    load_mnist : The whole of MNIST, or any subset of digits.

    Examples
    --------
    >>> from gfe_sklearn.datasets import load_segmented_mnist
    >>> X_train, y_train = load_segmented_mnist(return_X_y=True)  # doctest: +SKIP
    >>> X_test, y_test = load_segmented_mnist(subset="test", return_X_y=True)  # doctest: +SKIP
    >>> sorted(set(y_train)), sorted(set(y_test))  # doctest: +SKIP
    ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
    """
    _check_subset(subset)
    return _load(
        "mnist",
        subset=subset,
        data_home=data_home,
        download_if_missing=download_if_missing,
        return_X_y=return_X_y,
        labels=SEGMENTED_DIGITS[subset],
        labels_param="digits",
        descr=_SEGMENTED_DESCR,
    )


def _load(
    name, *, subset, data_home, download_if_missing, return_X_y, labels, labels_param, descr=None
):
    spec = DATASETS[name]
    _check_subset(subset)
    keep = _check_labels(labels, labels_param)
    image_path, label_path = fetch_files(
        SUBSET_FILES[subset],
        spec=spec,
        data_home=data_home,
        download_if_missing=download_if_missing,
    )
    images, targets = read_idx(image_path), read_idx(label_path)
    _check_pair(images, targets, image_path, label_path)

    if keep is not None:
        mask = np.isin(targets, keep)
        images, targets = images[mask], targets[mask]
    # Division, not multiplication by 1/255, so that data * 255 rounds back to the raw bytes.
    data = images.reshape(len(images), N_PIXELS).astype(np.float32)
    data /= np.float32(255)
    target = targets.astype(np.int64)
    if return_X_y:
        return data, target
    return Bunch(
        data=data,
        target=target,
        images=data.reshape(-1, *IMAGE_SHAPE),
        target_names=np.array(spec["target_names"]),
        feature_names=[f"pixel_{row}_{col}" for row in range(28) for col in range(28)],
        image_shape=IMAGE_SHAPE,
        DESCR=spec["descr"] if descr is None else descr,
    )


def _check_subset(subset):
    if subset not in SUBSET_FILES:
        raise ValueError(f"subset must be one of {sorted(SUBSET_FILES)}, got subset={subset!r}.")


def _check_labels(labels, param):
    """Return the sorted unique labels to keep as an int64 array, or None to keep all."""
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):
        raise TypeError(
            f"{param} must be an iterable of integer labels such as [0, 1], got {param}={labels!r}."
        )
    values = list(labels)
    invalid = [
        value
        for value in values
        if isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not 0 <= value < N_CLASSES
    ]
    if invalid or not values:
        raise ValueError(
            f"{param} must hold at least one integer label in 0..{N_CLASSES - 1},"
            f" got {param}={values!r}" + (f" (invalid: {invalid!r})." if invalid else ".")
        )
    return np.unique(np.asarray(values, dtype=np.int64))


def _check_pair(images, targets, image_path, label_path):
    """Structural checks that stand in for an md5 check of files already on disk."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise corrupt_file_error(
            image_path,
            f"expected uint8 images of shape (n, 28, 28), got {images.dtype} {images.shape}",
        )
    if targets.dtype != np.uint8 or targets.ndim != 1:
        raise corrupt_file_error(
            label_path, f"expected a 1-d uint8 array of labels, got {targets.dtype} {targets.shape}"
        )
    if len(targets) != len(images):
        raise corrupt_file_error(
            label_path,
            f"it holds {len(targets)} labels for the {len(images)} images of {image_path}",
        )
    if len(targets) and targets.max() >= N_CLASSES:
        raise corrupt_file_error(label_path, f"label {targets.max()} is outside 0..{N_CLASSES - 1}")
