"""Training state on disk that loading cannot make run code (snapshots and cached models).

A state is a tree of dicts holding numbers, strings, lists, image streams and fitted
estimators. It is written as ``<name>.json`` plus one model file per estimator
(``<name>.<tag>.<key>.safetensors``, written by the estimator's ``save``); the JSON is
replaced last and names the model files it uses, so a crash at any point leaves a readable
state. Reading parses JSON and loads model files with ``load``: nothing is unpickled.
"""

import json
import re
import secrets
from pathlib import Path

import numpy as np

from gfe_sklearn import ModelFileError

from ._common import atomic_write_json
from ._models import ESTIMATORS

FORMAT = "gfe-sklearn-snapshot"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+\.safetensors")


class SnapshotError(ValueError):
    """A snapshot that cannot be read; the message names the file and the fix."""


class DrawStream:
    """Training images drawn uniformly with replacement (the papers' data-efficiency protocol)."""

    def __init__(self, n, rng):
        self.n, self.rng = n, rng

    def take(self, k):
        return self.rng.integers(0, self.n, size=k)

    def to_json(self):
        return {"kind": "draws", "n": int(self.n), "rng": self.rng.bit_generator.state}

    @classmethod
    def from_json(cls, saved):
        return cls(saved["n"], _generator(saved["rng"]))


class EpochStream:
    """Training images in epochs: each a fresh permutation of all ``n`` images."""

    def __init__(self, n, rng):
        self.n, self.rng = n, rng
        self.order, self.position = np.empty(0, dtype=np.int64), 0

    def take(self, k):
        parts = []
        while k > 0:
            if self.position == len(self.order):
                self.order, self.position = self.rng.permutation(self.n), 0
            part = self.order[self.position : self.position + k]
            self.position += len(part)
            k -= len(part)
            parts.append(part)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def to_json(self):
        return {
            "kind": "epochs",
            "n": int(self.n),
            "rng": self.rng.bit_generator.state,
            "order": self.order.tolist(),
            "position": int(self.position),
        }

    @classmethod
    def from_json(cls, saved):
        stream = cls(saved["n"], _generator(saved["rng"]))
        stream.order = np.asarray(saved["order"], dtype=np.int64)
        stream.position = int(saved["position"])
        if not 0 <= stream.position <= len(stream.order) or (
            stream.order.size and not 0 <= stream.order.min() <= stream.order.max() < stream.n
        ):
            raise ValueError("the epoch stream's order or position is out of range")
        return stream


STREAMS = {"draws": DrawStream, "epochs": EpochStream}


def _generator(state):
    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
        raise ValueError("the stream's random generator is not a PCG64 state")
    generator = np.random.Generator(np.random.PCG64())
    generator.bit_generator.state = state
    return generator


def save_state(path, state):
    """Write ``state`` to ``path`` (a ``.json`` file) and its models beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag, written = secrets.token_hex(4), []

    def encode(value, key):
        if isinstance(value, tuple(ESTIMATORS.values())):
            name = f"{path.stem}.{tag}.{key}.safetensors"
            value.save(path.parent / name)
            written.append(name)
            return {"model": name, "class": type(value).__name__}
        if isinstance(value, tuple(STREAMS.values())):
            return {"stream": value.to_json()}
        if isinstance(value, dict):
            return {"dict": {str(k): encode(v, f"{key}-{k}") for k, v in value.items()}}
        if isinstance(value, np.generic):
            return value.item()
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (list, tuple)) and all(
            v is None or isinstance(v, (bool, int, float, str)) for v in value
        ):
            return list(value)
        raise TypeError(f"a snapshot cannot hold {type(value).__name__} (at {key!r})")

    content = {"format": FORMAT, "version": 1, "state": encode(state, "state")}
    atomic_write_json(path, content)
    for old in path.parent.glob(f"{path.stem}.*.safetensors"):
        if old.name not in written:
            old.unlink(missing_ok=True)


def load_state(path, params=None):
    """The state ``save_state`` wrote to ``path``, or ``None`` when there is none.

    ``params`` are set on every model in it (``set_params``).

    Raises ``SnapshotError`` naming the file and the fix when it cannot be read, and for a
    snapshot pickled by gfe-sklearn 0.2.0 or earlier (pickles can run code).
    """
    path = Path(path)
    legacy = path.with_suffix(".pkl")
    if not path.exists():
        if legacy.exists():
            raise SnapshotError(
                f"{legacy} was pickled by gfe-sklearn 0.2.0 or earlier; this version does not "
                "load pickles, which can run code. Delete it (that training restarts) or use "
                "another --out."
            )
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(content, dict) or content.get("format") != FORMAT:
            raise ValueError("it is not a gfe-sklearn snapshot")
        return _decode(content["state"], path.parent, params or {})
    except (OSError, ValueError, TypeError, KeyError, ModelFileError) as error:
        raise SnapshotError(
            f"The training snapshot {path} cannot be read ({error}). Delete it and the "
            f"{path.stem}.*.safetensors files beside it (that training restarts), or use "
            "another --out."
        ) from error


def _decode(value, folder, params):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(v, folder, params) for v in value]
    if isinstance(value, dict) and len(value) in (1, 2):
        if set(value) == {"dict"} and isinstance(value["dict"], dict):
            return {k: _decode(v, folder, params) for k, v in value["dict"].items()}
        if set(value) == {"stream"} and isinstance(value["stream"], dict):
            return STREAMS[value["stream"]["kind"]].from_json(value["stream"])
        if set(value) == {"model", "class"} and value["class"] in ESTIMATORS:
            name = value["model"]
            if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name):
                raise ValueError(f"model file name {name!r} is not a plain file name")
            return ESTIMATORS[value["class"]].load(folder / name).set_params(**params)
    raise ValueError(f"unexpected value {value!r:.80}")


def remove_state(path):
    """Delete the state at ``path`` and its model files."""
    path = Path(path)
    path.unlink(missing_ok=True)
    for model in path.parent.glob(f"{path.stem}.*.safetensors"):
        model.unlink(missing_ok=True)
