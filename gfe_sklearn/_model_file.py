"""Model files that loading cannot make run code: JSON for the settings, raw bytes for tensors.

A model file is a safetensors file (an 8-byte little-endian header length, a JSON header giving
each tensor's dtype, shape and byte range, then the bytes) whose ``__metadata__`` holds our
JSON record. The ``safetensors`` package writes it and reads its tensor part: an audited,
widely used and fuzzed parser checks the header's dtypes, shapes, byte ranges and the data's
coverage. This module adds the limits it checks before that parser runs, our rules for the
JSON (no duplicate keys, no deep nesting, nothing but tensor descriptions) and the checks of
the record. Reading parses JSON and copies bytes; it never unpickles, imports or evaluates
anything, so a crafted file is refused, not obeyed.
"""

import json
import os
import stat
import sys
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from ._files import atomic_write

FORMAT = "gfe-sklearn-model"
FORMAT_VERSION = 1

# A header larger than this is not ours (ours are a few kB): refuse before parsing it. The
# safetensors package's own limit is 100 MB.
MAX_HEADER_BYTES = 64 * 2**20

# Reading holds the whole file in memory (twice, briefly): a larger file is refused unread.
# The papers' MNIST models take a few MB; 4 GiB leaves room for user-supplied modules.
MAX_FILE_BYTES = 4 * 2**30

# JSON nested deeper than this is not ours (ours nests 4 levels): refused, not recursed into.
MAX_JSON_DEPTH = 32

# The dtypes a model file may hold. safetensors knows more (float8, complex, unsigned);
# nothing we write has them, so a file that does is refused rather than handed to torch.
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

TENSOR_FIELDS = {"dtype", "shape", "data_offsets"}


class ModelFileError(ValueError):
    """A file that is not a readable gfe-sklearn model file; the message names the fix."""


def write_model_file(path, content, tensors):
    """Write ``content`` (JSON-able dict) and ``tensors`` (name -> tensor) to ``path``.

    The file appears complete or not at all: it is written beside ``path`` and renamed.
    """
    atomic_write(path, [model_bytes(content, tensors)])


def model_bytes(content, tensors):
    """The bytes ``write_model_file`` writes: a safetensors file with our record as metadata."""
    metadata = {"format": FORMAT, "content": json.dumps(content)}
    return _in_our_order(safetensors.torch.save(_cpu_copies(tensors), metadata=metadata))


def _in_our_order(data):
    """``data`` with its header's metadata first and in a fixed order.

    safetensors writes the metadata map in an order that changes from call to call, so one
    model would give other bytes at each save and pickle: files that differ for nothing, and
    hashes (joblib's, scikit-learn's parameter checks) that say a model changed when it
    did not. The tensors' entries and bytes stay as safetensors laid them out.
    """
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    metadata = header.pop("__metadata__")
    ordered = {"__metadata__": dict(sorted(metadata.items())), **header}
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the alignment safetensors keeps for the bytes after it
    return len(text).to_bytes(8, "little") + text + data[8 + size :]


def _cpu_copies(tensors):
    copies = {}
    for name, tensor in tensors.items():
        if tensor.dtype not in DTYPE_NAMES:
            raise TypeError(f"tensor {name!r} has dtype {tensor.dtype}, which cannot be saved.")
        # Copies, because safetensors refuses tensors that share memory (a user-supplied
        # module with tied weights) and a file stores each name's bytes anyway.
        copies[name] = tensor.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
    return copies


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
        return _read(file.read(), path)


def read_model_bytes(data, source):
    """``read_model_file`` for the file's bytes; ``source`` names them in errors."""
    return _read(data, source)


def _read(data, path):
    if sys.byteorder != "little":  # the tensors are stored little-endian
        raise ModelFileError("model files can only be read on little-endian machines.")
    length = int.from_bytes(data[:8], "little")
    if len(data) < 8 or length > min(MAX_HEADER_BYTES, len(data) - 8):
        _refuse(path, "its header length does not fit the file")
    # Our rules for the JSON first: the safetensors parser takes the last of two equal keys
    # silently (a reader taking the first would see other weights) and ignores unknown
    # fields; the record lives in the metadata, which it returns only through a file name.
    header = _parse_header(path, data[8 : 8 + length])
    content = _parse_content(path, header.pop("__metadata__", None))
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != TENSOR_FIELDS:
            _refuse(path, f"entry {name!r} is not a tensor description")
    return content, _tensors(path, data)


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


def _tensors(path, data):
    """The tensors, as the safetensors parser reads them (it checks every dtype, shape and byte
    range against the file); each a writable copy of only the dtypes ``DTYPES`` lists."""
    try:
        views = safetensors.deserialize(data)
    except safetensors.SafetensorError as error:
        _refuse(path, f"the safetensors package refuses its tensors: {error}")
    tensors = {}
    while views:  # popped, so that each tensor's bytes are freed once copied
        name, view = views.pop()
        dtype = DTYPES.get(view["dtype"])
        if dtype is None:
            _refuse(
                path,
                f"tensor {name!r} has unknown dtype {view['dtype']!r:.40}; model files hold "
                f"{', '.join(DTYPES)}",
            )
        # safetensors' sizes are unsigned 64-bit, torch's signed: a larger one is no size.
        if not all(size < 2**63 for size in view["shape"]):
            _refuse(path, f"tensor {name!r} has a malformed shape {view['shape']}")
        # bytearray: a writable copy (the optimizer's state is updated in place, and torch
        # tensors over immutable bytes would be written through).
        raw = view["data"]
        flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(view["shape"])
    return tensors
