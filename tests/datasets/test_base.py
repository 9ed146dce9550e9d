import ast
import contextlib
import gzip
import hashlib
import io
import math
import struct
import sys
import tracemalloc
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest

import gfe_sklearn.datasets
from gfe_sklearn.datasets import _base, get_data_home, load_mnist

from ._idx import encode_idx, write_gz

IMAGES = "train-images-idx3-ubyte.gz"
LABELS = "train-labels-idx1-ubyte.gz"


def test_data_home_argument_beats_environment_beats_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("GFE_SKLEARN_DATA", raising=False)
    assert get_data_home() == tmp_path / "user" / "gfe_sklearn_data"

    monkeypatch.setenv("GFE_SKLEARN_DATA", "")  # empty counts as unset
    assert get_data_home() == tmp_path / "user" / "gfe_sklearn_data"

    monkeypatch.setenv("GFE_SKLEARN_DATA", str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env"
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_home("~/arg") == tmp_path / "user" / "arg"
    assert isinstance(get_data_home(str(tmp_path)), Path)


def test_reading_creates_no_folder(synthetic):
    assert get_data_home(synthetic.home) == synthetic.home
    with pytest.raises(FileNotFoundError):
        load_mnist(data_home=synthetic.home, download_if_missing=False)
    assert not synthetic.home.exists()


def test_missing_files_error_says_what_where_and_how(synthetic):
    synthetic.install()
    (synthetic.home / "mnist" / LABELS).unlink()
    with pytest.raises(FileNotFoundError) as excinfo:
        load_mnist(data_home=synthetic.home, download_if_missing=False)
    message = str(excinfo.value)
    assert str(synthetic.home / "mnist") in message
    assert LABELS in message and IMAGES not in message  # only the missing one
    assert "GFE_SKLEARN_DATA" in message and "download_if_missing=True" in message
    assert gfe_sklearn.datasets._mnist.DATASETS["mnist"]["mirrors"][0] in message


def test_download_tries_mirrors_in_turn_and_verifies_md5(synthetic, monkeypatch):
    spec = gfe_sklearn.datasets._mnist.DATASETS["mnist"]
    (good,) = spec["mirrors"]
    dead, unused = ((synthetic.mirror / name).as_uri() + "/" for name in ("dead", "unused"))
    monkeypatch.setitem(spec, "mirrors", (dead, good, unused))
    opened, urlopen = [], urllib.request.urlopen

    def spy(url, timeout):
        opened.append(url)
        return urlopen(url, timeout=timeout)

    monkeypatch.setattr(urllib.request, "urlopen", spy)

    X, y = load_mnist(data_home=synthetic.home, return_X_y=True)

    assert opened == [dead + IMAGES, good + IMAGES, dead + LABELS, good + LABELS]

    folder = synthetic.home / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted([IMAGES, LABELS])
    for name in (IMAGES, LABELS):
        assert hashlib.md5((folder / name).read_bytes()).hexdigest() == spec["md5"][name]
    images, labels = synthetic.arrays["mnist", "train"]
    np.testing.assert_array_equal(y, labels)
    # Exact: the loader divides by 255 in float32 too, and IEEE division is correctly rounded.
    np.testing.assert_array_equal(X, images.reshape(len(images), -1) / np.float32(255))


def test_download_with_wrong_md5_is_rejected_and_leaves_nothing(synthetic, monkeypatch):
    spec = gfe_sklearn.datasets._mnist.DATASETS["mnist"]
    monkeypatch.setitem(spec, "md5", {**spec["md5"], IMAGES: "0" * 32})
    with pytest.raises(FileNotFoundError, match="md5 mismatch") as excinfo:
        load_mnist(data_home=synthetic.home)
    assert IMAGES in str(excinfo.value)
    assert [p.name for p in (synthetic.home / "mnist").iterdir()] == [LABELS]


def test_interrupted_download_leaves_no_partial_file(synthetic, monkeypatch):
    class DroppedConnection(io.BytesIO):
        def read(self, size=-1):
            if self.tell():
                raise ConnectionResetError("connection dropped")
            return super().read(4)

    monkeypatch.setattr(
        urllib.request, "urlopen", lambda url, timeout: DroppedConnection(b"partial data")
    )
    with pytest.raises(FileNotFoundError, match="connection dropped"):
        load_mnist(data_home=synthetic.home)
    assert list((synthetic.home / "mnist").iterdir()) == []


def test_read_idx_round_trips_every_idx_type(tmp_path):
    for array in (
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-3, 0, 7], dtype=np.int8),
        np.array([[-300, 2], [5, 40000 // 2]], dtype=np.int16),
        np.array([-(2**31), 2**31 - 1], dtype=np.int32),
        np.array([0.5, -1.25], dtype=np.float32),
        np.array([np.pi], dtype=np.float64),
    ):
        path = tmp_path / "a.gz"
        write_gz(path, encode_idx(array))
        decoded = _base.read_idx(path)
        assert decoded.shape == array.shape
        np.testing.assert_array_equal(decoded, array)


def _valid_idx():
    return encode_idx(np.zeros((3, 28, 28), dtype=np.uint8))


@pytest.mark.parametrize(
    "write, reason",
    [
        (lambda p: p.write_bytes(gzip.compress(_valid_idx())[:-20]), "decompressed"),
        (lambda p: p.write_bytes(_valid_idx()), "decompressed"),  # not gzipped at all
        (lambda p: write_gz(p, b"\x00\x00\x08\x03" + b"\x00\x00\x00\x01" * 2), "cut short"),
        (lambda p: write_gz(p, b"PK\x03\x04" + _valid_idx()[4:]), "magic"),
        (lambda p: write_gz(p, b"\x00\x00\x07\x03" + _valid_idx()[4:]), "magic"),
        (lambda p: write_gz(p, b""), "magic"),
        (lambda p: write_gz(p, _valid_idx()[:-1]), "implies"),
        (lambda p: write_gz(p, _valid_idx() + b"\x00"), "implies"),
    ],
    ids=["truncated-gz", "not-gz", "cut-header", "zip-magic", "bad-type", "empty", "short", "long"],
)
def test_read_idx_rejects_corrupt_files_naming_them(tmp_path, write, reason):
    path = tmp_path / "broken-idx3-ubyte.gz"
    write(path)
    with pytest.raises(ValueError, match=reason) as excinfo:
        _base.read_idx(path)
    assert str(path) in str(excinfo.value) and "delete it" in str(excinfo.value)


@pytest.mark.parametrize("download", [True, False])
@pytest.mark.parametrize("file_at", ["data_home", "dataset folder"])
def test_a_file_where_a_data_folder_belongs_is_named_with_the_fix(synthetic, file_at, download):
    # Before: FileExistsError or NotADirectoryError from mkdir, or a FileNotFoundError
    # telling to put the files into a "folder" that is a file.
    synthetic.home.mkdir()
    blocker = synthetic.home if file_at == "data_home" else synthetic.home / "mnist"
    if file_at == "data_home":
        synthetic.home.rmdir()
    blocker.write_text("not a folder")
    with pytest.raises(NotADirectoryError) as excinfo:
        load_mnist(data_home=synthetic.home, download_if_missing=download)
    message = str(excinfo.value)
    assert f"{blocker} is a file" in message and "data_home" in message
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("dims", [(2**16,) * 4, (2**32 - 1,) * 3, (2**31, 2**31, 4)])
def test_read_idx_header_whose_size_overflows_int64_is_rejected(tmp_path, dims):
    # (2**16,) * 4 wrapped round to 0 bytes in int64, so an empty payload passed the size
    # check and reshape raised a bare ValueError; the error now states the exact size.
    path = tmp_path / "huge-idx4-ubyte.gz"
    header = bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    write_gz(path, header)
    with pytest.raises(ValueError, match="implies") as excinfo:
        _base.read_idx(path)
    message = str(excinfo.value)
    assert str(path) in message and "delete it" in message
    assert str(len(header) + math.prod(dims)) in message


@pytest.fixture
def permissions_apply(tmp_path):
    """Skip where permission bits do not bind (root reads a file of mode 000)."""
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0)
    try:
        probe.read_text()
    except PermissionError:
        return
    finally:
        probe.chmod(0o644)
    pytest.skip("permission bits do not apply to this user (root)")


@contextlib.contextmanager
def mode(path, bits):
    """``path`` with permission ``bits`` inside the block, its old mode after (for cleanup)."""
    old = path.stat().st_mode
    path.chmod(bits)
    try:
        yield path
    finally:
        path.chmod(old)


def test_an_unreadable_data_folder_is_named_with_the_fix(synthetic, permissions_apply):
    # Before: a bare PermissionError from stat, without the fix.
    folder = synthetic.install() / "mnist"
    with mode(folder, 0), pytest.raises(PermissionError) as excinfo:
        load_mnist(data_home=synthetic.home, download_if_missing=False)
    message = str(excinfo.value)
    assert f"Cannot look into {folder}" in message and "data_home" in message


def test_an_unreadable_data_file_is_named_with_the_fix(synthetic, permissions_apply):
    # Before: a bare PermissionError from open, without the fix.
    path = synthetic.install() / "mnist" / IMAGES
    with mode(path, 0), pytest.raises(PermissionError) as excinfo:
        load_mnist(data_home=synthetic.home)
    message = str(excinfo.value)
    assert f"Cannot read {path}" in message and "readable" in message


@pytest.mark.parametrize("read_only", ["data_home", "dataset folder"])
def test_a_read_only_data_folder_is_named_before_any_download(
    synthetic, permissions_apply, monkeypatch, read_only
):
    # Before: every mirror was tried and the error was a FileNotFoundError blaming the
    # downloads, or a bare PermissionError from mkdir.
    folder = synthetic.home / "mnist"
    folder.mkdir(parents=True)
    if read_only == "data_home":
        folder.rmdir()
    opened = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: opened.append(url))
    target = synthetic.home if read_only == "data_home" else folder
    with mode(target, 0o555), pytest.raises(PermissionError) as excinfo:
        load_mnist(data_home=synthetic.home)
    message = str(excinfo.value)
    assert f"into {folder}" in message and IMAGES in message and "writable" in message
    assert opened == []


def test_datasets_package_imports_only_numpy_sklearn_utils_and_stdlib():
    package = Path(gfe_sklearn.datasets.__file__).parent
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                stdlib = name.split(".")[0] in sys.stdlib_module_names
                assert stdlib or name in ("numpy", "sklearn.utils"), f"{module.name}: {name}"


def test_a_gzip_bomb_is_refused_after_decompressing_only_what_its_header_promises(tmp_path):
    # Before: 64 MB of trailing zeros (64 kB gzipped) were decompressed whole, then refused.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    chunks = [compressor.compress(_valid_idx())]
    chunks += [compressor.compress(bytes(2**20)) for _ in range(64)]
    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(b"".join(chunks) + compressor.flush())
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="more decompressed bytes than the 2368"):
            _base.read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


@pytest.mark.parametrize(
    "header, reason",
    [
        # 255 dimensions of 1: numpy cannot hold them (before: a bare numpy ValueError).
        (bytes([0, 0, 0x08, 255]) + struct.pack(">255I", *[1] * 255), "255 dimensions"),
        # A plausible header asking for 2.8 GB: refused before its payload is read.
        (bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 60000, 28, 28 * 64), "more than the"),
    ],
    ids=["255-dimensions", "oversized"],
)
def test_an_idx_header_beyond_the_limits_is_refused_by_name(tmp_path, header, reason):
    path = tmp_path / "odd-idx3-ubyte.gz"
    write_gz(path, header + b"\x00")
    with pytest.raises(ValueError, match=reason) as excinfo:
        _base.read_idx(path)
    assert str(path) in str(excinfo.value) and "delete it" in str(excinfo.value)
