"""Encode small IDX files, so that loader tests run on synthetic data in milliseconds."""

import gzip
import hashlib
import struct

import numpy as np

_TYPE_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def encode_idx(array):
    """Return the raw (uncompressed) IDX bytes of ``array``."""
    array = np.asarray(array)
    code = _TYPE_CODES[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_gz(path, payload):
    """Gzip ``payload`` bytes into ``path``; return the file's md5."""
    data = gzip.compress(payload)
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest()
