"""Shared machinery of the dataset loaders: data home, fetching with md5 checks, IDX decoding."""

from __future__ import annotations

import errno
import gzip
import hashlib
import http.client
import logging
import math
import os
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

__all__ = ["get_data_home"]

logger = logging.getLogger(__name__)

DATA_HOME_ENV = "GFE_SKLEARN_DATA"
DEFAULT_DATA_HOME = "~/gfe_sklearn_data"
DOWNLOAD_TIMEOUT = 60  # seconds per network operation, not per file

# IDX type codes (third magic byte); all multi-byte types are big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def get_data_home(data_home: str | os.PathLike | None = None) -> Path:
    """Return the folder that holds the gfe_sklearn datasets.

    The folder is, in order of precedence, ``data_home`` when given, the environment
    variable ``GFE_SKLEARN_DATA`` when set and not empty, else ``~/gfe_sklearn_data``.
    Each dataset lives in its own subfolder (``mnist/``, ``fashion-mnist/``).
    The folder is not created here; loaders create it only when they download.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Folder to use instead of the environment variable and the default.
        ``~`` is expanded.

    Returns
    -------
    data_home : pathlib.Path
        The resolved folder, which may not exist yet.

    Examples
    --------
    >>> from gfe_sklearn.datasets import get_data_home
    >>> get_data_home("~/my_data").name
    'my_data'
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV) or DEFAULT_DATA_HOME
    return Path(data_home).expanduser()


def fetch_files(names, *, spec, data_home=None, download_if_missing=True):
    """Return the paths of the files ``names`` of dataset ``spec``, downloading missing ones.

    ``spec`` is a registry entry: a dict with keys ``"name"`` (for messages), ``"folder"``
    (subfolder of the data home), ``"md5"`` (file name -> md5), ``"mirrors"`` (base URLs
    ending in ``/``) and ``"homepage"``.
    Existing files are not hashed (that would cost a full read on every load); the
    structural checks of :func:`read_idx` catch truncation and corruption instead.
    """
    home = get_data_home(data_home)
    folder = home / spec["folder"]
    paths = [folder / name for name in names]
    missing = _missing_files(spec, home, folder, paths)
    if not missing:
        return paths
    if not download_if_missing:
        raise FileNotFoundError(_missing_message(spec, folder, missing, failures=None))

    _make_download_folder(folder, missing)
    failures = []
    for name in missing:
        failures.extend(_download(name, spec["md5"][name], folder, spec["mirrors"]))
    still_missing = [path.name for path in paths if not path.is_file()]
    if still_missing:
        raise FileNotFoundError(_missing_message(spec, folder, still_missing, failures))
    return paths


def _missing_files(spec, home, folder, paths):
    """Names of the ``paths`` that are not files, after checking that ``folder`` can hold them."""
    try:
        for candidate in (home, folder):
            if candidate.exists() and not candidate.is_dir():
                raise NotADirectoryError(
                    errno.ENOTDIR,
                    f"{candidate} is a file, but the {spec['name']} files are read from the "
                    f"folder {folder}. Move that file away, or pass data_home (or set "
                    f"{DATA_HOME_ENV}) to a folder.",
                )
        return [path.name for path in paths if not path.is_file()]
    except PermissionError as exc:
        raise _os_error(
            exc,
            f"Cannot look into {folder}: permission denied ({exc.filename}). Give this user "
            f"read and search access to it (chmod u+rx), or pass data_home (or set "
            f"{DATA_HOME_ENV}) to a folder this user can read.",
        ) from exc


def _make_download_folder(folder, missing):
    """Create ``folder`` and prove it writable, so that a local problem (a read-only folder)
    is not reported as a download that failed on every mirror."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise _os_error(
            exc,
            f"Cannot download {', '.join(missing)} into {folder}: {exc.strerror}. Make "
            f"that folder writable by this user, or pass data_home (or set "
            f"{DATA_HOME_ENV}) to a folder this user can write to.",
        ) from exc


def _os_error(exc, message):
    """An OSError with ``message`` of the kind ``OSError(exc.errno)`` maps to (PermissionError
    for EACCES, ...), so that ``except PermissionError`` still catches it."""
    return OSError(exc.errno, message) if exc.errno else OSError(message)


def _download(name, md5, folder, mirrors):
    """Try each mirror in turn; return the list of failure descriptions (empty on success)."""
    failures = []
    for mirror in mirrors:
        url = mirror + name
        try:
            _download_one(url, folder / name, md5)
        # URLError, HTTPError and timeouts are OSErrors; ValueError is an md5 mismatch.
        except (OSError, ValueError, http.client.HTTPException) as exc:
            logger.info("Download of %s failed: %s", url, exc)
            failures.append(f"{url}: {exc}")
        else:
            return []
    return failures


def _download_one(url, path, md5):
    """Download ``url`` to ``path`` through a temporary file, so ``path`` is whole or absent."""
    logger.info("Downloading %s to %s", url, path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        digest = hashlib.md5()
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response,
        ):
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise ValueError(f"md5 mismatch: got {digest.hexdigest()}, expected {md5}")
        os.replace(tmp_name, path)
    except BaseException:
        # Also on KeyboardInterrupt: a half-written file must never be left behind.
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _missing_message(spec, folder, missing, failures):
    lines = [f"{spec['name']} file(s) missing from {folder}: {', '.join(missing)}."]
    if failures is not None:
        lines.append("Downloading failed from every mirror:")
        lines.extend(f"  {failure}" for failure in failures)
    md5s = ", ".join(f"{name} {spec['md5'][name]}" for name in missing)
    lines.append(
        f"Get the files from one of {', '.join(spec['mirrors'])} or from {spec['homepage']}"
        f" (expected md5: {md5s}) and put them, still gzipped, in {folder}."
    )
    lines.append(
        f"Alternatively set the environment variable {DATA_HOME_ENV} or pass data_home to a"
        f" folder whose '{spec['folder']}' subfolder holds them."
    )
    if failures is None:
        lines.append("Pass download_if_missing=True to download them automatically.")
    return "\n".join(lines)


# The most decompressed bytes an IDX file may hold: MNIST's largest decompresses to 47 MB.
# A file whose header asks for more is refused before any of its payload is decompressed.
MAX_IDX_BYTES = 2**28

# numpy arrays hold at most 32 dimensions (64 from numpy 2); MNIST's files have 1 or 3.
MAX_IDX_DIMENSIONS = 32


def read_idx(path):
    """Decode a gzipped IDX file into a read-only numpy array.

    Only what the header promises is decompressed (at most ``MAX_IDX_BYTES``), so a small
    file that inflates to gigabytes (a gzip bomb) is refused after reading that much.

    Raises a ``ValueError`` naming the file when it is truncated, not gzip, or not a
    well-formed IDX file (bad magic number, or payload length not matching the header),
    and an ``OSError`` saying how to fix it when the file cannot be read.
    """
    try:
        with gzip.open(path, "rb") as f:
            dtype, shape, payload = _read_idx_stream(f, path)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise corrupt_file_error(path, f"it cannot be decompressed ({exc})") from exc
    except OSError as exc:  # after BadGzipFile, which is an OSError too
        raise _os_error(
            exc,
            f"Cannot read {path}: {exc.strerror}. Make the file readable by this user, or "
            f"pass data_home (or set {DATA_HOME_ENV}) to a folder holding a readable copy.",
        ) from exc
    return np.frombuffer(payload, dtype).reshape(shape)


def _read_idx_stream(f, path):
    """The dtype, shape and payload bytes of an open decompressed IDX stream, checked."""
    magic = f.read(4)
    if len(magic) < 4 or magic[0] or magic[1] or magic[2] not in _IDX_DTYPES or not magic[3]:
        raise corrupt_file_error(path, f"bad IDX magic number {magic.hex() or '(empty)'}")
    dtype, ndim = _IDX_DTYPES[magic[2]], magic[3]
    if ndim > MAX_IDX_DIMENSIONS:
        raise corrupt_file_error(
            path,
            f"its header gives {ndim} dimensions, more than the {MAX_IDX_DIMENSIONS} "
            "a numpy array may have",
        )
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise corrupt_file_error(path, "the IDX header is cut short")
    shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
    header_size = 4 + 4 * ndim
    # Python integers: numpy's int64 product of four 2**16 dimensions wraps round to 0.
    expected = header_size + math.prod(shape) * dtype.itemsize
    if expected > MAX_IDX_BYTES:
        raise corrupt_file_error(
            path,
            f"the IDX header {shape} implies {expected} decompressed bytes, more than "
            f"the {MAX_IDX_BYTES} that a file of these datasets may hold",
        )
    payload = f.read(expected - header_size)
    if len(payload) < expected - header_size:
        raise corrupt_file_error(
            path,
            f"{header_size + len(payload)} decompressed bytes where the IDX header "
            f"{shape} implies {expected}",
        )
    if f.read(1):
        raise corrupt_file_error(
            path, f"more decompressed bytes than the {expected} that the IDX header {shape} implies"
        )
    return dtype, shape, payload


def corrupt_file_error(path, reason):
    """Return, not raise, the error for a bad data file, with the way to fix it."""
    return ValueError(
        f"{path} is not a valid IDX data file: {reason}. The file is probably truncated or"
        " corrupt; delete it and load again with download_if_missing=True to fetch a fresh"
        " copy, or replace it with a copy whose md5 matches the published one."
    )
