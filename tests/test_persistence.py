"""Saving and loading: round trips, user modules, devices, and files that try to run code."""

import io
import json
import os
import pickle
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

import gfe_sklearn._files as files
from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder, trust_legacy_pickles
from gfe_sklearn._model_file import (
    ModelFileError,
    model_bytes,
    read_model_bytes,
    read_model_file,
)

DATA = Path(__file__).parent / "data"

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


def test_file_is_read_by_safe_open_with_the_record_intact(X, small, tmp_path):
    est = _fitted(AutoEncoderBaseline, X, small)
    est.save(tmp_path / "m.safetensors")
    content, tensors = est._record()
    with safetensors.safe_open(tmp_path / "m.safetensors", framework="pt") as file:
        metadata = file.metadata()
        assert metadata["format"] == "gfe-sklearn-model"
        assert json.loads(metadata["content"]) == json.loads(json.dumps(content))
        assert sorted(file.keys()) == sorted(tensors)
        for name, value in tensors.items():
            assert _same_bits(file.get_tensor(name), value), name
    weights = safetensors.torch.load_file(str(tmp_path / "m.safetensors"))
    for name, value in est.decoder_.state_dict().items():
        assert torch.equal(weights[f"decoder_.{name}"], value)


def _same_bits(first, second):
    return (
        first.dtype == second.dtype
        and first.shape == second.shape
        and torch.equal(first.reshape(-1).view(torch.uint8), second.reshape(-1).view(torch.uint8))
    )


# gfe-sklearn wrote model files with its own code until 0.10.0 and with the safetensors
# package since. The two helpers below are that writer and a plain reader of the layout.

_LAYOUT_DTYPES = {
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


def _old_model_bytes(content, tensors):
    """A model file as gfe-sklearn's own writer made it (keys sorted, spaces after separators,
    the header padded to 8 bytes, the metadata last)."""
    names = {dtype: name for name, dtype in _LAYOUT_DTYPES.items()}
    blobs, header, offset = [], {}, 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {
            "dtype": names[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "gfe-sklearn-model", "content": json.dumps(content)}
    encoded = json.dumps(header).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    return b"".join([len(encoded).to_bytes(8, "little"), encoded, *blobs])


def _plain_read(raw):
    """``(content, tensors)`` of a model file, decoded by hand from the layout."""
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    content = json.loads(header.pop("__metadata__")["content"])
    data = raw[8 + length :]
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        flat = torch.frombuffer(bytearray(data[begin:end]), dtype=_LAYOUT_DTYPES[entry["dtype"]])
        tensors[name] = flat.reshape(entry["shape"])
    return content, tensors


def _read_equal(first, second, new_params=(), new_fitted=()):
    """Same record and tensors, but for ``new_params`` and ``new_fitted`` (fitted record keys)
    that ``second`` has and ``first`` lacks (added since ``first`` was written)."""
    (content, tensors), (other_content, other_tensors) = first, second
    other_content = {
        **other_content,
        "params": {k: v for k, v in other_content["params"].items() if k not in new_params},
    }
    if other_content["fitted"] is not None:
        fitted = other_content["fitted"]
        other_content["fitted"] = {k: v for k, v in fitted.items() if k not in new_fitted}
    return (
        content == other_content
        and sorted(tensors) == sorted(other_tensors)
        and all(_same_bits(tensors[name], other_tensors[name]) for name in tensors)
    )


def test_one_model_saves_and_pickles_to_the_same_bytes_every_time(X):
    est = GradientFlowEncoder(n_components=2, hidden_layer_sizes=(4,), max_iter=1, device="cpu")
    est.fit(X)
    # safetensors orders the metadata map at random per call: 12 calls agree by chance 1 in 2**11.
    assert len({model_bytes(*est._record()) for _ in range(12)}) == 1
    assert len({pickle.dumps(est) for _ in range(4)}) == 1


def test_a_file_written_before_the_safetensors_package_loads_bit_identically(X, tmp_path):
    # Written by gfe-sklearn's own writer (commit dcc704d, 0.10.0 in development):
    # GradientFlowEncoder(n_components=2, hidden_layer_sizes=(4,), max_iter=2, batch_size=8,
    # device="cpu", random_state=0) fitted on RandomState(0).uniform(size=(24, 6)).
    old = DATA / "gfe-before-safetensors.safetensors"
    assert _read_equal(read_model_file(old), _plain_read(old.read_bytes()))
    loaded = GradientFlowEncoder.load(old)
    assert loaded.n_features_in_ == 6 and loaded.solver_ == "lbfgs"
    # The file stores its loss (then the default, 'bce'), so the default's change to 'auto'
    # changes nothing; loss_, recorded since, is the loss the model was trained with.
    assert read_model_file(old)[0]["params"]["loss"] == "bce"
    assert "loss_" not in read_model_file(old)[0]["fitted"]
    assert loaded.loss == loaded.loss_ == "bce"
    loaded.save(tmp_path / "new.safetensors")
    assert (tmp_path / "new.safetensors").read_bytes() != old.read_bytes()  # another layout
    added = set(loaded.get_params()) - set(read_model_file(old)[0]["params"])
    assert added == {"code_prior", "distributed"}  # parameters added since, at their old values
    assert all(loaded.get_params()[name] == loaded.value_before_parameter(name) for name in added)
    new = read_model_file(tmp_path / "new.safetensors")
    assert new[0]["fitted"]["loss_"] == "bce"
    assert new[0]["fitted"]["code_mean_square_"] is None  # never trained with a prior
    recorded_since = {
        "loss_",
        "code_mean_square_",
        "encoder_distilled",
        "code_metric",
        "refine_min_decrease",
        "refine_max_evals",
    }
    assert _read_equal(read_model_file(old), new, new_params=added, new_fitted=recorded_since)
    again = GradientFlowEncoder.load(tmp_path / "new.safetensors")
    data = np.random.RandomState(1).uniform(size=(16, 6))
    np.testing.assert_array_equal(again.transform(data), loaded.transform(data))
    again.partial_fit(data)
    loaded.partial_fit(data)
    assert _states_equal(again.decoder_, loaded.decoder_)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_the_old_writer_and_the_safetensors_package_write_the_same_record(cls, X, small):
    # GradientFlowEncoder with an encoder, so that both classes write encoder_ tensors.
    params = {"code_init": "encoder"} if cls is GradientFlowEncoder else {}
    est = _fitted(cls, X, small, **params)
    record = est._record()
    old, new = _old_model_bytes(*record), model_bytes(*record)
    assert old != new  # compact JSON, metadata first: bytes differ, content does not
    assert _read_equal(read_model_bytes(old, "old"), read_model_bytes(new, "new"))
    assert _read_equal(read_model_bytes(old, "old"), _plain_read(new))
    for raw in (old, new):
        assert sorted(safetensors.torch.load(raw)) == sorted(record[1])


@pytest.mark.parametrize(
    "cls, trusted",
    [
        (GradientFlowEncoder, "gfe_sklearn._gradient_flow.GradientFlowEncoder"),
        (AutoEncoderBaseline, "gfe_sklearn._autoencoder.AutoEncoderBaseline"),
    ],
)
def test_skops_round_trips_a_pipeline_trusting_only_the_estimator_class(
    cls, trusted, X, small, tmp_path
):
    # docs/persistence.md gives this route and these names.
    sio = pytest.importorskip("skops.io")
    pipe = make_pipeline(MinMaxScaler(clip=True), cls(**small)).fit(X)
    sio.dump(pipe, tmp_path / "pipe.skops")
    assert sio.get_untrusted_types(file=tmp_path / "pipe.skops") == [trusted]
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.load(tmp_path / "pipe.skops")
    loaded = sio.load(tmp_path / "pipe.skops", trusted=[trusted])
    np.testing.assert_array_equal(loaded.transform(X), pipe.transform(X))


def test_skops_refuses_a_model_with_a_user_supplied_module(X, small, tmp_path):
    # docs/persistence.md says so and sends such models to save/load instead.
    sio = pytest.importorskip("skops.io")
    decoder = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 16))
    est = GradientFlowEncoder(**small, decoder=decoder).fit(X)
    with pytest.raises(RuntimeError, match="TensorBase"):
        sio.dump(est, tmp_path / "m.skops")


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


def test_a_user_decoder_with_tied_weights_saves_and_loads(X, small, tmp_path):
    # Its state dict names one tensor twice; the safetensors package refuses tensors that
    # share memory, so each is saved as a copy.
    def decoder():
        first, second = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        second.weight = first.weight
        return torch.nn.Sequential(first, torch.nn.Tanh(), second, torch.nn.Linear(2, X.shape[1]))

    est = GradientFlowEncoder(**small, decoder=decoder()).fit(X)
    est.save(tmp_path / "m")
    loaded = GradientFlowEncoder.load(tmp_path / "m", decoder=decoder())
    assert loaded.decoder_[0].weight is loaded.decoder_[2].weight
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))


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
    "edit, names",
    [
        (lambda h: h[_first_tensor(h)].update(dtype="O"), None),
        (lambda h: h[_first_tensor(h)].update(shape=[-1]), None),
        (lambda h: h[_first_tensor(h)].update(shape=[10**12]), None),
        (lambda h: h[_first_tensor(h)].update(data_offsets=[0, 10**12]), None),
        (
            lambda h: h.update({"decoder_.0.weight": h[_first_tensor(h)]}),
            ("decoder_.0.bias", "decoder_.0.weight"),
        ),
    ],
    ids=[
        "unknown dtype",
        "negative size",
        "shape beyond its bytes",
        "bytes beyond the file",
        "overlapping bytes",
    ],
)
def test_crafted_tensor_descriptions_are_refused_by_the_safetensors_parser(saved, edit, names):
    # The safetensors package checks the tensor table; its reason reaches the user inside
    # our error, which names the file (its wording varies with its version).
    _rewrite(saved, edit_header=edit)
    with pytest.raises(safetensors.SafetensorError) as reason:
        safetensors.deserialize(saved.read_bytes())
    pattern = rf"{saved.name} is not a gfe-sklearn model file \(the safetensors package refuses"
    with pytest.raises(ModelFileError, match=pattern) as refusal:
        GradientFlowEncoder.load(saved)
    # Which of two overlapping tensors the parser names varies from one call to the next.
    names = names or ("",)
    reasons = {str(reason.value).replace(first, other) for first in names for other in names}
    assert any(reason in str(refusal.value) for reason in reasons)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda h: h[_first_tensor(h)].update(extra="x"), "not a tensor description"),
        (lambda h: h["__metadata__"].update(format="pickle"), "does not say"),
    ],
)
def test_headers_the_safetensors_parser_accepts_but_we_never_write_are_refused(saved, edit, match):
    _rewrite(saved, edit_header=edit)
    safetensors.deserialize(saved.read_bytes())  # valid safetensors: the check is ours
    with pytest.raises(ModelFileError, match=rf"{saved.name}.*{match}"):
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
