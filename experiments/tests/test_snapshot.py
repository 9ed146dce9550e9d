"""Training snapshots: round trips that resume exactly, and files that cannot be obeyed."""

import json
import pickle

import numpy as np
import pytest

from experiments._common import sampler_rng
from experiments._snapshot import (
    DrawStream,
    EpochStream,
    SnapshotError,
    load_state,
    remove_state,
    save_state,
)
from gfe_sklearn import GradientFlowEncoder

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def model():
    X = np.random.default_rng(0).random((40, 16))
    return GradientFlowEncoder(
        n_components=2,
        hidden_layer_sizes=(8,),
        max_iter=1,
        batch_size=8,
        device="cpu",
        random_state=0,
    ).fit(X), X


def _state(model):
    stream = EpochStream(40, sampler_rng(0, 1))
    stream.take(13)
    return {
        "model": model,
        "stream": stream,
        "seen": 13,
        "seconds": 1.5,
        "stopped": False,
        "extra": {"best": model, "best_val": 0.25, "bad": 1},
    }


def test_a_saved_state_resumes_exactly(model, tmp_path):
    est, X = model
    state = _state(est)
    save_state(tmp_path / "resume.json", state)
    loaded = load_state(tmp_path / "resume.json")
    assert {k: loaded[k] for k in ("seen", "seconds", "stopped")} == {
        "seen": 13,
        "seconds": 1.5,
        "stopped": False,
    }
    assert loaded["extra"]["best_val"] == 0.25 and loaded["extra"]["bad"] == 1
    np.testing.assert_array_equal(loaded["stream"].take(50), state["stream"].take(50))
    draws = DrawStream(40, sampler_rng(1, 0))
    save_state(tmp_path / "draws.json", {"stream": draws})
    np.testing.assert_array_equal(
        load_state(tmp_path / "draws.json")["stream"].take(9), draws.take(9)
    )
    batch = X[:10]
    loaded["model"].partial_fit(batch)
    est.partial_fit(batch)
    # A round trip, then the same update on each copy: identical arithmetic.
    np.testing.assert_array_equal(loaded["model"].transform(X), est.transform(X))


def test_saving_again_replaces_the_model_files(model, tmp_path):
    est, _ = model
    save_state(tmp_path / "resume.json", _state(est))
    save_state(tmp_path / "resume.json", _state(est))
    assert len(list(tmp_path.glob("resume.*.safetensors"))) == 2  # model and extra-best
    remove_state(tmp_path / "resume.json")
    assert list(tmp_path.iterdir()) == []


def test_no_state_is_none(tmp_path):
    assert load_state(tmp_path / "resume.json") is None


def test_a_crash_while_saving_leaves_the_previous_state(model, tmp_path, monkeypatch):
    est, X = model
    save_state(tmp_path / "resume.json", _state(est))
    import experiments._snapshot as snapshot

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(snapshot, "atomic_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        save_state(tmp_path / "resume.json", {"model": est, "seen": 99})
    monkeypatch.undo()
    assert load_state(tmp_path / "resume.json")["seen"] == 13


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda s: s["state"]["dict"]["model"].update(model="../../evil.safetensors"),
            "not a plain file name",
        ),
        (lambda s: s["state"]["dict"]["model"].update({"class": "os.system"}), "unexpected"),
        (lambda s: s["state"]["dict"]["stream"]["stream"].update(kind="pickle"), "pickle"),
        (lambda s: s["state"]["dict"]["stream"]["stream"].update(position=10**9), "out of range"),
        (lambda s: s.update(format="other"), "not a gfe-sklearn snapshot"),
    ],
)
def test_crafted_snapshots_are_refused_with_the_file_named(model, tmp_path, edit, match):
    est, _ = model
    path = tmp_path / "resume.json"
    save_state(path, _state(est))
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))
    with pytest.raises(SnapshotError, match=match) as error:
        load_state(path)
    assert str(path) in str(error.value) and "Delete it" in str(error.value)


def test_a_truncated_snapshot_or_model_file_is_named(model, tmp_path):
    est, _ = model
    path = tmp_path / "resume.json"
    save_state(path, _state(est))
    model_file = next(tmp_path.glob("resume.*.state-model.safetensors"))
    model_file.write_bytes(model_file.read_bytes()[:100])
    with pytest.raises(SnapshotError, match="resume.json cannot be read"):
        load_state(path)
    path.write_text(path.read_text()[:30])
    with pytest.raises(SnapshotError, match="resume.json cannot be read"):
        load_state(path)


def test_a_pickled_snapshot_of_an_older_version_is_not_loaded(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "resume.pkl").write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(SnapshotError, match="pickled by gfe-sklearn 0.2.0"):
        load_state(tmp_path / "resume.json")
    assert not marker.exists()


class _Exploit:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))
