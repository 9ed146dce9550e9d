"""The fitted state of an estimator, listed once.

Each ``FittedField`` is one fitted attribute: its key in a model file's ``fitted`` record,
the check its JSON passes before anything reads it, how it is written and read back, and
who sets it. ``_new_model``, ``save``, ``load``, pickling and ``from_autoencoder`` all read
these tuples, so a new fitted attribute is one entry here and the code that computes it;
``tests/test_fitted_state.py`` checks that a fit sets exactly what is listed.

Who sets a field (``kind``):

- ``'data'``: ``validate_data`` at a model's first fit, from ``X``;
- ``'model'``: ``_new_model``, from the modules it built: it describes the decoder, so
  ``from_autoencoder`` takes it over from the autoencoder; one recorded ``since`` a version
  has a ``start`` that gives its value for files from before, from the other fields;
- ``'training'``: the record of training, which a new model (and ``from_autoencoder``'s)
  starts at ``start(estimator)``;
- ``'fit'``: every ``fit`` and ``partial_fit`` call, from ``start(estimator)``.

Modules (``decoder_``, ``encoder_``) are not fields: their weights are the file's tensors,
and ``_build_modules`` rebuilds them from the ``'model'`` fields.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from ._persistence import DTYPES, _from_json, _optimizer_to_json, _rng_from_json, _rng_to_json
from ._persistence import _to_json as _json_of
from ._record_checks import MAX_WIDTH, is_count, is_device, is_numbers
from .flow import LOSSES

KINDS = ("data", "model", "training", "fit")


def _same(value, *context):
    return value


def _int(value, *context):
    return int(value)


@dataclass(frozen=True)
class FittedField:
    """One fitted attribute and its place in a model file.

    Attributes
    ----------
    attribute : str
        The estimator's attribute.
    key : str
        Its key in the file's ``fitted`` record.
    kind : {'data', 'model', 'training', 'fit'}
        Who sets it (the module's docstring).
    valid : callable
        Whether a JSON value read from a file may be used.
    start : callable or None
        ``start(estimator)``: its value in a new model (``'training'``) or at each fit
        (``'fit'``), and for files written before ``since``. A ``'data'`` or ``'model'``
        field has one only with ``since``: its value for files from before, read from the
        fields those files hold (set on ``estimator`` before it is called).
    since : str or None
        The version whose files first hold it; older files lack it and load with ``start``.
    none_is_absent : bool
        None in a file stands for an attribute the estimator does not have.
    write : callable
        ``write(value, tensors)``: its JSON; it may add tensors to ``tensors``.
    read : callable
        ``read(saved, estimator, tensors, source)``: the attribute from its checked JSON.
    """

    attribute: str
    key: str
    kind: str
    valid: Callable[[Any], bool]
    start: Callable[[Any], Any] | None = None
    since: str | None = None
    none_is_absent: bool = False
    write: Callable = _same
    read: Callable = _same

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not one of {KINDS}.")
        set_from_data = self.kind in ("data", "model")
        if self.start is None and not set_from_data:
            raise ValueError(
                f"{self.attribute}: a {self.kind!r} field needs a start: 'training' and "
                "'fit' fields have one."
            )
        if self.start is not None and set_from_data and self.since is None:
            raise ValueError(
                f"{self.attribute}: a {self.kind!r} field takes a start only with since (its "
                "value for files from before): 'data' and 'model' fields are set from the data."
            )


def _loss_before_0_10(estimator):
    """The loss of a model from before 0.10.0, which had no ``loss_``: the recorded
    architecture's (its ``loss`` parameter unless ``set_params`` changed that after the fit),
    or, pickled before the architecture was recorded, the parameter."""
    architecture = estimator.__dict__.get("_fitted_architecture")
    return estimator.loss if architecture is None else architecture["loss"]


def _floats(values, *context):
    return None if values is None else [float(v) for v in values]


def _feature_names(names, *context):
    return None if names is None else np.asarray(names, dtype=object)


FITTED_FIELDS = (
    FittedField(
        "n_features_in_", "n_features_in_", "data", lambda v: is_count(v, 1, MAX_WIDTH), write=_int
    ),
    FittedField(
        "feature_names_in_",
        "feature_names_in_",
        "data",
        lambda v: v is None or (isinstance(v, list) and all(isinstance(n, str) for n in v)),
        none_is_absent=True,
        write=lambda names, _: None if names is None else [str(n) for n in names],
        read=_feature_names,
    ),
    FittedField(
        "_fitted_architecture",
        "architecture",
        "model",
        lambda v: isinstance(v, dict),
        write=lambda architecture, _: _json_of(architecture),
        read=lambda saved, _, __, source: _from_json(saved, f"{source}: architecture"),
    ),
    FittedField(
        "_model_dtype",
        "dtype",
        "model",
        lambda v: isinstance(v, str) and v in DTYPES,
        write=lambda dtype, _: str(dtype).split(".")[-1],
        read=lambda saved, *_: DTYPES[saved],
    ),
    # The loss the model trains and encodes with: loss, with 'auto' resolved at the first fit.
    FittedField(
        "loss_",
        "loss_",
        "model",
        lambda v: isinstance(v, str) and v in LOSSES,
        start=_loss_before_0_10,
        since="0.10.0",
    ),
    FittedField("device_", "device_", "model", is_device, write=lambda device, _: str(device)),
    FittedField("_n_latent", "n_latent", "model", lambda v: is_count(v, 1, MAX_WIDTH), write=_int),
    FittedField(
        "_sample_shape",
        "sample_shape",
        "model",
        lambda v: isinstance(v, list) and all(is_count(s, 1, MAX_WIDTH) for s in v),
        write=lambda shape, _: list(shape),
        read=lambda saved, *_: tuple(saved),
    ),
    FittedField("n_iter_", "n_iter_", "training", is_count, start=lambda _: 0, write=_int),
    FittedField(
        "n_samples_seen_", "n_samples_seen_", "training", is_count, start=lambda _: 0, write=_int
    ),
    FittedField(
        "loss_curve_", "loss_curve_", "training", is_numbers, start=lambda _: [], write=_floats
    ),
    FittedField(
        "validation_scores_",
        "validation_scores_",
        "training",
        lambda v: v is None or is_numbers(v),
        # Early stopping records a score per epoch; without it there is none to record.
        start=lambda estimator: [] if estimator.early_stopping else None,
        write=_floats,
    ),
    FittedField(
        "optimizer_",
        "optimizer",
        "training",
        lambda v: v is None or isinstance(v, dict),
        start=lambda _: None,  # built by each fit's first update (_start_fit)
        write=_optimizer_to_json,
        read=lambda saved, estimator, tensors, source: estimator._optimizer_from_json(
            saved, tensors, source
        ),
    ),
    FittedField(
        "_rng",
        "rng",
        "fit",
        lambda v: v is None or isinstance(v, list),
        # partial_fit continues the fitted generator instead (_prepare_fit).
        start=lambda estimator: check_random_state(estimator.random_state),
        none_is_absent=True,
        write=lambda rng, _: _rng_to_json(rng),
        read=lambda saved, _, __, source: _rng_from_json(saved, source),
    ),
)


def started(estimator, kind):
    """The attributes of ``kind`` at their start, for ``estimator``."""
    return {f.attribute: f.start(estimator) for f in estimator._fitted_fields if f.kind == kind}


def taken_over(estimator, source):
    """The ``'data'`` and ``'model'`` attributes of ``source``, which describe its modules."""
    return {
        f.attribute: source.__dict__[f.attribute]
        for f in estimator._fitted_fields
        if f.kind in ("data", "model") and f.attribute in source.__dict__
    }
