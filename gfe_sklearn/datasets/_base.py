"""Shared machinery of the dataset loaders: data home, fetching with md5 checks, IDX decoding."""

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


def get_data_home(data_home=None):
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


def read_idx(path):
    """Decode a gzipped IDX file into a read-only numpy array.

    Raises a ``ValueError`` naming the file when it is truncated, not gzip, or not a
    well-formed IDX file (bad magic number, or payload length not matching the header),
    and an ``OSError`` saying how to fix it when the file cannot be read.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise corrupt_file_error(path, f"it cannot be decompressed ({exc})") from exc
    except OSError as exc:  # after BadGzipFile, which is an OSError too
        raise _os_error(
            exc,
            f"Cannot read {path}: {exc.strerror}. Make the file readable by this user, or "
            f"pass data_home (or set {DATA_HOME_ENV}) to a folder holding a readable copy.",
        ) from exc

    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise corrupt_file_error(path, f"bad IDX magic number {raw[:4].hex() or '(empty)'}")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise corrupt_file_error(path, "the IDX header is cut short")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    # Python integers: numpy's int64 product of four 2**16 dimensions wraps round to 0.
    expected = header_size + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise corrupt_file_error(
            path, f"{len(raw)} decompressed bytes where the IDX header {shape} implies {expected}"
        )
    return np.frombuffer(raw, dtype, offset=header_size).reshape(shape)


def corrupt_file_error(path, reason):
    """Return, not raise, the error for a bad data file, with the way to fix it."""
    return ValueError(
        f"{path} is not a valid IDX data file: {reason}. The file is probably truncated or"
        " corrupt; delete it and load again with download_if_missing=True to fetch a fresh"
        " copy, or replace it with a copy whose md5 matches the published one."
    )
