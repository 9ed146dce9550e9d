"""Saving and loading: round trips, user modules, devices, and files that try to run code."""

import io
import json
import os
import pickle
import sys

import joblib
import numpy as np
import pytest
import torch

import gfe_sklearn._files as files
from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder, trust_legacy_pickles
from gfe_sklearn._model_file import ModelFileError

ESTIMATORS = [GradientFlowEncoder, AutoEncoderBaseline]

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


class Exploit:
    """Unpickling this writes its marker file: proof that a loader ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _states_equal(first, second):
    return all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters()))


def _fitted(cls, X, small, **params):
    return cls(**{**small, **params}).fit(X)


def _rewrite(path, edit_content=None, edit_header=None):
    """Rewrite a model file with its settings or header edited (as an attacker could)."""
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    if edit_content is not None:
        content = json.loads(header["__metadata__"]["content"])
        edit_content(content)
        header["__metadata__"]["content"] = json.dumps(content)
    if edit_header is not None:
        edit_header(header)
    encoded = json.dumps(header).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + raw[8 + length :])


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_save_load_keeps_codes_parameters_and_training_state(cls, X, small, tmp_path):
    est = _fitted(cls, X, small, hidden_layer_sizes=(8, 6))
    est.save(tmp_path / "model.safetensors")
    loaded = cls.load(tmp_path / "model.safetensors")
    assert loaded.get_params() == est.get_params()
    assert isinstance(loaded.hidden_layer_sizes, tuple)
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    np.testing.assert_array_equal(
        loaded.inverse_transform(est.transform(X)), est.inverse_transform(est.transform(X))
    )
    for name in ("n_features_in_", "n_iter_", "n_samples_seen_", "loss_curve_", "device_"):
        assert getattr(loaded, name) == getattr(est, name)
    # The optimizer's state and the shuffling generator come back too: continuing to train
    # the loaded model gives exactly the weights the original reaches.
    est.partial_fit(X)
    loaded.partial_fit(X)
    assert _states_equal(loaded.decoder_, est.decoder_)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_unfitted_estimator_saves_its_parameters(cls, tmp_path):
    est = cls(n_components=3, hidden_layer_sizes=(5,), random_state=np.random.RandomState(1))
    est.save(tmp_path / "m")
    loaded = cls.load(tmp_path / "m")
    assert not hasattr(loaded, "decoder_")
    assert loaded.random_state.get_state()[1].tolist() == est.random_state.get_state()[1].tolist()
    assert loaded.n_components == 3 and loaded.hidden_layer_sizes == (5,)


def test_feature_names_and_float32_survive(X, small, tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X.astype(np.float32), columns=[f"px{i}" for i in range(X.shape[1])])
    est = GradientFlowEncoder(**small).fit(frame)
    est.save(tmp_path / "m")
    loaded = GradientFlowEncoder.load(tmp_path / "m")
    assert list(loaded.feature_names_in_) == list(frame.columns)
    assert loaded._model_dtype == torch.float32
    np.testing.assert_array_equal(loaded.transform(frame), est.transform(frame))


def test_early_stopping_record_survives(X, small, tmp_path):
    est = GradientFlowEncoder(**{**small, "early_stopping": True, "max_iter": 3}).fit(X)
    est.save(tmp_path / "m")
    assert GradientFlowEncoder.load(tmp_path / "m").validation_scores_ == est.validation_scores_


@pytest.mark.parametrize("sizes", [np.array([8, 6]), range(8, 4, -2)], ids=["ndarray", "range"])
def test_array_like_hidden_layer_sizes_survive_save_and_pickling(sizes, X, small, tmp_path):
    est = _fitted(GradientFlowEncoder, X, small, hidden_layer_sizes=sizes)
    assert est.hidden_layer_sizes is sizes  # fit reads it as (8, 6) and leaves it as given
    est.save(tmp_path / "m")
    for copy in (GradientFlowEncoder.load(tmp_path / "m"), pickle.loads(pickle.dumps(est))):
        assert type(copy.hidden_layer_sizes) is type(sizes)
        assert list(copy.hidden_layer_sizes) == [8, 6]
        np.testing.assert_array_equal(copy.transform(X), est.transform(X))


def test_array_like_hidden_layer_sizes_work_in_parallel_cross_validation(X, small):
    # Parallel workers receive the estimator pickled.
    from sklearn.model_selection import cross_val_score

    est = GradientFlowEncoder(**{**small, "hidden_layer_sizes": np.array([8, 6])})
    scores = cross_val_score(est, X, cv=2, n_jobs=2)
    assert np.isfinite(scores).all()


def test_joblib_and_pickle_round_trips_keep_working(X, small, tmp_path):
    est = _fitted(GradientFlowEncoder, X, small)
    joblib.dump(est, tmp_path / "m.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "m.joblib").transform(X), est.transform(X))


def test_file_is_readable_by_safetensors(X, small, tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    est = _fitted(AutoEncoderBaseline, X, small)
    est.save(tmp_path / "m.safetensors")
    weights = safetensors_torch.load_file(str(tmp_path / "m.safetensors"))
    for name, value in est.decoder_.state_dict().items():
        assert torch.equal(weights[f"decoder_.{name}"], value)


def test_a_file_of_the_other_class_is_refused_with_its_name(X, small, tmp_path):
    _fitted(AutoEncoderBaseline, X, small).save(tmp_path / "m")
    with pytest.raises(ModelFileError, match="AutoEncoderBaseline.load"):
        GradientFlowEncoder.load(tmp_path / "m")


def test_unknown_keyword_is_refused():
    with pytest.raises(TypeError, match="encoder"):
        GradientFlowEncoder.load("unused", encoder=torch.nn.Linear(1, 1))


# -- user-supplied modules -------------------------------------------------------------------


def test_user_decoder_is_passed_back_at_load(X, small, tmp_path):
    def decoder():
        return torch.nn.Sequential(
            torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, X.shape[1])
        )

    est = GradientFlowEncoder(**small, decoder=decoder()).fit(X)
    est.save(tmp_path / "m")
    with pytest.raises(ValueError, match=r"torch.nn.modules.container.Sequential.*decoder="):
        GradientFlowEncoder.load(tmp_path / "m")
    loaded = GradientFlowEncoder.load(tmp_path / "m", decoder=decoder())
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    with pytest.raises(ModelFileError, match="do not fit"):
        GradientFlowEncoder.load(tmp_path / "m", decoder=torch.nn.Linear(2, X.shape[1]))


def test_a_decoder_is_refused_for_a_model_fitted_without_one(X, small, tmp_path):
    _fitted(GradientFlowEncoder, X, small).save(tmp_path / "m")
    with pytest.raises(ValueError, match="without a user-supplied decoder"):
        GradientFlowEncoder.load(tmp_path / "m", decoder=torch.nn.Linear(2, X.shape[1]))


# -- devices ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_model_fitted_on_a_missing_gpu_loads_on_the_cpu_with_a_warning(
    cls, X, small, tmp_path, monkeypatch
):
    # Simulated: the file records device_='cuda' as a model fitted on a GPU does (the
    # tensors in a file are always stored from the CPU).
    est = _fitted(cls, X, small)
    codes = est.transform(X)
    est.device_ = "cuda"
    est.save(tmp_path / "m")
    blob = pickle.dumps(est)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for load in (lambda: cls.load(tmp_path / "m"), lambda: pickle.loads(blob)):
        with pytest.warns(UserWarning, match=r"fitted on device 'cuda'.*loaded on the CPU"):
            loaded = load()
        assert loaded.device_ == "cpu"
        np.testing.assert_array_equal(loaded.transform(X), codes)


def test_device_can_be_chosen_at_load(X, small, tmp_path):
    est = _fitted(GradientFlowEncoder, X, small)
    est.device_ = "cuda"
    est.save(tmp_path / "m")
    loaded = GradientFlowEncoder.load(tmp_path / "m", device="cpu")
    assert loaded.device_ == "cpu" and loaded.device == "cpu"


@pytest.mark.cuda
def test_gpu_model_saved_loads_on_a_cpu_only_machine(X, small, tmp_path, monkeypatch):
    est = GradientFlowEncoder(**{**small, "device": "cuda"}).fit(X.astype(np.float32))
    codes = est.transform(X.astype(np.float32))
    est.save(tmp_path / "m")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="loaded on the CPU"):
        loaded = GradientFlowEncoder.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.transform(X.astype(np.float32)), codes, atol=1e-4)


# -- files that try to run code --------------------------------------------------------------


@pytest.fixture
def saved(X, small, tmp_path):
    path = tmp_path / "model.safetensors"
    _fitted(GradientFlowEncoder, X, small).save(path)
    return path


def test_a_pickle_exploit_saved_as_a_model_file_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(Exploit(marker)))
    with pytest.raises(ModelFileError, match="not a gfe-sklearn model file"):
        GradientFlowEncoder.load(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the same bytes do run code when unpickled
    assert marker.exists()


def test_a_module_named_in_the_file_is_never_imported(saved, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_gfe_module.py").write_text(f"open({str(marker)!r}, 'w')\nclass D: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def edit(content):
        content["params"]["decoder"] = {"module": "evil_gfe_module.D"}

    _rewrite(saved, edit_content=edit)
    with pytest.raises(ValueError, match="evil_gfe_module.D"):
        GradientFlowEncoder.load(saved)
    assert not marker.exists() and "evil_gfe_module" not in sys.modules


def test_pickle_bytes_in_tensor_data_are_only_numbers(saved, tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps(Exploit(marker))
    raw = bytearray(saved.read_bytes())
    length = int.from_bytes(raw[:8], "little")
    raw[8 + length : 8 + length + len(payload)] = payload
    saved.write_bytes(bytes(raw))
    try:
        GradientFlowEncoder.load(saved)
    except ModelFileError:
        pass  # e.g. a weight that became NaN is refused at use, not here
    assert not marker.exists()


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["params"].update(loss="__import__('os').system('x')"), "invalid parameters"),
        (lambda c: c["params"].update(random_state={"pickle": "gASV"}), "cannot read"),
        (lambda c: c["params"].update(unknown=1), "newer gfe-sklearn"),
        (lambda c: c["fitted"].update(loss_curve_="cos.system"), "loss_curve_"),
        (lambda c: c["fitted"].update(n_features_in_=-1), "n_features_in_"),
        (lambda c: c["fitted"].update(sample_shape=[3]), "sample_shape"),
        (lambda c: c["fitted"].update(rng=["MT19937", [1, 2], 0, 0, 0.0]), "random state"),
        (lambda c: c["fitted"]["optimizer"].update({"class": "os.system"}), "optimizer"),
        (lambda c: c["fitted"].pop("dtype"), "incomplete"),
        (lambda c: c.update(estimator="builtins.eval"), "builtins.eval"),
        (lambda c: c.update(format_version=99), "Upgrade gfe-sklearn"),
    ],
)
def test_crafted_settings_are_refused(saved, edit, match):
    _rewrite(saved, edit_content=edit)
    with pytest.raises(ModelFileError, match=match):
        GradientFlowEncoder.load(saved)


def _first_tensor(header):
    return next(k for k in sorted(header) if k != "__metadata__")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda h: h[_first_tensor(h)].update(dtype="O"), "unknown dtype"),
        (lambda h: h[_first_tensor(h)].update(shape=[-1]), "malformed"),
        (lambda h: h[_first_tensor(h)].update(shape=[10**12]), "byte range"),
        (lambda h: h[_first_tensor(h)].update(data_offsets=[0, 10**12]), "byte range"),
        (lambda h: h[_first_tensor(h)].update(extra="x"), "not a tensor description"),
        (lambda h: h["__metadata__"].update(format="pickle"), "does not say"),
        (lambda h: h.update({"decoder_.0.weight": h[_first_tensor(h)]}), "overlap"),
    ],
)
def test_crafted_tensor_descriptions_are_refused(saved, edit, match):
    _rewrite(saved, edit_header=edit)
    with pytest.raises(ModelFileError, match=match):
        GradientFlowEncoder.load(saved)


def test_a_missing_or_changed_weight_is_refused(saved):
    _rewrite(saved, edit_header=lambda h: h.pop(_first_tensor(h)))
    with pytest.raises(ModelFileError):
        GradientFlowEncoder.load(saved)


def test_truncated_and_oversized_headers_are_refused(saved):
    raw = saved.read_bytes()
    for cut in (0, 4, 8, 20, len(raw) // 2, len(raw) - 1):
        saved.write_bytes(raw[:cut])
        with pytest.raises(ModelFileError):
            GradientFlowEncoder.load(saved)
    saved.write_bytes((2**62).to_bytes(8, "little") + raw[8:])
    with pytest.raises(ModelFileError, match="header length"):
        GradientFlowEncoder.load(saved)


def test_pickled_model_carries_no_torch_objects(X, small):
    # A restricted unpickler that admits only this package, numpy and builtins loads a
    # fitted model: nothing in the pickle asks torch's unpickler to rebuild anything.
    est = _fitted(GradientFlowEncoder, X, small)

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if module.split(".")[0] not in ("gfe_sklearn", "numpy", "builtins"):
                raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
            return super().find_class(module, name)

    loaded = Restricted(io.BytesIO(pickle.dumps(est))).load()
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))


def test_a_pickle_whose_model_bytes_are_crafted_is_refused(X, small, tmp_path):
    marker = tmp_path / "ran"
    est = _fitted(GradientFlowEncoder, X, small)
    state = est.__getstate__()
    state["gfe_sklearn_model"] = pickle.dumps(Exploit(marker))
    fake = GradientFlowEncoder.__new__(GradientFlowEncoder)
    with pytest.raises(ModelFileError):
        fake.__setstate__(state)
    assert not marker.exists()


def _legacy_state(est, payload):
    """The state a pickle of gfe-sklearn 0.2.0 held: the __dict__, torch objects in a blob."""
    state = {k: v for k, v in est.__dict__.items() if k not in ("decoder_", "optimizer_")}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    state["_torch_blob"] = buffer.getvalue()
    return state


def test_legacy_pickle_is_refused_unless_trusted(X, small, tmp_path):
    marker = tmp_path / "ran"
    est = _fitted(GradientFlowEncoder, X, small)
    crafted = _legacy_state(est, {"decoder_": Exploit(marker)})
    with pytest.raises(ModelFileError, match="trust_legacy_pickles"):
        GradientFlowEncoder.__new__(GradientFlowEncoder).__setstate__(crafted)
    assert not marker.exists()
    genuine = _legacy_state(est, {"decoder_": est.decoder_, "optimizer_": est.optimizer_})
    old = GradientFlowEncoder.__new__(GradientFlowEncoder)
    with trust_legacy_pickles():
        old.__setstate__(genuine)
    old.save(tmp_path / "converted")
    np.testing.assert_array_equal(
        GradientFlowEncoder.load(tmp_path / "converted").transform(X), est.transform(X)
    )


# -- writing ---------------------------------------------------------------------------------


def test_a_failed_save_leaves_the_previous_file_and_no_temporary(saved, X, small, monkeypatch):
    before = saved.read_bytes()

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _fitted(GradientFlowEncoder, X, small, n_components=3).save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]


def test_a_parameter_that_cannot_be_stored_is_named(tmp_path):
    est = GradientFlowEncoder(random_state=np.random.default_rng(0))
    with pytest.raises(TypeError, match="random_state"):
        est.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()
