"""Model files that loading cannot make run code: JSON for the settings, raw bytes for tensors.

The layout is safetensors' (an 8-byte little-endian header length, a JSON header giving each
tensor's dtype, shape and byte range, then the bytes), so any safetensors reader can inspect the
weights. Reading parses JSON and copies bytes; it never unpickles, imports or evaluates anything,
and it checks every field before using it, so a crafted file is refused, not obeyed.
"""

import io
import json
import math
import os
import stat
import sys
from pathlib import Path

import torch

from ._files import atomic_write

FORMAT = "gfe-sklearn-model"
FORMAT_VERSION = 1

# A header larger than this is not ours (ours are a few kB): refuse before reading it.
MAX_HEADER_BYTES = 64 * 2**20

# Reading holds the whole file in memory (twice, briefly): a larger file is refused unread.
# The papers' MNIST models take a few MB; 4 GiB leaves room for user-supplied modules.
MAX_FILE_BYTES = 4 * 2**30

# JSON nested deeper than this is not ours (ours nests 4 levels): refused, not recursed into.
MAX_JSON_DEPTH = 32

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


class ModelFileError(ValueError):
    """A file that is not a readable gfe-sklearn model file; the message names the fix."""


def write_model_file(path, content, tensors):
    """Write ``content`` (JSON-able dict) and ``tensors`` (name -> tensor) to ``path``.

    The file appears complete or not at all: it is written beside ``path`` and renamed.
    """
    atomic_write(path, _parts(content, tensors))


def model_bytes(content, tensors):
    """The bytes ``write_model_file`` writes."""
    return b"".join(_parts(content, tensors))


def _parts(content, tensors):
    blobs, header, offset = [], {}, 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        if tensor.dtype not in DTYPE_NAMES:
            raise TypeError(f"tensor {name!r} has dtype {tensor.dtype}, which cannot be saved.")
        data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {
            "dtype": DTYPE_NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": FORMAT, "content": json.dumps(content)}
    encoded = json.dumps(header).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # safetensors aligns the data to 8 bytes
    return [len(encoded).to_bytes(8, "little"), encoded, *blobs]


def read_model_file(path):
    """``(content, tensors)`` of a file written by ``write_model_file``; refuses anything else.

    Raises ``ModelFileError`` naming the file and the problem for any file that is not one,
    including anything but a regular file (a FIFO, a device, a directory) and a file larger
    than ``MAX_FILE_BYTES``.
    """
    path = Path(path)
    # O_NONBLOCK: opening a FIFO that no one writes to would otherwise wait forever; on a
    # regular file it changes nothing, and nothing else is read.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    handle = os.open(path, flags)
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            _refuse(path, "it is not a regular file but a FIFO, device or directory")
        if info.st_size > MAX_FILE_BYTES:
            _refuse(path, f"it is larger than the {MAX_FILE_BYTES // 2**30} GiB model files may be")
    except BaseException:
        os.close(handle)
        raise
    with os.fdopen(handle, "rb") as file:
        return _read(file, path)


def read_model_bytes(data, source):
    """``read_model_file`` for the file's bytes; ``source`` names them in errors."""
    return _read(io.BytesIO(data), source)


def _read(file, path):
    if sys.byteorder != "little":  # the tensors are stored little-endian
        raise ModelFileError("model files can only be read on little-endian machines.")
    size = file.seek(0, io.SEEK_END)
    file.seek(0)
    length = int.from_bytes(file.read(8), "little")
    if size < 8 or length > min(MAX_HEADER_BYTES, size - 8):
        _refuse(path, "its header length does not fit the file")
    header = _parse_header(path, file.read(length))
    data = bytearray(file.read())
    content = _parse_content(path, header.pop("__metadata__", None))
    tensors = _tensors(path, header, data)
    return content, tensors


def _refuse(path, problem):
    raise ModelFileError(
        f"{path} is not a gfe-sklearn model file ({problem}). Files written by an "
        "estimator's save() are read by its load(); a pickle or joblib file is read with "
        "pickle or joblib, and only from a source you trust."
    )


def _json(path, text, what):
    """``text`` parsed, refusing duplicate keys (the last would win silently) and deep nesting."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as error:
        _refuse(path, f"its {what} names {error.args[0]!r} twice")
    except RecursionError:
        _refuse(path, f"its {what} is nested too deeply")
    except (UnicodeDecodeError, TypeError, ValueError):
        _refuse(path, f"its {what} is not JSON")
    if _depth(value) > MAX_JSON_DEPTH:
        _refuse(path, f"its {what} is nested more than {MAX_JSON_DEPTH} levels deep")
    return value


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _depth(value):
    """Nesting depth of parsed JSON, iteratively (a recursive walk could overflow the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((inner, level + 1) for inner in _children(item))
    return deepest


def _children(item):
    return item.values() if isinstance(item, dict) else item


def _parse_header(path, raw):
    header = _json(path, raw, "header")
    if not isinstance(header, dict):
        _refuse(path, "its header is not a JSON object")
    return header


def _parse_content(path, metadata):
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        _refuse(path, "it does not say it is one")
    content = _json(path, metadata.get("content"), "settings")
    if not isinstance(content, dict):
        _refuse(path, "its settings are not a JSON object")
    version = content.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written in model-file format {version!r}; this gfe-sklearn reads "
            f"formats up to {FORMAT_VERSION}. Upgrade gfe-sklearn to load it."
        )
    return content


def _tensors(path, header, data):
    tensors, spans = {}, []
    for name, entry in header.items():
        dtype, shape, begin, end = _checked_entry(path, name, entry, len(data))
        spans.append((begin, end, name))
        raw = (
            torch.frombuffer(data, dtype=torch.uint8, count=end - begin, offset=begin)
            if end > begin
            else torch.empty(0, dtype=torch.uint8)
        )
        tensors[name] = raw.clone().view(dtype).reshape(shape)
    spans.sort()
    for (_, end, first), (begin, _, second) in zip(spans, spans[1:]):
        if begin < end:
            _refuse(path, f"tensors {first!r} and {second!r} overlap")
    return tensors


def _checked_entry(path, name, entry, data_size):
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        _refuse(path, f"entry {name!r} is not a tensor description")
    name_of_dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    dtype = DTYPES.get(name_of_dtype) if isinstance(name_of_dtype, str) else None
    if dtype is None:
        _refuse(path, f"tensor {name!r} has unknown dtype {name_of_dtype!r:.40}")
    if not _int_list(shape) or not _int_list(offsets) or len(offsets) != 2:
        _refuse(path, f"tensor {name!r} has a malformed shape or byte range")
    begin, end = offsets
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if not 0 <= begin <= end <= data_size or end - begin != math.prod(shape) * itemsize:
        _refuse(path, f"tensor {name!r}'s byte range does not match its shape or the file")
    return dtype, shape, begin, end


def _int_list(value):
    # torch sizes are int64: a larger number is not a size, whatever else the entry says.
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) and 0 <= item < 2**63 for item in value
    )
