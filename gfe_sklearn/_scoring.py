"""``make_hidden_entry_scorer``: score encoders and imputers on entries hidden from them."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real
from typing import TYPE_CHECKING

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_array

from ._base import BaseFlowEstimator

if TYPE_CHECKING:
    from ._typing import RandomStateLike

# Predictions are clipped this far inside (0, 1) for the cross-entropy, so that an imputer
# that predicts exactly 0 or 1 (a mean of binary pixels can) gets a large, finite error.
BCE_EPS = 1e-7


def hide_entries(X, fraction, random_state=None):
    """A mask of observed entries to hide, leaving every row at least one observed entry.

    ``round(fraction * n_observed)`` of the observed (non-NaN) entries are drawn at random
    without replacement; in a row where that takes every observed entry, one of them, drawn
    at random, stays observed.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        NaN marks entries that are already missing.
    fraction : float in (0, 1)
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    hidden : ndarray of bool, shape (n_samples, n_features)

    Examples
    --------
    >>> import numpy as np
    >>> hidden = hide_entries(np.ones((4, 3)), 0.5, random_state=0)
    >>> hidden.shape, bool(hidden.all(axis=1).any())
    ((4, 3), False)
    """
    rng = check_random_state(random_state)
    observed = np.flatnonzero(~np.isnan(X))
    # Drawn as a subset, not as a uniform number per entry against a threshold: holes made
    # the latter way with the same seed would be exactly the entries the threshold picks.
    chosen = rng.choice(observed, size=int(round(fraction * observed.size)), replace=False)
    hidden = np.zeros(X.size, dtype=bool)
    hidden[chosen] = True
    hidden = hidden.reshape(X.shape)
    left = ~np.isnan(X) & ~hidden
    emptied = np.flatnonzero(hidden.any(axis=1) & ~left.any(axis=1))
    if emptied.size:
        draws = np.where(hidden[emptied], rng.uniform(size=(emptied.size, X.shape[1])), -1)
        hidden[emptied, draws.argmax(axis=1)] = False
    return hidden


def hidden_entry_error(truth, prediction, hidden, metric):
    """RMSE or mean binary cross-entropy of ``prediction`` on the ``hidden`` entries."""
    truth = np.asarray(truth, dtype=np.float64)[hidden]
    prediction = np.asarray(prediction, dtype=np.float64)[hidden]
    if metric == "rmse":
        return float(np.sqrt(np.mean((prediction - truth) ** 2)))
    p = np.clip(prediction, BCE_EPS, 1 - BCE_EPS)
    return float(-np.mean(truth * np.log(p) + (1 - truth) * np.log1p(-p)))


def _final_step(estimator):
    return estimator[-1] if isinstance(estimator, Pipeline) else estimator


def _to_input_space(estimator, prediction):
    """An imputing pipeline's output mapped back through its earlier steps (a scaler, say),
    so that it is compared with X, not with X as scaled."""
    if not isinstance(estimator, Pipeline) or len(estimator) < 2:
        return prediction
    head = estimator[:-1]
    if not hasattr(head, "inverse_transform"):
        raise ValueError(
            f"The pipeline's steps before its imputer ({[name for name, _ in head.steps]}) "
            "have no inverse_transform, so its imputed values cannot be compared with X's "
            "entries: score the imputer on data transformed by those steps, or use steps "
            "that can be inverted (StandardScaler, MinMaxScaler)."
        )
    return head.inverse_transform(prediction)


class _HiddenEntryScorer:
    """The callable that ``make_hidden_entry_scorer`` returns."""

    def __init__(self, fraction, metric, random_state):
        self.fraction = fraction
        self.metric = metric
        self.random_state = random_state

    def __repr__(self):
        return (
            f"make_hidden_entry_scorer(fraction={self.fraction!r}, "
            f"metric={self.metric!r}, random_state={self.random_state!r})"
        )

    def __call__(self, estimator, X, y=None):
        X = check_array(X, dtype=np.float64, ensure_all_finite="allow-nan", copy=True)
        hidden = hide_entries(X, self.fraction, self.random_state)
        if not hidden.any():
            raise ValueError(
                f"No observed entry of X (shape {X.shape}, {int((~np.isnan(X)).sum())} "
                f"observed entries) was hidden with fraction={self.fraction!r}, and every row "
                "keeps one: give more observed entries (more rows), or raise fraction."
            )
        masked = X.copy()
        masked[hidden] = np.nan
        if isinstance(_final_step(estimator), BaseFlowEstimator):
            prediction = estimator.inverse_transform(estimator.transform(masked))
        else:
            prediction = np.asarray(estimator.transform(masked))
            if prediction.shape[1] < X.shape[1]:
                raise ValueError(
                    f"{type(estimator).__name__}.transform returned {prediction.shape[1]} "
                    f"columns for {X.shape[1]} features, so hidden entries cannot be matched "
                    "to predictions; an imputer drops features that were missing in every "
                    "training row unless keep_empty_features=True."
                )
            prediction = _to_input_space(estimator, prediction[:, : X.shape[1]])
        return -hidden_entry_error(X, prediction, hidden, self.metric)


@validate_params(
    {
        "fraction": [Interval(Real, 0, 1, closed="neither")],
        "metric": [StrOptions({"rmse", "bce"})],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_hidden_entry_scorer(
    fraction: float = 0.2, *, metric: str = "rmse", random_state: RandomStateLike = 0
) -> Callable:
    """A scorer that hides observed entries of ``X`` and rates how well they are predicted.

    The scorer hides a random ``fraction`` of the observed (non-NaN) entries of each ``X`` it
    is given, asks the estimator to predict them, and returns minus the error on them
    (higher is better), so ``GridSearchCV(..., scoring=make_hidden_entry_scorer())`` picks
    ``n_components`` or solver settings by how well unseen entries are predicted. It scores
    a fitted ``GradientFlowEncoder`` with ``allow_nan=True`` (or a ``Pipeline`` ending in
    one) by ``inverse_transform(transform(X_masked))``, and any imputer, e.g.
    ``GradientFlowImputer`` or ``KNNImputer``, by its ``transform(X_masked)``; a pipeline
    ending in an imputer after a scaler, by its output mapped back through the scaler's
    ``inverse_transform``, so that the error is in the units of ``X``.

    Parameters
    ----------
    fraction : float in (0, 1), default=0.2
        Fraction of the observed entries to hide, drawn at random; every row keeps at least
        one.
    metric : {'rmse', 'bce'}, default='rmse'
        Root mean squared error, or binary cross-entropy for data in ``[0, 1]`` (predictions
        clipped to ``[1e-7, 1 - 1e-7]``).
    random_state : int, RandomState instance or None, default=0
        Picks the hidden entries. An int hides the same entries of the same ``X`` for every
        candidate, so they are compared on equal terms.

    Returns
    -------
    scorer : callable ``(estimator, X, y=None) -> float``

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.impute import KNNImputer
    >>> from gfe_sklearn import make_hidden_entry_scorer
    >>> X = np.random.RandomState(0).uniform(size=(30, 5))
    >>> scorer = make_hidden_entry_scorer(0.2, random_state=0)
    >>> score = scorer(KNNImputer().fit(X), X)
    >>> bool(-1 < score < 0)
    True
    """
    return _HiddenEntryScorer(fraction, metric, random_state)
