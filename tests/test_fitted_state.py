"""The record of the fitted state (``_fitted_state``): what fit sets, save writes, load and
pickling restore and ``from_autoencoder`` takes over, listed once."""

import pickle

import numpy as np
import pytest
import torch

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder
from gfe_sklearn._fitted_state import FITTED_FIELDS, FittedField
from gfe_sklearn._model_file import ModelFileError
from gfe_sklearn._record_checks import is_numbers

from .test_persistence import _rewrite

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Attributes a fit leaves that are not fitted state, each with the reason.
NOT_STATE = {
    "_updates_in_call": "counts the updates of one call, for its error messages",
    "_flat_encoder": "the autoencoder's; _build_modules sets it again when it rebuilds",
}


def _fitted_state(est):
    """The attributes a fit added: everything but the parameters and NOT_STATE."""
    return set(vars(est)) - set(est.get_params(deep=False)) - set(NOT_STATE)


def _recorded(est):
    return {f.attribute for f in est._fitted_fields} | set(est._fitted_modules())


def _frame(X):
    pd = pytest.importorskip("pandas")
    return pd.DataFrame(X, columns=[f"px{i}" for i in range(X.shape[1])])


def _same(first, second):
    """Whether two values of a fitted attribute are equal (modules, generators, arrays)."""
    if isinstance(first, torch.nn.Module):
        one, two = first.state_dict(), second.state_dict()
        return one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
    if isinstance(first, torch.optim.Optimizer):
        one, two = first.state_dict(), second.state_dict()
        return one["param_groups"] == two["param_groups"] and all(
            torch.equal(torch.as_tensor(one["state"][i][k]), torch.as_tensor(v))
            for i in two["state"]
            for k, v in two["state"][i].items()
        )
    if isinstance(first, np.random.RandomState):
        return all(np.array_equal(a, b) for a, b in zip(first.get_state(), second.get_state()))
    if isinstance(first, np.ndarray):
        return np.array_equal(first, second)
    return first == second


def _copies(est, tmp_path):
    est.save(tmp_path / "model.safetensors")
    loaded = type(est).load(tmp_path / "model.safetensors")
    return {"load": loaded, "pickle": pickle.loads(pickle.dumps(est))}


SETTINGS = {
    "gfe": (GradientFlowEncoder, {}),
    "gfe-encoder-validated": (GradientFlowEncoder, dict(code_init="encoder", early_stopping=True)),
    "autoencoder": (AutoEncoderBaseline, {}),
}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_the_record_is_what_fit_sets_and_save_and_pickling_restore(setting, X, small, tmp_path):
    cls, params = SETTINGS[setting]
    est = cls(**small, **params).fit(_frame(X))
    assert _fitted_state(est) == _recorded(est)
    for how, copy in _copies(est, tmp_path).items():
        assert _fitted_state(copy) == _fitted_state(est), how
        for name in _recorded(est):
            assert _same(getattr(copy, name), getattr(est, name)), f"{how}: {name}"


def test_a_fit_on_arrays_records_no_feature_names(X, small, tmp_path):
    est = GradientFlowEncoder(**small).fit(X)
    assert _fitted_state(est) == _recorded(est) - {"feature_names_in_"}
    for copy in _copies(est, tmp_path).values():
        assert "feature_names_in_" not in vars(copy)


class TimedEncoder(GradientFlowEncoder):
    """A GradientFlowEncoder with one more fitted attribute, declared in the record only."""

    _fitted_fields = (
        *GradientFlowEncoder._fitted_fields,
        FittedField(
            "epoch_marks_",
            "epoch_marks",
            "training",
            is_numbers,
            start=lambda _: [],
            since="99.0",
            write=lambda marks, _: list(marks),
        ),
    )

    def _record_epoch(self, epoch_loss, validation_score):
        super()._record_epoch(epoch_loss, validation_score)
        self.epoch_marks_.append(0.5 * self.n_iter_)


def test_a_field_declared_in_the_record_round_trips(X, small, tmp_path):
    est = TimedEncoder(**small).fit(X)
    assert est.epoch_marks_ == [0.5, 1.0]  # _new_model started it from the record
    for how, copy in _copies(est, tmp_path).items():
        assert copy.epoch_marks_ == [0.5, 1.0], how
        np.testing.assert_array_equal(copy.transform(X), est.transform(X))
    # A file from before the field was recorded loads with the field's start.
    _rewrite(tmp_path / "model.safetensors", edit_content=lambda c: c["fitted"].pop("epoch_marks"))
    assert TimedEncoder.load(tmp_path / "model.safetensors").epoch_marks_ == []
    # The Mixed model starts its training record from the record too.
    ae = AutoEncoderBaseline(**small).fit(X)
    assert TimedEncoder.from_autoencoder(ae).epoch_marks_ == []


def test_a_field_every_version_records_is_required(X, small, tmp_path):
    path = tmp_path / "model.safetensors"
    GradientFlowEncoder(**small).fit(X).save(path)
    _rewrite(path, edit_content=lambda c: c["fitted"].pop("n_iter_"))
    with pytest.raises(ModelFileError, match="incomplete record"):
        GradientFlowEncoder.load(path)


def test_a_field_this_version_does_not_know_asks_for_an_upgrade(X, small, tmp_path):
    path = tmp_path / "model.safetensors"
    GradientFlowEncoder(**small).fit(X).save(path)
    _rewrite(path, edit_content=lambda c: c["fitted"].update(future_=1))
    with pytest.raises(ModelFileError, match=r"\['future_'\].*newer gfe-sklearn; upgrade"):
        GradientFlowEncoder.load(path)


def test_from_autoencoder_takes_over_the_model_and_starts_the_training_record(X, small):
    ae = AutoEncoderBaseline(**small).fit(_frame(X))
    mixed = GradientFlowEncoder.from_autoencoder(ae, early_stopping=True)
    assert _fitted_state(mixed) == _recorded(mixed)
    for field in mixed._fitted_fields:
        value = getattr(mixed, field.attribute)
        if field.kind in ("data", "model"):
            assert _same(value, getattr(ae, field.attribute)), field.attribute
        elif field.attribute != "_rng":
            assert value == field.start(mixed), field.attribute
    assert mixed.validation_scores_ == [] and mixed.solver_ == "lbfgs"
    # Copies: training the Mixed model changes nothing of the autoencoder's.
    assert mixed._fitted_architecture is not ae._fitted_architecture


def test_every_field_kind_and_key_is_declared_once():
    for fields in (FITTED_FIELDS, GradientFlowEncoder._fitted_fields):
        assert len({f.key for f in fields}) == len({f.attribute for f in fields}) == len(fields)
    with pytest.raises(ValueError, match="'training' field needs a start"):
        FittedField("x_", "x", "training", is_numbers)
    with pytest.raises(ValueError, match="'model' field takes a start only with since"):
        FittedField("x_", "x", "model", is_numbers, start=lambda _: 0)
    # With since, the start gives the value for files from before it.
    FittedField("x_", "x", "model", is_numbers, start=lambda _: 0, since="0.10.0")
