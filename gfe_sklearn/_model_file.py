"""Model files that loading cannot make run code: JSON for the settings, raw bytes for tensors.

The layout is safetensors' (an 8-byte little-endian header length, a JSON header giving each
tensor's dtype, shape and byte range, then the bytes), so any safetensors reader can inspect the
weights. Reading parses JSON and copies bytes; it never unpickles, imports or evaluates anything,
and it checks every field before using it, so a crafted file is refused, not obeyed.
"""

import io
import json
import math
import sys
from pathlib import Path

import torch

from ._files import atomic_write

FORMAT = "gfe-sklearn-model"
FORMAT_VERSION = 1

# A header larger than this is not ours (ours are a few kB): refuse before reading it.
MAX_HEADER_BYTES = 64 * 2**20

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

    Raises ``ModelFileError`` naming the file and the problem for any file that is not one.
    """
    with open(path, "rb") as file:
        return _read(file, Path(path))


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


def _parse_header(path, raw):
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        _refuse(path, "its header is not JSON")
    if not isinstance(header, dict):
        _refuse(path, "its header is not a JSON object")
    return header


def _parse_content(path, metadata):
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        _refuse(path, "it does not say it is one")
    try:
        content = json.loads(metadata.get("content"))
    except (TypeError, ValueError):
        _refuse(path, "its settings are not JSON")
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
    dtype, shape, offsets = DTYPES.get(entry["dtype"]), entry["shape"], entry["data_offsets"]
    if dtype is None:
        _refuse(path, f"tensor {name!r} has unknown dtype {entry['dtype']!r}")
    if not _int_list(shape) or not _int_list(offsets) or len(offsets) != 2:
        _refuse(path, f"tensor {name!r} has a malformed shape or byte range")
    begin, end = offsets
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if not 0 <= begin <= end <= data_size or end - begin != math.prod(shape) * itemsize:
        _refuse(path, f"tensor {name!r}'s byte range does not match its shape or the file")
    return dtype, shape, begin, end


def _int_list(value):
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value
    )
