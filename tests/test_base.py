"""Behaviour shared by both estimators: validation, devices, dtypes, seeding, training loop,
batched inference and pickling."""

import copy
import inspect
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.utils.validation import check_is_fitted

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder, _base, _device
from gfe_sklearn.flow import LOSSES, _rows
from gfe_sklearn.flow._rows import padded_mlp, padded_rows
from gfe_sklearn.nn import ACTIVATIONS

ESTIMATORS = [GradientFlowEncoder, AutoEncoderBaseline]
ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]


def _fitted_state(est):
    return {k: v for k, v in vars(est).items() if k.endswith("_") or k.startswith("_")}


# -- devices ----------------------------------------------------------------------------


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _device.resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(_device, "_mps_available", lambda: True)
    assert _device.resolve_device("auto") == "mps"
    monkeypatch.setattr(_device, "_mps_available", lambda: False)
    assert _device.resolve_device("auto") == "cpu"
    assert _device.resolve_device(torch.device("cpu")) == "cpu"


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu", ""])
def test_unknown_device_lists_valid_forms(device):
    with pytest.raises(ValueError, match=r"is not valid; use one of \['auto', 'cpu', 'cuda'"):
        _device.resolve_device(device)


def test_missing_device_is_a_clear_error_at_fit(X, small, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    est = GradientFlowEncoder(**{**small, "device": "cuda:1"})
    with pytest.raises(ValueError, match=r"device='cuda:1' is not available.*device='auto'"):
        est.fit(X)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


def test_nothing_touches_cuda_at_import_or_init():
    code = """
import pickle, torch
from sklearn.base import clone
def boom(*args, **kwargs):
    raise AssertionError("CUDA was touched")
for name in ("is_available", "init", "device_count", "current_device", "_lazy_init"):
    setattr(torch.cuda, name, boom)
torch.backends.mps.is_available = boom
import gfe_sklearn
from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder
for cls in (GradientFlowEncoder, AutoEncoderBaseline):
    est = cls(device="auto")
    repr(est), est.get_params(), clone(est), pickle.loads(pickle.dumps(est))
print("untouched")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "untouched" in result.stdout


@pytest.mark.cuda
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_auto_device_fits_on_cuda_and_loads_on_a_cpu_only_machine(cls, X, small, monkeypatch):
    est = cls(**{**small, "device": "auto"}).fit(X.astype(np.float32))
    assert est.device_.startswith("cuda")
    assert next(est.decoder_.parameters()).is_cuda
    codes = est.transform(X.astype(np.float32))
    blob = pickle.dumps(est)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="loaded on the CPU"):
        loaded = pickle.loads(blob)
    assert loaded.device_ == "cpu"
    assert not next(loaded.decoder_.parameters()).is_cuda
    np.testing.assert_allclose(loaded.transform(X.astype(np.float32)), codes, atol=1e-4)


# -- pickling ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_pickle_round_trip_keeps_model_and_optimizer(cls, X, small):
    est = cls(**small).fit(X)
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    optimized = {id(p) for group in loaded.optimizer_.param_groups for p in group["params"]}
    assert {id(p) for p in loaded.decoder_.parameters()} <= optimized
    loaded.partial_fit(X)  # the optimizer still drives the loaded model
    assert loaded.n_iter_ == est.n_iter_ + 1


# The same from a model file, and a GPU-fitted model: tests/test_persistence.py.


def test_unfitted_estimator_with_a_user_module_pickles(small):
    est = GradientFlowEncoder(**small, decoder=torch.nn.Linear(2, 16))
    loaded = pickle.loads(pickle.dumps(est))
    assert torch.equal(loaded.decoder.weight, est.decoder.weight)


# -- validation -------------------------------------------------------------------------

BAD_INPUTS = {
    "nan": (lambda X: np.where(X > 0.9, np.nan, X), "NaN"),
    "inf": (lambda X: np.where(X > 0.9, np.inf, X), "infinity"),
    "empty": (lambda X: X[:0], "0 sample"),
    "1-D": (lambda X: X[:, 0], "Expected 2D array"),
    "complex": (lambda X: X + 1j, "Complex data not supported"),
    "strings": (lambda X: np.where(X > 0.9, "pixel", X).astype(object), "could not convert"),
}


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_and_changes_nothing(cls, case, X, small):
    make_bad, message = BAD_INPUTS[case]
    est = cls(**small)
    with pytest.raises(ValueError, match=message):
        est.fit(make_bad(X))
    assert _fitted_state(est) == {}
    est.fit(X)
    state, codes = dict(vars(est)), est.transform(X)
    for method in (est.fit, est.partial_fit, est.transform, est.score):
        with pytest.raises(ValueError, match=message):
            method(make_bad(X))
    assert vars(est).keys() == state.keys()
    assert all(vars(est)[k] is v for k, v in state.items() if not isinstance(v, (int, float)))
    np.testing.assert_array_equal(est.transform(X), codes)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_wrong_number_of_features(cls, X, small):
    est = cls(**small).fit(X)
    for method in (est.transform, est.score, est.partial_fit):
        with pytest.raises(
            ValueError, match=f"X has 5 features, but {cls.__name__} is expecting 16 features"
        ):
            method(X[:, :5])
    with pytest.raises(ValueError, match="X has 3 columns.*n_components=2"):
        est.inverse_transform(np.zeros((4, 3)))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_inverse_transform_takes_X_and_its_former_name_Z_with_a_warning(cls, X, small):
    est = cls(**small).fit(X)
    codes = est.transform(X[:5])
    decoded = est.inverse_transform(codes)
    np.testing.assert_array_equal(est.inverse_transform(X=codes), decoded)
    with pytest.warns(
        FutureWarning,
        match=rf"{cls.__name__}.inverse_transform\(Z=\.\.\.\) is deprecated: the argument is "
        r"named X since 0\.10\.0, and Z= stops working in 0\.12\.0",
    ):
        np.testing.assert_array_equal(est.inverse_transform(Z=codes), decoded)
    with pytest.raises(TypeError, match="got both X and its former name Z"):
        est.inverse_transform(codes, Z=codes)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_metadata_routing_requests_nothing_of_inverse_transform(cls):
    # With Z in its signature, scikit-learn took Z for metadata: set_inverse_transform_request(Z=).
    assert list(inspect.signature(cls.inverse_transform).parameters) == ["self", "X"]
    assert cls().get_metadata_routing().inverse_transform.requests == {}
    assert not hasattr(cls, "set_inverse_transform_request")


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_bce_refuses_data_outside_unit_interval(cls, X, small):
    est = cls(**small, loss="bce")
    for bad, problem in ((X * 2, "Values out of range"), (X - 0.5, "Negative values")):
        with pytest.raises(ValueError, match=rf"{problem}.*MinMaxScaler.*loss='mse'"):
            est.fit(bad)
        assert _fitted_state(est) == {}
    assert cls(**{**small, "loss": "mse"}).fit(X * 2).transform(X * 2).shape == (60, 2)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_bce_clips_new_data_outside_unit_interval_with_a_warning(cls, X, small):
    est = cls(**small).fit(X)
    bad = X.copy()
    bad[0, :3] = [1.25, -0.5, 1.0 + 1e-9]  # the last is rounding, neither clipped nor counted
    clipped = np.clip(bad, 0, 1)
    methods = [est.score_samples] + ([est.transform] if cls is GradientFlowEncoder else [])
    for method in methods:
        with pytest.warns(DataConversionWarning) as record:
            out = method(bad)
        assert len(record) == 1
        message = str(record[0].message)
        assert "2 of 960 values were outside, by up to 0.5" in message
        assert "MinMaxScaler(clip=True)" in message
        # Clipping sets the values exactly: the same data, then the same computation.
        np.testing.assert_array_equal(out, method(clipped))
    assert bad[0, 0] == 1.25  # the caller's data are not clipped in place
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataConversionWarning)
        est.score(X)  # data in range: no warning


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize(
    "param, value",
    [
        ("loss", "hinge"),
        ("activation", "swish"),
        ("optimizer", "sgd"),
        ("n_components", 0),
        ("batch_size", 0),
        ("learning_rate", -1.0),
        ("max_iter", 0),
        ("validation_fraction", 1.0),
        ("hidden_layer_sizes", (4, 0)),
        ("decoder", "mlp"),
    ],
)
def test_unknown_parameter_values_name_the_valid_choices(cls, param, value, X, small):
    est = cls(**small).set_params(**{param: value})
    with pytest.raises(ValueError, match=param) as info:
        est.fit(X)
    registry = {"loss": LOSSES, "activation": ACTIVATIONS, "optimizer": _base.OPTIMIZERS}
    for name in registry.get(param, ()):
        assert repr(name) in str(info.value)
    assert _fitted_state(est) == {}


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_every_check_runs_before_the_estimator_changes(cls, X, small, monkeypatch):
    # Refusals must come before anything is set, not be undone afterwards.
    undone = []
    monkeypatch.setattr(cls, "_undo_fit", lambda self, before: undone.append(before))
    refusals = [
        (cls(**small, loss="bce"), X * 2, "Values out of range"),
        (cls(**small, early_stopping=True), X[:1], "train set will be empty"),
        (
            cls(**{**small, "n_components": 3}, decoder=torch.nn.Linear(2, 16)),
            X,
            "cannot decode a code of shape",
        ),
    ]
    for est, data, message in refusals:
        with pytest.raises(ValueError, match=message):
            est.fit(data)
        with pytest.raises(NotFittedError):
            check_is_fitted(est)
        assert not any(name.endswith("_") for name in vars(est))
    assert undone == []


# -- dtypes, batching, sparse input -----------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize(
    "in_dtype, compute_dtype, model_dtype",
    [
        (np.float32, "float32", torch.float32),
        (np.float64, "float32", torch.float32),
        (np.int64, "float32", torch.float32),
        (np.float32, None, torch.float32),
        (np.float64, None, torch.float64),
        (np.int64, None, torch.float32),
    ],
)
def test_output_dtype_follows_input(cls, in_dtype, compute_dtype, model_dtype, small):
    X = np.random.RandomState(0).randint(0, 2, size=(40, 16)).astype(in_dtype)
    est = cls(**small, compute_dtype=compute_dtype).fit(X)
    assert next(est.decoder_.parameters()).dtype == model_dtype
    out = np.float64 if in_dtype == np.float64 else np.float32
    assert est.transform(X).dtype == out
    assert est.score_samples(X).dtype == out
    for z_dtype in (np.float32, np.float64):
        assert est.inverse_transform(np.zeros((3, 2), dtype=z_dtype)).dtype == z_dtype
    # A model keeps its dtype: float32 data through any model come back as float32.
    assert est.transform(X.astype(np.float32)).dtype == np.float32


def test_model_dtype_policy():
    assert _base.model_dtype(np.dtype(np.float64), "cpu") == torch.float64
    assert _base.model_dtype(np.dtype(np.float64), "cuda:0") == torch.float64
    assert _base.model_dtype(np.dtype(np.float64), "mps") == torch.float32  # no float64 there
    assert _base.model_dtype(np.dtype(np.float32), "cpu") == torch.float32
    for data in (np.float32, np.float64, np.int64):
        for device in ("cpu", "cuda:0", "mps"):
            assert _base.model_dtype(np.dtype(data), device, "float32") == torch.float32
        assert _base.model_dtype(np.dtype(data), "cpu", "float64") == torch.float64
    with pytest.raises(ValueError, match="compute_dtype='float64' cannot run on MPS"):
        _base.model_dtype(np.dtype(np.float32), "mps", "float64")


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("compute_dtype", ["float32", "float64"])
def test_compute_dtype_sets_the_models_whatever_the_data(cls, compute_dtype, X, small):
    expected = getattr(torch, compute_dtype)
    for data in (X, X.astype(np.float32)):
        est = cls(**small, compute_dtype=compute_dtype).fit(data)
        assert next(est.decoder_.parameters()).dtype == expected
        codes = est.transform(data)
        assert codes.dtype == data.dtype and est.score_samples(data).dtype == data.dtype
        assert est.inverse_transform(codes).dtype == data.dtype
        assert np.isfinite(codes).all()
    # Continued training keeps the model's dtype.
    est.set_params(compute_dtype=None).partial_fit(X)
    assert next(est.decoder_.parameters()).dtype == expected


def test_float32_arithmetic_on_float64_data_matches_float32_data(X, small):
    # compute_dtype='float32' is the same model as converting the data first: the conversion
    # is correctly rounded, so both fits see the same float32 numbers and run alike.
    a = GradientFlowEncoder(**small, compute_dtype="float32").fit(X)
    b = GradientFlowEncoder(**small).fit(X.astype(np.float32))
    np.testing.assert_array_equal(a.transform(X), b.transform(X.astype(np.float32)))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_inference_runs_in_bounded_batches(cls, X, small, monkeypatch):
    est = cls(**{**small, "batch_size": 4}).fit(X)
    whole = est.transform(X), est.score_samples(X), est.inverse_transform(est.transform(X))
    monkeypatch.setattr(_base, "INFERENCE_BATCH_SIZE", 7)
    sizes = []
    encode = est._encode
    monkeypatch.setattr(
        est,
        "_encode",
        lambda t, with_loss, **kw: sizes.append(len(t)) or encode(t, with_loss, **kw),
    )
    chunked = est.transform(X), est.score_samples(X)
    assert max(sizes) == 7 and sum(sizes) == 2 * len(X)
    # Counted through the layout the estimator gives its own MLP, so the bits are the same.
    calls, decoder = [], padded_mlp(est.decoder_)
    monkeypatch.setattr(est, "decoder_", lambda z: calls.append(len(z)) or decoder(z))
    est.inverse_transform(whole[0][:1])  # checks the row layout once for this decoder
    calls.clear()
    chunked += (est.inverse_transform(whole[0]),)
    # Each 7-row chunk in the layout checked for this decoder on this machine: one call padded
    # to the engine's smallest row count (16) where the fast layout holds.
    (layout,) = _rows._VERDICTS[est.decoder_].values()
    per_chunk = -(-7 // layout.chunk)
    assert len(calls) == -(-len(X) // 7) * per_chunk
    assert set(calls) == {padded_rows(min(7, layout.chunk), *layout)}
    # Exact in effect (float32 results): a row's bits do not depend on its batch (flow/_rows.py).
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_input_is_densified_in_batches(cls, fmt, X, small):
    X = np.where(X > 0.6, X, 0.0)
    dense = cls(**small).fit(X)
    sparse = cls(**small).fit(sp.csr_matrix(X).asformat(fmt))
    # Densifying copies the values: the same numbers, the same seeded fit and encoding.
    np.testing.assert_array_equal(sparse.transform(sp.csr_matrix(X)), dense.transform(X))
    assert sparse.score(sp.csr_matrix(X).asformat(fmt)) == dense.score(X)
    with pytest.warns(DataConversionWarning, match="were clipped"):
        assert dense.score(sp.csr_matrix(X * 3)) == dense.score(np.clip(X * 3, 0, 1))


# -- seeding ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_random_state_is_bit_reproducible_without_global_seeding(cls, X, small, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the global torch generator was seeded")

    monkeypatch.setattr(torch, "manual_seed", forbidden)
    monkeypatch.setattr(torch.random, "manual_seed", forbidden)
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    a = cls(**small).fit(X)
    b = cls(**small).fit(X)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    np.testing.assert_array_equal(a.fit_transform(X), b.transform(X))
    for pa, pb in zip(a.decoder_.parameters(), b.decoder_.parameters()):
        assert torch.equal(pa, pb)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    c = cls(**{**small, "random_state": 1}).fit(X)
    assert not np.array_equal(c.transform(X), a.transform(X))


# -- training loop ----------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_verbose_prints_one_line_per_epoch(cls, X, small, capsys):
    cls(**{**small, "max_iter": 3, "verbose": 1}).fit(X)
    lines = capsys.readouterr().out.strip().splitlines()
    # GradientFlowEncoder's default fit ends by distilling its encoder, and says so.
    if cls is GradientFlowEncoder:
        assert "encoder distilled on the codes of 60 training rows" in lines.pop()
    assert len(lines) == 3
    assert all("loss" in line and "images seen" in line and line.endswith(" s") for line in lines)
    assert "180 images seen" in lines[-1]
    cls(**small).fit(X)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("tqdm_installed", [True, False])
def test_verbose_2_shows_a_progress_bar(tqdm_installed, X, small, capsys, monkeypatch):
    if tqdm_installed:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    GradientFlowEncoder(**{**small, "verbose": 2}).fit(X)
    err = capsys.readouterr().err
    assert "epoch 1" in err
    assert ("60/60" in err) if not tqdm_installed else ("img" in err)


class _InterruptOnce(torch.nn.Module):
    """Raises KeyboardInterrupt in its ``at``-th forward pass in train mode (one per batch)."""

    def __init__(self, at):
        super().__init__()
        self.inner = torch.nn.Sequential(
            torch.nn.Linear(2, 8), torch.nn.ELU(), torch.nn.Linear(8, 16)
        )
        self.at, self.calls = at, 0

    def forward(self, z):
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt
        return self.inner(z)


def _weights(est):
    return [p.detach().clone() for m in est._modules() for p in m.parameters()]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_keyboard_interrupt_propagates_and_keeps_a_usable_honest_model(cls, X, small):
    # 60 samples in batches of 16: four batches per epoch, the 6th is in epoch two.
    decoder = _InterruptOnce(at=6)
    est = cls(**{**small, "max_iter": 5}, decoder=decoder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning, no warning at all
        with pytest.raises(KeyboardInterrupt):
            est.fit(X)
    assert est.n_iter_ == 1 and len(est.loss_curve_) == 1
    assert est.n_samples_seen_ == 60 + 16
    assert not est.decoder_.training
    assert np.isfinite(est.transform(X)).all()
    # The five updates made are kept: the same as a run stopped after those 76 images.
    uninterrupted = copy.deepcopy(decoder)
    uninterrupted.at = None
    reference = cls(**{**small, "max_iter": 5, "max_samples": 76}, decoder=uninterrupted).fit(X)
    # The decoders (an encoder is distilled anew at the end of a complete fit).
    decoders = zip(est.decoder_.parameters(), reference.decoder_.parameters())
    assert all(torch.equal(a, b) for a, b in decoders)
    if cls is GradientFlowEncoder:
        # A fit cut short does not distil its encoder: code_init='auto' encodes from z = 0.
        assert not est.encoder_distilled_ and reference.encoder_distilled_
        assert np.array_equal(est.transform(X), est.set_params(code_init="zeros").transform(X))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_keyboard_interrupt_stops_a_loop_of_fits_and_a_grid_search(cls, X, small):
    started = []
    with pytest.raises(KeyboardInterrupt):
        for seed in range(3):
            started.append(seed)
            cls(**{**small, "random_state": seed}, decoder=_InterruptOnce(at=2)).fit(X)
    assert started == [0]

    search = GridSearchCV(
        cls(**small, decoder=_InterruptOnce(at=2)), {"learning_rate": [1e-3, 1e-4]}, cv=2, n_jobs=1
    )
    with pytest.raises(KeyboardInterrupt):
        search.fit(X)
    assert not hasattr(search, "cv_results_") and not hasattr(search, "best_params_")


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_keyboard_interrupt_before_the_first_update_changes_nothing(cls, X, small):
    est = cls(**small, decoder=_InterruptOnce(at=1))
    with pytest.raises(KeyboardInterrupt):
        est.fit(X)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)

    est = cls(**small, decoder=_InterruptOnce(at=None)).fit(X)
    before, record = _weights(est), (est.n_iter_, est.n_samples_seen_, list(est.loss_curve_))
    est.decoder_.calls, est.decoder_.at = 0, 1
    for call in (est.set_params(warm_start=True).fit, est.partial_fit):
        with pytest.raises(KeyboardInterrupt):
            call(X)
        est.decoder_.calls = 0
        assert all(torch.equal(a, b) for a, b in zip(_weights(est), before))
        assert (est.n_iter_, est.n_samples_seen_, list(est.loss_curve_)) == record
        assert getattr(est, "encoder_distilled_", True)  # still starts from its guess


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_keyboard_interrupt_with_early_stopping_keeps_the_best_validated_model(
    cls, X, small, monkeypatch
):
    held_out = []
    score_batches = cls._score_batches
    monkeypatch.setattr(
        cls, "_score_batches", lambda self, Xv: held_out.append(Xv) or score_batches(self, Xv)
    )
    # 48 training rows in batches of 16: the 8th batch is in epoch three.
    est = cls(
        **{**small, "max_iter": 5, "early_stopping": True, "validation_fraction": 0.2},
        decoder=_InterruptOnce(at=8),
    )
    with pytest.raises(KeyboardInterrupt):
        est.fit(X)
    assert est.n_iter_ == len(est.validation_scores_) == len(est.loss_curve_) == 2
    assert est.n_samples_seen_ == 2 * 48 + 16
    # float32 arithmetic: the validation mean is summed in float32, score's in float64.
    assert est.score(held_out[0]) == pytest.approx(max(est.validation_scores_), rel=1e-6)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_convergence_warning_and_its_absence(cls, X, small):
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        cls(**small).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = cls(**{**small, "max_iter": 10, "max_samples": 130}).fit(X)
        assert (est.n_iter_, est.n_samples_seen_) == (3, 130)
        est = cls(**{**small, "max_iter": 10, "tol": 1e9, "n_iter_no_change": 1}).fit(X)
        assert est.n_iter_ == 3  # one epoch sets the best, then two without progress


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_early_stopping_keeps_the_best_model(cls, X, small, monkeypatch):
    held_out = []
    score_batches = cls._score_batches
    monkeypatch.setattr(
        cls, "_score_batches", lambda self, Xv: held_out.append(Xv) or score_batches(self, Xv)
    )
    est = cls(**{**small, "max_iter": 4, "early_stopping": True, "validation_fraction": 0.2}).fit(X)
    assert len(est.validation_scores_) == est.n_iter_ == 4
    assert held_out[0].shape == (12, 16)
    # float32 arithmetic: the validation mean is summed in float32, score's in float64.
    assert est.score(held_out[0]) == pytest.approx(max(est.validation_scores_), rel=1e-6)
    assert cls(**small).fit(X).validation_scores_ is None
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        est.partial_fit(X)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_warm_start_continues_and_cold_start_restarts(cls, X, small):
    est = cls(**small).fit(X)
    decoder = est.decoder_
    est.set_params(warm_start=True, max_iter=1).fit(X)
    assert est.decoder_ is decoder
    assert (est.n_iter_, est.n_samples_seen_, len(est.loss_curve_)) == (3, 180, 3)
    with pytest.raises(ValueError, match="X has 5 features"):
        est.fit(X[:, :5])
    est.set_params(warm_start=False).fit(X)
    assert est.decoder_ is not decoder and est.n_iter_ == 1


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_partial_fit_is_one_pass(cls, X, small):
    est = cls(**small).partial_fit(X)
    assert (est.n_iter_, est.n_samples_seen_) == (1, 60)
    est.partial_fit(X[:10])
    assert (est.n_iter_, est.n_samples_seen_, len(est.loss_curve_)) == (2, 70, 2)


# -- outputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_score_is_minus_the_papers_cross_entropy(cls, X, small):
    est = cls(**small).fit(X)
    p = est.inverse_transform(est.transform(X))
    assert ((p > 0) & (p < 1)).all()
    cross_entropy = -(X * np.log(p) + (1 - X) * np.log1p(-p)).mean(axis=1)
    # To float32 rounding: the model computes in float32, the reference in float64.
    np.testing.assert_allclose(est.score_samples(X), -cross_entropy, rtol=1e-6)
    assert est.score(X) == pytest.approx(-cross_entropy.mean(), rel=1e-6)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_feature_names_and_pandas_output(cls, X, small):
    pd = pytest.importorskip("pandas")
    est = cls(**small)
    with pytest.raises(NotFittedError):
        est.get_feature_names_out()
    frame = pd.DataFrame(X, columns=[f"pixel{i}" for i in range(16)], index=range(5, 65))
    out = est.set_output(transform="pandas").fit_transform(frame)
    prefix = cls.__name__.lower()
    assert list(out.columns) == [f"{prefix}0", f"{prefix}1"]
    assert list(out.index) == list(frame.index)
    assert list(est.feature_names_in_) == list(frame.columns)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_model_pickled_before_a_parameter_existed_loads_with_its_default(cls, X, small):
    # Simulated: an older version had no `verbose` (for GradientFlowEncoder also no
    # `s_min`); the loaded model has the defaults and fits and transforms as before.
    est = cls(**small).fit(X)
    codes = est.transform(X)
    missing = ["verbose"] + (["s_min"] if cls is GradientFlowEncoder else [])
    for name in missing:
        delattr(est, name)
    loaded = pickle.loads(pickle.dumps(est))
    for name in missing:
        assert getattr(loaded, name) == cls().get_params()[name]
    np.testing.assert_array_equal(loaded.transform(X), codes)
    loaded.partial_fit(X)
    assert loaded.n_iter_ == est.n_iter_ + 1


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_estimator_saved_before_compute_dtype_fits_in_the_datas_dtype(cls, X, small, tmp_path):
    # Before 0.5 the model took the data's dtype; the default is now float32. An estimator
    # saved then, fitted or not, keeps the old rule (None) instead of the new default.
    assert cls().compute_dtype == "float32"
    unfitted = cls(**small)
    del unfitted.compute_dtype
    unfitted.save(tmp_path / "old.gfe")
    loaded = cls.load(tmp_path / "old.gfe")
    assert loaded.compute_dtype is None
    assert next(loaded.fit(X).decoder_.parameters()).dtype == torch.float64
    assert next(cls(**small).fit(X).decoder_.parameters()).dtype == torch.float32


@pytest.mark.portability
@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_alone_give_bitwise_the_outputs_of_the_batch(cls, dtype, small):
    # Rows are evaluated in the engine's padded row counts, so BLAS rounds each row alike
    # whatever batch it is in: transform, score_samples and inverse_transform.
    X = np.random.RandomState(1).uniform(size=(300, 16)).astype(dtype)
    est = cls(**{**small, "hidden_layer_sizes": (32,)}).fit(X)
    codes, scores = est.transform(X), est.score_samples(X)
    decoded = est.inverse_transform(codes)
    for rows in ([299, 0, 130, 257, 64], [5]):
        np.testing.assert_array_equal(est.transform(X[rows]), codes[rows])
        np.testing.assert_array_equal(est.score_samples(X[rows]), scores[rows])
        np.testing.assert_array_equal(est.inverse_transform(codes[rows]), decoded[rows])


# -- checking settings before a fit ------------------------------------------------------

REFUSED_SETTINGS = [
    (GradientFlowEncoder, {"solver": "amd", "s0": 2.0, "s_max": 1.0}),
    (GradientFlowEncoder, {"n_components": 0}),
    (GradientFlowEncoder, {"stop_rule": "code", "stop_window": 1}),
    (AutoEncoderBaseline, {"hidden_layer_sizes": (8, 0)}),
    (AutoEncoderBaseline, {"device": "gpu"}),
    (AutoEncoderBaseline, {"device": "cuda:99"}),
]


@pytest.mark.parametrize("cls, params", REFUSED_SETTINGS, ids=[str(p) for _, p in REFUSED_SETTINGS])
def test_check_params_refuses_what_fit_refuses_and_fits_nothing(cls, params, X):
    est = cls(**params)
    with pytest.raises((ValueError, TypeError)) as by_fit:
        cls(**params).fit(X)
    with pytest.raises(type(by_fit.value)) as by_check:
        est.check_params()
    assert str(by_check.value) == str(by_fit.value)
    assert not _fitted_state(est)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_check_params_passes_the_defaults_and_returns_the_estimator(cls):
    est = cls()
    assert est.check_params() is est and not _fitted_state(est)


# A value other than the default for each parameter that partial_fit_params leaves out.
OTHER_VALUES = {
    "max_iter": 7,
    "max_samples": 11,
    "tol": 0.5,
    "n_iter_no_change": 3,
    "validation_fraction": 0.3,
    "warm_start": True,
    "n_steps": 3,
    "grid": "log",
    "rtol": 0.1,
    "atol": 0.1,
    "max_steps": 5,
    "fit_max_steps": 2,
    "solver_options": {"history": 3},
}


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_a_parameter_partial_fit_params_leaves_out_changes_nothing_partial_fit_does(cls, X, small):
    # A short horizon keeps AMD's flows to a few steps.
    settings = {**small, "solver": "amd", "tau": 10.0} if cls is GradientFlowEncoder else small
    est = cls(**settings)
    left_out = set(est.get_params()) - set(est.partial_fit_params())
    assert left_out <= set(OTHER_VALUES)
    assert {"max_iter", "tol", "warm_start"} <= left_out
    reference = cls(**settings).partial_fit(X).partial_fit(X).transform(X)
    for name in sorted(left_out):
        changed = cls(**settings).set_params(**{name: OTHER_VALUES[name]})
        codes = changed.partial_fit(X).partial_fit(X).transform(X)
        np.testing.assert_array_equal(codes, reference, err_msg=name)
    # A parameter it keeps does change them: the comparison can tell.
    assert "learning_rate" in est.partial_fit_params()
    changed = cls(**settings).set_params(learning_rate=0.1)
    assert not np.array_equal(changed.partial_fit(X).partial_fit(X).transform(X), reference)


def test_partial_fit_params_keep_the_constants_of_the_solver_in_use():
    amd = GradientFlowEncoder(solver="amd").partial_fit_params()
    rk4 = GradientFlowEncoder(solver="rk4").partial_fit_params()
    lbfgs = GradientFlowEncoder(solver="lbfgs").partial_fit_params()
    assert "s_max" in amd and "n_steps" not in amd and "fit_max_steps" not in amd
    assert "n_steps" in rk4 and "s_max" not in rk4
    assert "fit_max_steps" in lbfgs
    assert set(AutoEncoderBaseline().partial_fit_params()) == set(
        AutoEncoderBaseline().get_params()
    ) - set(OTHER_VALUES)
