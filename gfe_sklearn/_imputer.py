"""``GradientFlowImputer``: missing entries filled in from a gradient flow encoder's decoder."""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.base import _fit_context, clone
from sklearn.impute._base import _BaseImputer
from sklearn.utils import check_random_state, get_tags
from sklearn.utils._mask import _get_mask
from sklearn.utils._missing import is_scalar_nan
from sklearn.utils._param_validation import Interval, MissingValues, StrOptions
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import (
    FLOAT_DTYPES,
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

from ._base import readable_by_numpy
from ._device import torch_threads
from ._gradient_flow import GradientFlowEncoder
from ._scoring import BCE_EPS as BCE_CLIP
from ._scoring import hidden_entry_error, hide_entries
from .flow._rows import invariant_rowwise, probe_rows, resolve_row_chunk

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._typing import MatrixLike, RandomStateLike

# Training samples whose codes estimate the prior of ``code_prior`` (evenly spaced rows): the
# mean and spread of 20-50 components need no more, and encoding them adds to ``fit``.
CODE_PRIOR_SAMPLES = 1000
# code_prior='auto': the weights tried, the share of training rows held out to try them on
# (at most AUTO_PRIOR_MAX_ROWS: six encodings of them per start add to fit), the share of
# their observed entries hidden there, and the fewest rows worth splitting.
AUTO_PRIOR_GRID = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0)
AUTO_PRIOR_HELD_OUT = 0.1
AUTO_PRIOR_MAX_ROWS = 500
AUTO_PRIOR_HIDDEN = 0.3
AUTO_PRIOR_MIN_ROWS = 20
# estimate='mean' averages each row over the training codes that fit it best, weighted by
# their likelihood to a power set per row so that about n_neighbors of them count:
# 'auto' tries NEIGHBOUR_GRID, and without held-out rows uses NEIGHBOURS_WITHOUT_CHOICE.
# Weights go to the CANDIDATES_PER_NEIGHBOUR * n_neighbors best codes of a row (the rest
# weigh nothing at that effective number).
NEIGHBOUR_GRID = (5, 10, 20)
NEIGHBOURS_WITHOUT_CHOICE = 10
CANDIDATES_PER_NEIGHBOUR = 32
# estimate='auto' scores every choice on the held-out rows with a few and with most of
# their observed entries hidden, and keeps the lowest sum: a choice that serves only rows
# missing little (a sample's own code, on MNIST) loses where blocks are missing.
AUTO_ESTIMATE_HIDDEN = (AUTO_PRIOR_HIDDEN, 0.7)
# The encoder trained when none is given (docs/imputation.md, "The default imputer"): a
# decoder trained to predict entries its codes did not see imputes better, and small data
# need more epochs than the encoder's default 10 to train it: at least DEFAULT_MIN_SAMPLES
# samples are seen. The training-loss plateau would end it early: hiding entries makes that
# loss noisy, so the number of samples ends training instead.
DEFAULT_HIDE_FRACTION = 0.8
DEFAULT_MIN_EPOCHS = 10
DEFAULT_MIN_SAMPLES = 15_000
# What an imputer of several members shows of its first (its docstring's attributes).
MEMBER_ATTRIBUTES = (
    "encoder_",
    "code_mean_",
    "code_scale_",
    "code_prior_",
    "code_prior_scores_",
    "start_codes_",
    "estimate_",
    "n_neighbors_",
    "estimate_scores_",
    "train_codes_",
)


class GradientFlowImputer(_BaseImputer):
    """Impute missing entries with a gradient flow encoder trained on incomplete data.

    Each sample is encoded from its observed entries alone (``GradientFlowEncoder`` with
    ``allow_nan=True``: the flow's loss skips the missing ones) and its missing entries are
    read off the decoder's reconstruction at that code. Observed entries are returned
    unchanged. The encoder is fitted on the incomplete training data itself.

    Parameters
    ----------
    encoder : GradientFlowEncoder, default=None
        The encoder's settings. ``fit`` trains a clone with ``allow_nan=True``; the instance
        passed is not changed. None uses ``GradientFlowEncoder(fit_hide_fraction=0.8)``
        (with the encoder's default prior on the codes, sized by them), trained for at
        least 15,000 samples (10 epochs, more on fewer than 1,500 rows; the number of samples
        ends training, not a plateau of its loss): its ``loss='auto'`` trains with ``'bce'``
        (the papers' choice) where every observed entry lies in ``[0, 1]``, as in images and
        min-max scaled tables, and with ``'mse'`` on any other finite data; its decoder learns
        to predict entries hidden from the codes (docs/imputation.md). A given encoder trains as
        it is set, except that its ``code_init='auto'`` becomes ``'zeros'``: the imputer
        starts the flows itself (``n_starts``), so a distilled encoder would go unused.
    missing_values : int, float or np.nan, default=np.nan
        The placeholder for the missing values. All occurrences of ``missing_values`` are
        imputed. X is read as numbers, so ``None`` in an object array is NaN: use
        ``np.nan`` for it.
    add_indicator : bool, default=False
        If True, a ``MissingIndicator`` transform is stacked onto the output of the
        imputer's transform, so that a downstream estimator can account for missingness.
    keep_empty_features : bool, default=False
        If True, features that are missing in every sample passed to ``fit`` are kept in
        the output of ``transform``, filled with 0. By default they are dropped, since the
        encoder never saw a value of them.
    code_prior : float or 'auto', default='auto'
        Weight of a Gaussian prior on the codes in ``transform``'s flow, which then finds
        MAP codes: each sample's loss over its observed entries gets
        ``code_prior * ||(z - code_mean_) / code_scale_||^2 / 2`` divided by its number of
        observed entries, so the prior weighs more the less is observed and pulls codes that
        the observed entries leave underdetermined toward typical ones. ``fit`` estimates
        the prior from the codes of up to 1,000 training samples; training itself is
        unchanged. 0 encodes without a prior (the default before 0.6). ``'auto'`` picks the
        weight from ``(0, 0.03, 0.1, 0.3, 1, 3)`` on data: ``fit`` trains the encoder on 90%
        of the training rows, hides 30% of the observed entries of the other 10% (at most
        500 rows) and keeps the weight that predicts them best (``code_prior_``), imputing
        them as ``transform`` does (``n_starts`` included). A strong prior helps where
        codes overfit what they see (images: 0.3 on digits) and hurts where a small code
        explains the data exactly (picked 0 there); docs/imputation.md. With fewer than 20
        training rows ``'auto'`` uses 0.
    estimate : {'auto', 'mode', 'mean', 'blend'}, default='auto'
        How ``transform`` reads the missing entries off the decoder. ``'mode'``: at each
        sample's own code, the flow's endpoint from its observed entries (a MAP code under
        ``code_prior``; with ``n_starts``, averaged over starts), the imputer before 0.10.
        ``'mean'``: an average over the codes of the training samples (``train_codes_``) of
        the decoder's outputs there, each weighted by its likelihood, ``exp(-beta * loss)``
        with the loss summed over the sample's observed entries, and ``beta`` set per sample
        so that about ``n_neighbors`` codes count (the weights' effective number). Where the
        observed entries fit several completions (a hidden block) the mean hedges between
        them, as an average of neighbours does, with neighbours the decoder completed in
        full; no flow runs in ``transform``. ``'blend'``: the average of the two.
        ``'auto'``: ``fit`` keeps the one that imputes rows held out of training best, with
        30% and with 70% of their observed entries hidden (the lowest sum of RMSEs;
        ``estimate_``, ``estimate_scores_``), as ``code_prior='auto'`` does, with which it
        shares the held-out rows; with fewer than 20 training rows, ``'mode'``.
    n_neighbors : int or 'auto', default='auto'
        The effective number of training codes that ``'mean'`` and ``'blend'`` average
        over. ``'auto'`` picks it from ``(5, 10, 20)`` on the held-out rows
        (``n_neighbors_``; 10 with fewer than 20 training rows).
    n_starts : int, default=1
        Flows per incomplete sample in ``transform`` with ``estimate_`` ``'mode'`` or
        ``'blend'``: one from the encoder's usual start (zeros) and ``n_starts - 1`` from
        codes drawn by ``fit`` from the distribution of the training codes
        (``start_codes_``). The mode is the mean of the decoder's outputs at the codes
        reached: where the observed entries fit several completions (a hidden block), it
        hedges between them instead of committing to one. Costs ``n_starts`` encodings.
    n_estimators : int, default=1
        Imputers fitted on the same data from different random initialisations, whose
        imputations are averaged (a deep ensemble; ``estimators_``). Each decoder learns
        the data with errors of its own, and the average cancels part of them (measured
        in docs/imputation.md). The first member is the imputer that ``n_estimators=1``
        fits with the same ``random_state``; the others' encoders are seeded from
        ``random_state``, whatever the encoder's own ``random_state`` says, so that they
        differ. Costs ``n_estimators`` fits and encodings.
    n_jobs : int or None, default=None
        Members of ``n_estimators`` fitted and run at once, each in a process of its own
        (joblib; None means 1 unless in a ``joblib.parallel_config`` context, -1 means all
        CPUs). Each member keeps its encoder's ``n_threads`` torch threads, so with the
        default of 1 thread ``n_jobs`` up to the number of cores adds no oversubscription.
        The result does not depend on it. Without members it has no effect.
    random_state : int, RandomState instance or None, default=None
        Draws the extra starts of ``n_starts``, with ``code_prior='auto'`` the held-out
        rows and entries, and the seeds of the members of ``n_estimators``, and seeds the
        encoder when its own ``random_state`` is None (the default encoder's is); an int
        makes ``fit`` reproducible.

    Attributes
    ----------
    encoder_ : GradientFlowEncoder
        The fitted encoder, on the features that ``fit`` saw at least once. With
        ``n_estimators > 1``, this and the prior and start attributes below are the first
        member's (each member's are in ``estimators_``).
    statistics_ : ndarray of shape (`n_features_in_`,)
        The mean of each feature's observed training entries (NaN for a feature never
        observed): the values of a sample none of whose features is observed, which the flow
        cannot encode.
    code_mean_, code_scale_ : ndarray of shape (n_components,) or None
        Mean and standard deviation of each code component over up to 1,000 training
        samples encoded without the prior (a constant component gets scale 1); None when
        ``code_prior`` is 0 and ``n_starts`` is 1.
    code_prior_ : float
        The weight of the prior that ``transform`` uses: ``code_prior``, or the one that
        ``'auto'`` picked.
    code_prior_scores_ : dict or None
        With ``code_prior='auto'``: the RMSE on the hidden entries of the held-out rows for
        each weight tried; None otherwise.
    start_codes_ : ndarray of shape (n_starts, n_components)
        Where ``transform``'s flows start: zeros, then draws from
        ``N(code_mean_, diag(code_scale_**2))``.
    estimate_ : {'mode', 'mean', 'blend'}
        What ``transform`` imputes with: ``estimate``, or the one ``'auto'`` picked.
    n_neighbors_ : int or None
        The effective number of codes of ``'mean'`` and ``'blend'``; None with ``'mode'``.
    estimate_scores_ : dict or None
        Where ``fit`` chose on held-out rows: the sum of RMSEs on their hidden entries
        (30% and 70% hidden) of ``('mode', None)``, ``('mean', n_neighbors)`` and
        ``('blend', n_neighbors)`` for each choice its settings leave open; None otherwise.
    train_codes_ : ndarray of shape (n_train_rows, n_components) or None
        With ``'mean'`` and ``'blend'``: the codes of the training samples (encoded from
        their observed entries under the prior of ``code_prior_``) that ``transform``
        averages over; None with ``'mode'``.
    estimators_ : list of GradientFlowImputer
        With ``n_estimators > 1``: the members, fitted imputers with ``n_estimators=1``
        (without ``add_indicator``, on the placeholder NaN); not set otherwise.
    indicator_ : MissingIndicator
        Indicator used to add binary indicators for missing values; None when
        ``add_indicator`` is False.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined when ``X`` has string column names.

    See Also
    --------
    GradientFlowEncoder : the encoder, with ``allow_nan=True`` for incomplete samples.
    make_hidden_entry_scorer : score imputers on entries hidden from them.
    sklearn.impute.KNNImputer : imputes from the nearest complete neighbours.

    Notes
    -----
    Samples none of whose (kept) features is observed are left out of training and imputed
    with ``statistics_``. ``fit`` refuses data in which no entry at all is observed.

    Examples
    --------
    >>> import numpy as np
    >>> from gfe_sklearn import GradientFlowEncoder, GradientFlowImputer
    >>> X = np.random.RandomState(0).uniform(size=(40, 6))
    >>> X[::3, 2] = np.nan
    >>> encoder = GradientFlowEncoder(n_components=2, hidden_layer_sizes=(16,), loss="bce",
    ...                               solver="lbfgs", max_iter=2, device="cpu",
    ...                               random_state=0)
    >>> imputer = GradientFlowImputer(encoder=encoder).fit(X)
    >>> filled = imputer.transform(X)
    >>> bool(np.isnan(filled).any()), bool((filled[1] == X[1]).all())
    (False, True)
    """

    _parameter_constraints = {
        **_BaseImputer._parameter_constraints,
        # X is read as numbers, where None becomes NaN and a string is no value at all.
        "missing_values": [MissingValues(numeric_only=True)],
        "encoder": [GradientFlowEncoder, None],
        "code_prior": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "estimate": [StrOptions({"auto", "mode", "mean", "blend"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "n_starts": [Interval(Integral, 1, None, closed="left")],
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        encoder: GradientFlowEncoder | None = None,
        missing_values: float = np.nan,
        add_indicator: bool = False,
        keep_empty_features: bool = False,
        code_prior: float | str = "auto",
        estimate: str = "auto",
        n_neighbors: int | str = "auto",
        n_starts: int = 1,
        n_estimators: int = 1,
        n_jobs: int | None = None,
        random_state: RandomStateLike = None,
    ) -> None:
        super().__init__(
            missing_values=missing_values,
            add_indicator=add_indicator,
            keep_empty_features=keep_empty_features,
        )
        self.encoder = encoder
        self.code_prior = code_prior
        self.estimate = estimate
        self.n_neighbors = n_neighbors
        self.n_starts = n_starts
        self.n_estimators = n_estimators
        self.n_jobs = n_jobs
        self.random_state = random_state

    # Parameters added since imputers were first pickled, with the values that make an
    # imputer pickled before them behave as it did.
    _values_before_parameter = {
        "code_prior": 0.0,
        "estimate": "mode",
        "n_neighbors": "auto",
        "n_starts": 1,
        "n_estimators": 1,
        "n_jobs": None,
        "random_state": None,
    }

    def __setstate__(self, state):
        state = {**self._values_before_parameter, **state}
        if "encoder_" in state:  # fitted before these attributes existed: one start, no prior
            state.setdefault("code_mean_", None)
            state.setdefault("code_scale_", None)
            state.setdefault("start_codes_", np.zeros((1, state["encoder_"].n_components)))
            state.setdefault("code_prior_", state["code_prior"])
            state.setdefault("code_prior_scores_", None)
            state.setdefault("estimate_", "mode")
            state.setdefault("n_neighbors_", None)
            state.setdefault("estimate_scores_", None)
            state.setdefault("train_codes_", None)
        super().__setstate__(state)

    def _encoder_template(self, n_rows=None):
        """The encoder to clone: the user's, or the default one, trained on ``n_rows`` rows."""
        if self.encoder is not None:
            return self.encoder
        # With the encoder's own prior too: trained on MAP codes rather than on codes fitted
        # to the few entries a training flow sees, the decoder imputes small data better
        # (docs/imputation.md).
        encoder = GradientFlowEncoder(fit_hide_fraction=DEFAULT_HIDE_FRACTION)
        if n_rows:
            epochs = max(DEFAULT_MIN_EPOCHS, -(-DEFAULT_MIN_SAMPLES // n_rows))
            encoder.set_params(
                max_iter=epochs, max_samples=epochs * n_rows, n_iter_no_change=epochs
            )
        return encoder

    def _validate(self, X, reset):
        # A NaN is data to impute only when it is the placeholder.
        finite = "allow-nan" if is_scalar_nan(self.missing_values) else True
        X = validate_data(
            self,
            readable_by_numpy(X),
            reset=reset,
            dtype=FLOAT_DTYPES,
            ensure_all_finite=finite,
            copy=True,
        )
        return X, _get_mask(X, self.missing_values)

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X: MatrixLike, y: None = None) -> Self:
        """Fit the encoder on the observed entries of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with missing entries marked by ``missing_values``.
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        X, mask = self._validate(X, reset=True)
        valid = ~mask.all(axis=0)
        X[mask] = np.nan
        # Here, not in the members: they see the placeholder as NaN, the user's may differ.
        if mask.all():
            raise ValueError(
                f"{type(self).__name__} got X of shape {X.shape} with no observed entry "
                f"(every value is missing_values={self.missing_values!r}): there is nothing "
                "to learn the missing entries from."
            )
        if self.n_estimators > 1:
            self._fit_members(X)
        else:
            self._fit_alone(X, valid)
        # The statistics need no warning about features that are never observed.
        counts = (~mask).sum(axis=0)
        sums = np.where(mask, 0, X).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.statistics_ = np.where(counts > 0, sums / counts, np.nan)
        self._valid_mask = valid
        super()._fit_indicator(mask)
        return self

    def _fit_alone(self, X, valid):
        """Fit the encoder, the prior and the starts on ``X`` (missing entries NaN)."""
        self.__dict__.pop("estimators_", None)  # from an earlier fit with n_estimators > 1
        rng = check_random_state(self.random_state)
        seed = None
        if self._encoder_template().random_state is None and self.random_state is not None:
            # Drawn only here, so that an encoder seeded by the user sees the same draws of
            # held-out rows and starts as before this existed.
            seed = rng.randint(np.iinfo(np.int32).max)
        X_valid = X[:, valid]
        seen = ~np.isnan(X_valid).all(axis=1)
        train, held_out = X_valid[seen], None
        if self._chooses_on_held_out_rows() and len(train) >= AUTO_PRIOR_MIN_ROWS:
            order = rng.permutation(len(train))
            n_held_out = min(int(np.ceil(AUTO_PRIOR_HELD_OUT * len(train))), AUTO_PRIOR_MAX_ROWS)
            train, held_out = train[order[n_held_out:]], train[order[:n_held_out]]
        encoder = clone(self._encoder_template(len(train))).set_params(allow_nan=True)
        if encoder.code_init == "auto":
            # The imputer starts its flows itself (at 0 and start_codes_): fit would distil
            # an encoder whose guesses go unused.
            encoder.set_params(code_init="zeros")
        if seed is not None:
            encoder.set_params(random_state=seed)
        encoder.fit(train)
        self.encoder_ = encoder
        self.code_prior_ = 0.0 if self.code_prior == "auto" else float(self.code_prior)
        self.code_prior_scores_ = None
        self._fit_prior_and_starts(train, rng)
        hidden = None if held_out is None else hide_entries(held_out, AUTO_PRIOR_HIDDEN, rng)
        if hidden is not None and self.code_prior == "auto":
            self.code_prior_scores_ = self._prior_scores(held_out, hidden)
            self.code_prior_ = min(self.code_prior_scores_, key=self.code_prior_scores_.get)
        self._fit_estimate(train, held_out, hidden, rng)

    def _chooses_on_held_out_rows(self):
        """Whether ``fit`` holds rows out to choose a setting on."""
        open_neighbours = self.estimate != "mode" and self.n_neighbors == "auto"
        return self.code_prior == "auto" or self.estimate == "auto" or open_neighbours

    def _fit_estimate(self, train, held_out, hidden, rng):
        """``estimate_``, ``n_neighbors_``, ``estimate_scores_`` and ``train_codes_``: chosen
        on the ``held_out`` rows where the settings leave them open, over the codes of
        ``train`` alone (a held-out row among them would find itself)."""
        self.estimate_scores_ = None
        estimate, n_neighbors = self.estimate, self.n_neighbors
        if held_out is None:
            estimate = "mode" if estimate == "auto" else estimate
            n_neighbors = NEIGHBOURS_WITHOUT_CHOICE if n_neighbors == "auto" else n_neighbors
        choices = self._estimate_choices(estimate, n_neighbors)
        codes = None
        if len(choices) > 1:
            codes = self._train_codes(train)
            hiddens = [hidden] + [
                hide_entries(held_out, share, rng) for share in AUTO_ESTIMATE_HIDDEN[1:]
            ]
            self.estimate_scores_ = self._estimate_scores(held_out, hiddens, codes, choices)
            estimate, n_neighbors = min(self.estimate_scores_, key=self.estimate_scores_.get)
        else:
            ((estimate, n_neighbors),) = choices
        self.estimate_ = estimate
        self.n_neighbors_ = None if estimate == "mode" else int(n_neighbors)
        self.train_codes_ = None
        if estimate != "mode":
            # Each row's code is its own whatever batch it is in: the training rows' codes
            # found for the choice serve as they are.
            codes = self._train_codes(train) if codes is None else codes
            if held_out is not None:
                codes = np.vstack([codes, self._train_codes(held_out)])
            self.train_codes_ = codes

    @staticmethod
    def _estimate_choices(estimate, n_neighbors):
        """The ``(estimate, n_neighbors)`` pairs left open by the settings."""
        grid = NEIGHBOUR_GRID if n_neighbors == "auto" else (n_neighbors,)
        kinds = ("mode", "mean", "blend") if estimate == "auto" else (estimate,)
        choices = [("mode", None)] if "mode" in kinds else []
        return choices + [(kind, k) for kind in kinds if kind != "mode" for k in grid]

    def _train_codes(self, rows):
        """The codes of ``rows`` (observed entries, under the prior of ``code_prior_``)."""
        return self.encoder_._transform_from(rows, None, self._prior(self.code_prior_))

    def _estimate_scores(self, rows, hiddens, codes, choices):
        """The sum over the masks ``hiddens`` of the RMSE on the hidden entries of ``rows``
        for each choice."""
        scores = dict.fromkeys(choices, 0.0)
        for hidden in hiddens:
            asked = hidden.any(axis=1)
            truth, hidden = rows[asked], hidden[asked]
            if not hidden.any():
                continue
            seen = np.where(hidden, np.nan, truth)
            mode = None
            if any(kind != "mean" for kind, _ in choices):
                mode = self._mode(seen)
            for kind, n_neighbors in choices:
                guess = mode
                if kind != "mode":
                    mean = self._posterior_mean(seen, codes, n_neighbors)
                    guess = mean if kind == "mean" else (mean + mode) / 2
                scores[kind, n_neighbors] += hidden_entry_error(truth, guess, hidden, "rmse")
        return scores

    def _fit_members(self, X):
        """``estimators_``: ``n_estimators`` imputers fitted on ``X`` (missing entries NaN),
        the first as ``n_estimators=1`` would fit it, the others with encoders seeded apart."""
        rng = check_random_state(self.random_state)
        member = clone(self).set_params(
            n_estimators=1, n_jobs=None, missing_values=np.nan, add_indicator=False
        )
        members = [clone(member)]
        template = self._encoder_template()
        # The first pair is skipped: with an int random_state its first number is the seed
        # the first member draws for an unseeded encoder, and twin decoders average to one.
        seeds = rng.randint(np.iinfo(np.int32).max, size=(self.n_estimators, 2))[1:]
        for seed in seeds:
            if self.encoder is None:  # each member sizes the default encoder's training
                members.append(clone(member).set_params(random_state=int(seed[1])))
                continue
            encoder = clone(template).set_params(random_state=int(seed[0]))
            members.append(clone(member).set_params(encoder=encoder, random_state=int(seed[1])))
        fitted = Parallel(n_jobs=self.n_jobs)(delayed(_fit_member)(m, X) for m in members)
        self.estimators_ = [member for member, _ in fitted]
        # A worker process prints its warnings where the caller cannot catch or filter them.
        for _, caught in fitted:
            for message, category in caught:
                warnings.warn(message, category, stacklevel=4)
        first = self.estimators_[0]
        for name in MEMBER_ATTRIBUTES:
            setattr(self, name, getattr(first, name))

    def transform(self, X: MatrixLike) -> np.ndarray:
        """Fill the missing entries of ``X``; observed entries are returned unchanged.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features_out)
            In the dtype of ``X`` (float32 or float64). Without ``keep_empty_features``,
            features missing in every sample seen by ``fit`` are dropped; with
            ``add_indicator``, the indicator columns follow.
        """
        check_is_fitted(self)
        X, mask = self._validate(X, reset=False)
        indicator = super()._transform_indicator(mask)
        valid = self._valid_mask
        X[mask] = np.nan
        X_valid, mask_valid = X[:, valid], mask[:, valid]
        seen = ~mask_valid.all(axis=1)
        to_encode = seen & mask_valid.any(axis=1)
        if to_encode.any():
            rows = X_valid[to_encode]
            guess = self._mean_reconstruction(rows).astype(X.dtype)
            X_valid[to_encode] = np.where(mask_valid[to_encode], guess, rows)
        unseen = np.flatnonzero(~seen)
        if unseen.size:
            X_valid[unseen] = self.statistics_[valid].astype(X.dtype)
        if self.keep_empty_features:
            X[:, valid] = X_valid
            X[:, ~valid] = 0
            X_valid = X
        return super()._concatenate_indicator(X_valid, indicator)

    def _mean_reconstruction(self, rows):
        """Each row's imputation by ``estimate_``, averaged over the members."""
        members = getattr(self, "estimators_", None)
        if members:
            jobs = (delayed(m._mean_reconstruction)(rows) for m in members)
            return sum(Parallel(n_jobs=self.n_jobs)(jobs)) / len(members)
        if self.estimate_ == "mode":
            return self._mode(rows)
        mean = self._posterior_mean(rows, self.train_codes_, self.n_neighbors_)
        return mean if self.estimate_ == "mean" else (mean + self._mode(rows)) / 2

    def _prior(self, weight):
        """``_transform_from``'s prior of weight ``weight`` (None without one)."""
        return (self.code_mean_, self.code_scale_, weight) if weight > 0 else None

    def _posterior_mean(self, rows, codes, n_neighbors):
        """The decoder's outputs at ``codes``, averaged for each row with the weights
        ``exp(-beta * loss)`` (the loss summed over the row's observed entries), ``beta``
        such that about ``n_neighbors`` codes count. On the CPU in float64, in the engine's
        row layout: a row's imputation is the same bit for bit in any batch and process."""
        encoder = self.encoder_
        decoded = torch.as_tensor(encoder.inverse_transform(codes), dtype=torch.float64)
        bce = encoder.loss_ == "bce"
        if bce:
            clipped = decoded.clamp(BCE_CLIP, 1 - BCE_CLIP)
            log_p, log_q = clipped.log().T.contiguous(), (-clipped).log1p().T.contiguous()
        decoded_t, squares = decoded.T.contiguous(), (decoded**2).T.contiguous()

        def mean(part):
            observed = (~part.isnan()).to(part.dtype)
            x = torch.where(observed > 0, part, 0.0)
            # The loss against every code at once, as products: bce's terms are linear in
            # the entry, squared errors quadratic.
            if bce:
                loss = -(x @ log_p + (observed - x) @ log_q)
            else:
                loss = (x * x).sum(dim=1, keepdim=True) - 2 * x @ decoded_t + observed @ squares
            return neighbour_weights(loss, n_neighbors) @ decoded

        target = torch.as_tensor(np.asarray(rows), dtype=torch.float64)
        # The layout is checked once per imputer for each shape of the products.
        key = ("posterior_mean", tuple(decoded.shape), bce)
        with torch.no_grad(), torch_threads(encoder.n_threads):
            out = invariant_rowwise(
                mean,
                target,
                chunk=resolve_row_chunk("auto", "cpu"),
                owner=self,
                probe=(probe_rows(target),),
                key=key,
            )
        return out.numpy()

    def _mode(self, rows, code_prior=None):
        """The decoder's output at each row's codes from every start, averaged over starts,
        under the prior of weight ``code_prior`` (None: ``code_prior_``)."""
        encoder = self.encoder_
        weight = self.code_prior_ if code_prior is None else code_prior
        starts = self.start_codes_
        prior = self._prior(weight)
        total = None
        for i, start in enumerate(starts):
            codes = encoder._transform_from(rows, start if i else None, prior)
            decoded = encoder.inverse_transform(codes)
            total = decoded if total is None else total + decoded
        return total / len(starts)

    def _fit_prior_and_starts(self, train, rng):
        """``code_mean_``, ``code_scale_`` and ``start_codes_`` from the training codes."""
        encoder = self.encoder_
        self.code_mean_ = self.code_scale_ = None
        self.start_codes_ = np.zeros((1, encoder.n_components), dtype=train.dtype)
        if self.code_prior == 0 and self.n_starts == 1:
            return
        rows = np.linspace(0, len(train) - 1, min(len(train), CODE_PRIOR_SAMPLES))
        codes = encoder.transform(train[np.unique(rows.astype(int))])
        spread = codes.std(axis=0)
        self.code_mean_, self.code_scale_ = codes.mean(axis=0), np.where(spread > 0, spread, 1)
        draws = rng.standard_normal((self.n_starts - 1, encoder.n_components))
        starts = self.code_mean_ + self.code_scale_ * draws
        self.start_codes_ = np.vstack([self.start_codes_, starts.astype(train.dtype)])

    def _prior_scores(self, rows, hidden):
        """RMSE on the ``hidden`` share of the held-out rows' observed entries, hidden from
        their flows, for every weight of ``AUTO_PRIOR_GRID``; each row keeps one entry in
        view."""
        asked = hidden.any(axis=1)
        rows, hidden = rows[asked], hidden[asked]
        if not hidden.any():
            return {0.0: 0.0}
        seen = np.where(hidden, np.nan, rows)
        scores = {}
        for weight in AUTO_PRIOR_GRID:
            # From every start: the prior matters more to flows from random starts (digits:
            # 0.1 picked from the usual start alone, 1 from eight, which imputed 3-12% better).
            guess = self._mode(seen, weight)
            scores[weight] = hidden_entry_error(rows, guess, hidden, "rmse")
        return scores

    def get_feature_names_out(self, input_features=None):
        """Get output feature names for transformation.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input features; ``feature_names_in_`` when fitted on named columns, else
            ``x0, x1, ...``.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self, "n_features_in_")
        input_features = _check_feature_names_in(self, input_features)
        names = input_features if self.keep_empty_features else input_features[self._valid_mask]
        return self._concatenate_indicator_feature_names_out(names, input_features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.positive_only = get_tags(self._encoder_template()).input_tags.positive_only
        return tags


def neighbour_weights(loss, n_neighbors):
    """Per row of ``loss`` (a tensor, rows x codes), the weights ``exp(-beta * loss)``,
    normalised, with ``beta`` found by bisection on its logarithm so that their effective
    number ``1 / sum(w**2)`` is ``n_neighbors`` (all codes, evenly, where there are no more).
    Only each row's ``CANDIDATES_PER_NEIGHBOUR * n_neighbors`` lowest losses get weight."""
    n_rows, n_codes = loss.shape
    kept = min(n_codes, CANDIDATES_PER_NEIGHBOUR * n_neighbors)
    excess, best = loss.topk(kept, dim=1, largest=False)
    excess = excess - excess[:, :1]
    low = torch.full((n_rows, 1), -40.0, dtype=loss.dtype)  # log2(beta)
    high = torch.full_like(low, 40.0)
    for _ in range(60):
        middle = (low + high) / 2
        w = torch.exp(-torch.exp2(middle) * excess)
        wide = w.sum(dim=1, keepdim=True) ** 2 > n_neighbors * (w * w).sum(dim=1, keepdim=True)
        low, high = torch.where(wide, middle, low), torch.where(wide, high, middle)
    w = torch.exp(-torch.exp2(low) * excess)
    return torch.zeros_like(loss).scatter_(1, best, w / w.sum(dim=1, keepdim=True))


def _fit_member(member, X):
    """``member`` fitted on ``X``, and the warnings its fit raised, to raise in the caller."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        member.fit(X)
    return member, [(w.message, w.category) for w in caught]
