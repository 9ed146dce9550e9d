"""The scikit-learn layer shared by ``GradientFlowEncoder`` and ``AutoEncoderBaseline``.

Parameters and their checks, input validation, device / dtype / seed handling, the training
loop, batched inference and portable pickling live here; the two estimators only say how a
batch is encoded and how its training loss is formed.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
import warnings
from abc import abstractmethod
from numbers import Integral, Real
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._deprecation import renamed_argument
from ._device import resolve_device, torch_threads
from ._distributed import data_parallel
from ._fitted_state import FITTED_FIELDS, started
from ._persistence import PersistenceMixin
from ._progress import progress_bar
from .flow import LOSSES
from .flow._rows import invariant_rowwise, padded_mlp, probe_codes, resolve_row_chunk
from .nn import ACTIVATIONS

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
    from typing_extensions import Self

    from ._typing import MatrixLike

OPTIMIZERS = {
    # name: (class, fixed keyword arguments); RMSprop as in the papers' appendix B.
    "rmsprop": (torch.optim.RMSprop, {"alpha": 0.9, "eps": 1e-6}),
    "adam": (torch.optim.Adam, {}),
}

# How far outside a loss's target range data may stray by rounding.
RANGE_SLACK = 1e-6

# Rows per chunk in transform, inverse_transform and score: bounds the working memory.
INFERENCE_BATCH_SIZE = 1024

# The most intra-op threads n_threads may ask for.
MAX_THREADS = 4096


def readable_by_numpy(X):
    """``X``, with a bfloat16 torch tensor made a float32 array (exactly): numpy cannot read it.

    numpy has no bfloat16; every bfloat16 value is a float32 value, and float16 data become
    float32 as well, so the model is the one float32 data would train. An array, not a
    tensor: scikit-learn keeps the dtype of an array, but reads a tensor's as unknown.
    """
    if isinstance(X, torch.Tensor) and X.dtype == torch.bfloat16:
        return X.float().numpy()
    return X


def model_dtype(data_dtype, device, compute_dtype=None):
    """The torch dtype of a model on ``device`` fitted on data of ``data_dtype``.

    ``compute_dtype`` names it; None follows the data: float64 data train a float64 model,
    anything else a float32 one. MPS has no float64.
    """
    mps = torch.device(device).type == "mps"
    if compute_dtype == "float64" and mps:
        raise ValueError(
            "compute_dtype='float64' cannot run on MPS, which has no float64: use "
            "compute_dtype='float32', or device='cpu'."
        )
    if compute_dtype is None:
        compute_dtype = "float64" if data_dtype == np.float64 and not mps else "float32"
    return getattr(torch, compute_dtype)


# Parameters of fit's epoch loop, which partial_fit never reads.
FIT_LOOP_PARAMETERS = frozenset(
    {"max_iter", "max_samples", "tol", "n_iter_no_change", "validation_fraction", "warm_start"}
)

# Estimators with a fit or partial_fit running, by id: one call at a time per estimator. Not
# an attribute, which copy.deepcopy and pickling would have to skip.
_TRAINING = set()
_TRAINING_LOCK = threading.Lock()


@contextlib.contextmanager
def _one_fit_at_a_time(estimator):
    """Refuse a fit that starts while another of the same estimator runs (another thread):
    both would train and record into one model, which could end "fitted" with nothing."""
    with _TRAINING_LOCK:
        if id(estimator) in _TRAINING:
            raise RuntimeError(
                f"This {type(estimator).__name__} is already being fitted by another call "
                "(in another thread); an estimator trains one fit or partial_fit at a time. "
                "Wait for that call to return, or fit a copy (sklearn.base.clone)."
            )
        _TRAINING.add(id(estimator))
    try:
        yield
    finally:
        with _TRAINING_LOCK:
            _TRAINING.discard(id(estimator))


def _values_range(X, target_range):
    """``(lowest, highest)`` of the observed (non-NaN) values of ``X`` where some lie outside
    ``target_range`` (by more than rounding, ``RANGE_SLACK``), else None."""
    values = X.data if sp.issparse(X) else X
    if target_range is None or values.size == 0:
        return None
    low, high = target_range
    with warnings.catch_warnings():  # every value NaN: nothing observed lies outside
        warnings.simplefilter("ignore", RuntimeWarning)
        lowest, highest = float(np.nanmin(values)), float(np.nanmax(values))
    # Rounding in scalers (MinMaxScaler gives 1.0000000000000002) is not an error.
    if lowest < low - RANGE_SLACK or highest > high + RANGE_SLACK:
        return lowest, highest
    return None


def build_mlp(maker, architecture, n_features, generator, dtype, device):
    """The default decoder or encoder (``make_decoder``, ``make_encoder``) of an architecture."""
    return maker(
        architecture["n_components"],
        architecture["hidden_layer_sizes"],
        n_features,
        architecture["activation"],
        generator=generator,
        dtype=dtype,
        device=device,
    )


# Stands for an attribute that a fit removes (feature_names_in_ after a refit on plain arrays).
_REMOVED = object()


class _Plateau:
    """When training stops improving, and the best weights seen, for fit's stopping rule.

    It watches one score per epoch (higher is better: minus the training loss, or the
    validation score with ``early_stopping``) and says to stop after more than
    ``n_iter_no_change`` epochs in a row without a gain above ``tol`` on the best.

    Parameters
    ----------
    tol : float
    n_iter_no_change : int
    keep_best_weights : bool
        Keep a copy of the modules' weights at the best score, to restore at the end, with
        the estimator's attributes that describe them (``_weight_statistics``).
    """

    def __init__(self, tol, n_iter_no_change, keep_best_weights):
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.keep_best_weights = keep_best_weights
        self.best_score = -np.inf
        self.epochs_without_gain = 0
        self.best_weights = None
        self.best_statistics = {}

    def update(self, score, modules, statistics=None):
        """Record an epoch's score; returns True when training should stop."""
        if score > self.best_score + self.tol:
            self.epochs_without_gain = 0
        else:
            self.epochs_without_gain += 1
        if score > self.best_score:
            self.best_score = score
            if self.keep_best_weights:
                self.best_weights = [copy.deepcopy(m.state_dict()) for m in modules]
                self.best_statistics = copy.deepcopy(statistics or {})
        return self.epochs_without_gain > self.n_iter_no_change

    def restore_best_weights(self, modules, owner):
        if self.best_weights is not None:
            for module, state in zip(modules, self.best_weights):
                module.load_state_dict(state)
            owner.__dict__.update(self.best_statistics)


class BaseFlowEstimator(
    PersistenceMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Base class of the encoders: see ``GradientFlowEncoder`` for the shared parameters."""

    _parameter_constraints = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "loss": [StrOptions(set(LOSSES) | {"auto"})],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "max_samples": [Interval(Integral, 1, None, closed="left"), None],
        "tol": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
        "device": [str, torch.device],
        "compute_dtype": [StrOptions({"float32", "float64"}), None],
        "n_threads": [
            # torch takes a C int; more threads than this no machine has.
            Interval(Integral, 1, MAX_THREADS, closed="both"),
            Interval(Integral, None, -1, closed="right"),
            None,
        ],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "decoder": [torch.nn.Module, None],
        "distributed": [StrOptions({"auto"}), "boolean"],
    }

    @abstractmethod
    def __init__(
        self,
        *,
        n_components,
        hidden_layer_sizes,
        activation,
        loss,
        optimizer,
        learning_rate,
        batch_size,
        max_iter,
        max_samples,
        tol,
        early_stopping,
        validation_fraction,
        n_iter_no_change,
        warm_start,
        device,
        compute_dtype,
        n_threads,
        random_state,
        verbose,
        decoder,
        distributed,
    ):
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.max_samples = max_samples
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.device = device
        self.compute_dtype = compute_dtype
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.decoder = decoder
        self.distributed = distributed

    # Parameters added after models were first saved, with the value that reproduces how a
    # model saved before them behaves, where that differs from today's default.
    _values_before_parameter = {"compute_dtype": None}

    _optimizers = OPTIMIZERS

    _fitted_fields = FITTED_FIELDS

    def _row_chunk(self, module):
        """Rows per call of ``module`` at inference, as the flow's engine evaluates them."""
        return resolve_row_chunk("auto", self.device_, module)

    # -- what a subclass provides -------------------------------------------------------

    @abstractmethod
    def _build_modules(self, n_features, architecture, generator, dtype, device):
        """The fitted torch modules by attribute name (``decoder_``, and ``encoder_``).

        ``architecture`` is ``_architecture``'s dict: ``n_components``,
        ``hidden_layer_sizes``, ``activation`` (a user-supplied module replaces them).
        """

    @abstractmethod
    def _modules(self):
        """The fitted modules whose parameters are trained."""

    # The attributes that may hold fitted modules: the names _build_modules returns.
    _module_attributes = ("decoder_", "encoder_")
    # Fitted attributes that training updates with the weights and that belong to them:
    # early stopping's best epoch restores them together.
    _weight_statistics = ()

    def _statistics_of_weights(self):
        return {name: getattr(self, name, None) for name in self._weight_statistics}

    def _fitted_modules(self):
        """The fitted modules by attribute name, as ``_build_modules`` built them."""
        return {
            name: self.__dict__[name] for name in self._module_attributes if name in self.__dict__
        }

    @abstractmethod
    def _training_loss(self, target, batch=None):
        """Per-sample training loss of a batch, differentiable in the trained parameters.

        ``batch``: None when ``target`` is the whole batch; in data-parallel training, the
        ``_distributed.BatchShare`` that says which rows of the global batch ``target`` holds.
        """

    @abstractmethod
    def _encode(self, target, with_loss, **options):
        """Codes of a batch and, when ``with_loss``, the per-sample loss (no graph).

        ``options`` are ``_inference_options()``, computed once per call for all batches.
        """

    def _check_params(self):
        """Checks that ``_parameter_constraints`` cannot express (before anything changes)."""
        for name, value in self.get_params(deep=False).items():
            # torch and numpy count in int64: a larger count fails deep inside them.
            if isinstance(value, Integral) and not isinstance(value, bool) and abs(value) >= 2**63:
                raise ValueError(
                    f"{name}={value!r} is beyond the 64-bit integers that torch and numpy "
                    f"count in; set {name} below 2**63."
                )
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
        if not all(isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise ValueError(
                f"hidden_layer_sizes must be positive integers; got {self.hidden_layer_sizes!r}."
            )
        return tuple(int(s) for s in sizes)

    # -- validation -----------------------------------------------------------------------

    def _validate_X(self, X, *, reset):
        # NaN passes validate_data so that _check_missing decides, with the estimator's advice.
        X = validate_data(
            self,
            readable_by_numpy(X),
            reset=reset,
            accept_sparse="csr",
            dtype=[np.float32, np.float64],
            ensure_all_finite="allow-nan",
        )
        self._check_missing(X)
        return X

    # How to encode data with missing entries, for the refusal of NaN.
    _nan_advice = ""

    def _check_missing(self, X):
        """Refuse NaN in ``X`` (``GradientFlowEncoder(allow_nan=True)`` takes it as missing)."""
        if np.isnan(X.data if sp.issparse(X) else X).any():
            raise ValueError(
                f"Input X contains NaN, which {type(self).__name__} refuses: {self._nan_advice}"
            )

    def _chosen_loss(self, X):
        """The loss of a new model fitted on ``X``: ``loss``, with ``'auto'`` resolved.

        ``'auto'`` is ``'bce'`` where ``loss='bce'`` would accept ``X`` (every observed
        entry in ``[0, 1]``, to rounding), ``'mse'`` otherwise.
        """
        if self.loss != "auto":
            return self.loss
        return "bce" if _values_range(X, LOSSES["bce"].target_range) is None else "mse"

    def _check_target_range(self, X, loss, name="X"):
        """Refuse data outside the range of ``loss`` (``[0, 1]`` for ``bce``), changing nothing."""
        target_range = LOSSES[loss].target_range
        outside = _values_range(X, target_range)
        if outside is None:
            return
        (low, high), (lowest, highest) = target_range, outside
        # "Negative values in data passed to" is scikit-learn's wording for positive_only.
        problem = "Negative values" if lowest < 0 <= low else "Values out of range"
        if self.loss == "auto":  # only a fitted model's choice can be refused
            which = (
                f"loss='auto' chose {loss!r} at this model's first fit (its data lay in "
                f"[{low:g}, {high:g}]), and continued training (partial_fit, warm_start) keeps "
                f"it, so {name} must lie in [{low:g}, {high:g}]"
            )
            fix = (
                "or fit a new model (warm_start=False) on such data, for which loss='auto' "
                "chooses 'mse' (or set loss='mse')"
            )
        else:
            which = f"loss={loss!r} needs {name} in [{low:g}, {high:g}]"
            fix = "or use loss='mse'"
        raise ValueError(
            f"{problem} in data passed to {type(self).__name__} ({name}): {which}, but {name} "
            f"has values in [{lowest:.4g}, {highest:.4g}]. Scale the data with "
            f"sklearn.preprocessing.MinMaxScaler(clip=True) (clip keeps new data in range), {fix}."
        )

    def _clipped_to_target_range(self, X, name="X"):
        """``X`` clipped into the loss's range for ``transform`` and ``score``, with a warning.

        ``fit`` refuses such data, but a scaler fitted on other rows (``MinMaxScaler`` in a
        cross-validated pipeline) maps new rows slightly outside the range, and refusing them
        would break the pipeline.
        """
        target_range = LOSSES[self.loss_].target_range
        values = X.data if sp.issparse(X) else X
        if target_range is None or values.size == 0:
            return X
        low, high = target_range
        outside = values[(values < low - RANGE_SLACK) | (values > high + RANGE_SLACK)]
        if outside.size == 0:
            return X
        beyond = float(np.max(np.maximum(low - outside, outside - high)))
        warnings.warn(
            f"{type(self).__name__}: {self._fitted_loss_description()} needs {name} in "
            f"[{low:g}, {high:g}]; "
            f"{outside.size} of {X.shape[0] * X.shape[1]} values were outside, by up to "
            f"{beyond:.3g}, and were clipped to it. A scaler fitted on other rows does this; "
            "sklearn.preprocessing.MinMaxScaler(clip=True) keeps new data in range.",
            DataConversionWarning,
            stacklevel=3,
        )
        if sp.issparse(X):
            X = X.copy()
            X.data = np.clip(X.data, low, high)
            return X
        return np.clip(X, low, high)

    def _fitted_loss_description(self):
        """How messages name the fitted loss: ``loss='bce'``, or 'auto' and its choice."""
        if self.loss == "auto":
            return f"loss='auto', which chose {self.loss_!r} at the first fit,"
        if self.loss != self.loss_:  # set_params after the fit, which acts at the next
            return f"the fitted model's loss {self.loss_!r}"
        return f"loss={self.loss_!r}"

    @property
    def _n_features_out(self):
        return self._n_latent

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = False
        # The parameter's: 'auto' fits any data (a fitted bce model clips new data).
        target_range = None if self.loss == "auto" else LOSSES[self.loss].target_range
        tags.input_tags.positive_only = (target_range or (-np.inf,))[0] >= 0
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.non_deterministic = False
        return tags

    # -- checking settings ------------------------------------------------------------------

    def check_params(self):
        """Check the parameters as ``fit`` does first, without fitting anything.

        A long job can refuse a bad setting (an ``s0`` above ``s_max``, a device this machine
        lacks) before it starts, instead of at its first fit.

        Returns
        -------
        self : object
            The estimator, unchanged.

        Raises
        ------
        ValueError or TypeError
            The error ``fit`` would raise, naming the parameter, its value and the fix.

        Examples
        --------
        >>> from gfe_sklearn import GradientFlowEncoder
        >>> GradientFlowEncoder(solver="amd", s0=2.0, s_max=1.0).check_params()
        Traceback (most recent call last):
            ...
        ValueError: s0=2.0 exceeds s_max=1.0: AMD's first trial step must not exceed its
        largest one. Lower s0 or raise s_max.
        """
        self._validate_params()
        self._check_params()
        resolve_device(self.device)
        return self

    def partial_fit_params(self):
        """The parameters that ``partial_fit`` reads with these settings, by name.

        ``get_params(deep=False)`` less the parameters of ``fit``'s epoch loop (``max_iter``,
        ``max_samples``, ``tol``, ``n_iter_no_change``, ``validation_fraction``,
        ``warm_start``) and, for ``GradientFlowEncoder``, the constants of the solvers other
        than the one these settings use (``rtol`` under AMD, say). Changing a parameter left
        out changes nothing that ``partial_fit`` does, so two estimators trained by
        ``partial_fit`` on the same data differ only if these values do: a record of how a
        model was trained need hold these alone.

        Returns
        -------
        params : dict
            Parameter names mapped to their values, in ``get_params``'s order.
        """
        left_out = FIT_LOOP_PARAMETERS | self._unread_parameters()
        return {k: v for k, v in self.get_params(deep=False).items() if k not in left_out}

    def _unread_parameters(self):
        """Parameters outside fit's epoch loop that these settings never read."""
        return frozenset()

    # -- fitting --------------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: MatrixLike, y: None = None) -> Self:
        """Train on ``X`` for up to ``max_iter`` epochs (or ``max_samples`` images).

        A call that fails (refused data, divergence, data that overflow the model's dtype)
        leaves the estimator as it was before the call, and its error names the cause.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        self : object

        Notes
        -----
        A ``KeyboardInterrupt`` (Ctrl-C) stops training and then propagates, so a loop of
        fits or a ``GridSearchCV`` stops at the first one instead of going on with the next
        fit or scoring a cut-short candidate. Once this call has made an update, the
        interrupted estimator is left as after any other stop: usable, modules in eval mode,
        with the parameters training had reached (with ``early_stopping``, those of the
        epoch with the best validation score so far). Its record counts only what finished:
        ``n_iter_``, ``loss_curve_`` and ``validation_scores_`` the complete (and validated)
        epochs, ``n_samples_seen_`` the images of complete minibatch updates, so after an
        interrupt mid-epoch the parameters include updates that no epoch records. An
        interrupt before this call's first update leaves the estimator as it was before the
        call.
        """
        return self._fit(X, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: MatrixLike, y: None = None) -> Self:
        """One pass over ``X`` in shuffled minibatches; creates the model on the first call.

        Later calls continue the fitted model and its optimizer's state with the current
        ``learning_rate``; a changed architecture, loss or ``optimizer`` is refused by name.
        A call that fails leaves the model as it was before the call; a ``KeyboardInterrupt``
        keeps the updates made and propagates, as described in ``fit``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True; set it to False.")
        return self._fit(X, incremental=True)

    def _fit(self, X, incremental):
        # Every check runs before the estimator changes, so a refused parameter or X (or an
        # interrupt while checking) leaves it untouched. Training changes the estimator, its
        # modules and its optimizer in place: a failure there is undone from `before`; an
        # interrupt keeps what was reached (fit's Notes), unless nothing was.
        # In a process group every rank makes this call and trains its share of each batch
        # (_distributed); the ranks agree on the checks, the weights and every update.
        parallel = data_parallel(self)
        with (
            _one_fit_at_a_time(self),
            torch_threads(self.n_threads),  # the probe too
            contextlib.nullcontext() if parallel is None else parallel,
        ):
            if parallel is None:
                X, X_val, attributes = self._prepare_fit(X, incremental)
            else:
                X, X_val, attributes = parallel.prepare(self, X, incremental)
            before = self._state_before_fit(incremental)
            self._updates_in_call = 0
            try:
                self._start_fit(attributes, incremental)
                if parallel is not None:
                    parallel.share_weights(self._modules())
                self._train(X, X_val, incremental, parallel)
                self._end_fit(X, incremental, parallel)
            except KeyboardInterrupt as interrupt:
                if self._updates_in_call:
                    self._note_kept_model(interrupt)
                else:  # nothing was reached that could be kept
                    self._undo_fit(before)
                raise
            except Exception:
                self._undo_fit(before)
                raise
        return self

    def _continues_training(self, incremental):
        """Whether this call trains the fitted model further (``warm_start``, ``partial_fit``)."""
        return hasattr(self, "decoder_") and (self.warm_start or incremental)

    def _state_before_fit(self, incremental):
        """What undoing this call needs: the attributes, and copies of what trains in place."""
        # Only continued training changes existing objects; a warm-started fit builds a new
        # optimizer, partial_fit keeps stepping the old one.
        states = None
        if self._continues_training(incremental):
            states = self._trained_states(with_optimizer=incremental)
        return dict(self.__dict__), states

    def _undo_fit(self, before):
        attributes, states = before
        self.__dict__.clear()
        self.__dict__.update(attributes)
        if states is not None:
            self._restore_trained_states(states)

    def _note_kept_model(self, interrupt):
        # Exception notes exist from Python 3.11; on 3.10 the model is kept all the same.
        if hasattr(interrupt, "add_note"):
            interrupt.add_note(
                f"{type(self).__name__} was interrupted after {self.n_iter_} complete epoch(s) "
                f"and {self.n_samples_seen_} images; it keeps the model reached and is usable "
                "(see the Notes of fit)."
            )

    def _trained_states(self, with_optimizer):
        """Copies of what training changes in place: modules, optimizer, curves, generator."""
        optimizer = getattr(self, "optimizer_", None) if with_optimizer else None
        return {
            "modules": [copy.deepcopy(m.state_dict()) for m in self._modules()],
            "optimizer": None if optimizer is None else copy.deepcopy(optimizer.state_dict()),
            "curves": {
                name: list(getattr(self, name))
                for name in ("loss_curve_", "validation_scores_")
                if getattr(self, name, None) is not None
            },
            "rng": self._rng.get_state() if hasattr(self, "_rng") else None,
        }

    def _restore_trained_states(self, states):
        for module, state in zip(self._modules(), states["modules"]):
            module.load_state_dict(state)
            module.eval()
        if states["optimizer"] is not None:
            self.optimizer_.load_state_dict(states["optimizer"])
        # In place: the lists and the generator are the objects the caller may hold.
        for name, values in states["curves"].items():
            getattr(self, name)[:] = values
        if states["rng"] is not None:
            self._rng.set_state(states["rng"])

    def _prepare_fit(self, X, incremental, parallel=None):
        """Check everything, building what the checks need aside; the estimator is unchanged.

        Returns the training rows, the validation rows (or None) and the attributes that
        ``_start_fit`` sets. With ``parallel`` (a ``_distributed.DataParallel``), the ranks
        agree on the shuffling generator first, before any check could stop one of them.
        """
        first = not self._continues_training(incremental)
        rng = getattr(self, "_rng", None) if incremental and not first else None
        own_rng = rng is not None
        if rng is None:  # a new model, or one saved without its shuffling generator
            rng = check_random_state(self.random_state)
        if parallel is not None:
            rng = parallel.agreed_rng(rng, own=own_rng)
        hidden = self._check_params()
        if not first:
            device = self.device_
        elif parallel is None:
            device = resolve_device(self.device)
        else:
            device = parallel.resolve_device(self.device)
        if not first:
            self._check_same_architecture(hidden)
            if incremental:
                self._check_same_optimizer()
        X, attributes = self._checked_X(X, first)
        # Continued training keeps the model's loss: 'auto' chose it at the first fit.
        loss = self._chosen_loss(X) if first else self._continued_loss()
        self._check_target_range(X, loss)
        attributes.update(started(self, "fit"))
        # The generator chosen above: partial_fit's fitted one, or across ranks rank 0's.
        attributes["_rng"] = rng
        dtype = model_dtype(X.dtype, device, self.compute_dtype) if first else self._model_dtype
        if self.learning_rate > torch.finfo(dtype).max:
            raise ValueError(
                f"learning_rate={self.learning_rate!r} overflows the model's "
                f"{str(dtype).replace('torch.', '')} arithmetic (largest value "
                f"{torch.finfo(dtype).max:.3g}). Use a learning rate below 1; 1e-3 is typical."
            )
        if first:
            generator = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
            attributes.update(self._new_model(X.shape[1], hidden, loss, generator, dtype, device))
        if not first and self.early_stopping and self.validation_scores_ is None:
            attributes["validation_scores_"] = []  # the model was fitted without validation
        X_val = None
        if self.early_stopping:  # refuses data too small to split
            X, X_val = train_test_split(X, test_size=self.validation_fraction, random_state=rng)
        return X, X_val, attributes

    def _checked_X(self, X, first):
        """``X`` validated, and the attributes about it that a first fit sets (not yet set)."""
        if not first:
            return self._validate_X(X, reset=False), {}
        # validate_data records n_features_in_ and feature_names_in_ on the estimator it
        # checks: a twin holds them until every other check has passed.
        twin = type(self)(**self.get_params(deep=False))
        X = twin._validate_X(X, reset=True)
        return X, {
            name: getattr(twin, name, _REMOVED) for name in ("n_features_in_", "feature_names_in_")
        }

    def _start_fit(self, attributes, incremental):
        """Set what ``_prepare_fit`` checked and built, and the optimizer; cannot fail."""
        for name, value in attributes.items():
            if value is _REMOVED:
                self.__dict__.pop(name, None)
            else:
                setattr(self, name, value)
        if not incremental or self.optimizer_ is None:
            cls, fixed = OPTIMIZERS[self.optimizer]
            params = [p for module in self._modules() for p in module.parameters()]
            self.optimizer_ = cls(params, lr=self.learning_rate, **fixed)
        # partial_fit keeps the optimizer's state and takes today's learning_rate, so that
        # lowering it after a divergence (as the error advises) has an effect.
        for group in self.optimizer_.param_groups:
            group["lr"] = self.learning_rate

    def _end_fit(self, X, incremental, parallel):
        """What a completed ``fit`` or ``partial_fit`` does after its last update."""

    def _architecture(self, hidden, loss):
        """What describes the modules; ``loss`` is the resolved one (``loss_``)."""
        return {
            "n_components": self.n_components,
            "hidden_layer_sizes": hidden,
            "activation": self.activation,
            "loss": loss,
        }

    def _continued_loss(self):
        """The loss that continued training asks for: ``loss``, with 'auto' the fitted one."""
        return self.loss_ if self.loss == "auto" else self.loss

    def _check_same_architecture(self, hidden):
        """Continuing to train (warm_start, partial_fit) needs the parameters of the model."""
        fitted = getattr(self, "_fitted_architecture", None)
        if fitted is None:  # a model pickled before this record existed
            return
        # A field recorded since (code_init) has the value that models saved before it had.
        now = self._architecture(hidden, self._continued_loss())
        recorded = {name: fitted.get(name, self.value_before_parameter(name)) for name in now}
        changed = {name: (recorded[name], now[name]) for name in now if now[name] != recorded[name]}
        if changed:
            name, (before, now) = next(iter(changed.items()))
            raise ValueError(
                f"{name}={now!r} differs from the fitted model's {name}={before!r}: "
                f"{'warm_start' if self.warm_start else 'partial_fit'} continues training the "
                f"fitted model, which cannot change {sorted(changed)}. Set them back, or set "
                "warm_start=False and call fit to train a new model."
            )

    def _check_same_optimizer(self):
        """partial_fit steps the fitted optimizer, whose state another kind cannot continue."""
        fitted = getattr(self, "optimizer_", None)
        if fitted is None or isinstance(fitted, OPTIMIZERS[self.optimizer][0]):
            return
        name = next(n for n, (cls, _) in OPTIMIZERS.items() if isinstance(fitted, cls))
        raise ValueError(
            f"optimizer={self.optimizer!r} differs from the fitted model's optimizer={name!r}: "
            "partial_fit continues the fitted optimizer's state, which another optimizer "
            f"cannot take. Set optimizer={name!r} back, or call fit with warm_start=True to "
            "keep the weights and start a new optimizer."
        )

    def _new_model(self, n_features, hidden, loss, generator, dtype, device):
        """The attributes of a new, untrained model, after checking its modules fit ``X``."""
        architecture = self._architecture(hidden, loss)
        modules = self._build_modules(n_features, architecture, generator, dtype, device)
        for module in modules.values():
            module.eval()
        try:
            with torch.no_grad():
                probe = modules["decoder_"](
                    torch.zeros(1, self.n_components, dtype=dtype, device=device)
                )
        except RuntimeError as error:
            raise ValueError(
                f"The decoder cannot decode a code of shape (1, n_components="
                f"{self.n_components}): {error}. Set n_components to its input width."
            ) from error
        if probe.ndim < 2 or probe.shape[0] != 1 or probe[0].numel() != n_features:
            raise ValueError(
                f"The decoder maps a code of shape (1, {self.n_components}) to shape "
                f"{tuple(probe.shape)}, but X has {n_features} features: the decoder must "
                f"return (n, *sample_shape) with {n_features} values per sample."
            )
        self._check_modules(modules, probe)
        # The 'model' fields of the fitted record, and its training record at its start.
        return {
            **modules,
            "_fitted_architecture": architecture,
            "loss_": loss,
            "_model_dtype": dtype,
            "device_": device,
            "_n_latent": self.n_components,
            "_sample_shape": tuple(probe.shape[1:]),
            **started(self, "training"),
        }

    def _check_modules(self, modules, probe):
        """Further checks of user modules, given the decoder's output for one code."""

    def _train(self, X, X_val, incremental, parallel=None):
        """Run the epochs, end on the best validated weights, warn if ``max_iter`` cut it short."""
        plateau = (
            None
            if incremental
            else _Plateau(self.tol, self.n_iter_no_change, keep_best_weights=X_val is not None)
        )
        try:
            stopped = self._run_epochs(X, X_val, incremental, plateau, parallel)
        finally:  # also after an interrupt, which keeps the model (see fit)
            if plateau is not None:
                plateau.restore_best_weights(self._modules(), self)
        if stopped is None and not incremental:
            self._warn_not_converged(watched_validation=X_val is not None)

    def _run_epochs(self, X, X_val, incremental, plateau, parallel):
        """The epoch loop; returns why it ended early ("converged", "budget") or None."""
        reports = self.verbose and (parallel is None or parallel.rank == 0)
        budget = None if incremental else self.max_samples
        seen = 0
        for _ in range(1 if incremental else self.max_iter):
            start = time.perf_counter()
            order = self._rng.permutation(X.shape[0])
            if budget is not None:
                order = order[: budget - seen]
            epoch_loss = self._run_epoch(X, order, parallel, reports)
            seen += order.size
            validation = None
            if X_val is not None and parallel is None:
                validation = self._score_batches(X_val).mean()
            elif X_val is not None:
                validation = parallel.validation_score(self, X_val)
            if parallel is not None:
                epoch_loss, validation = parallel.agree_epoch(epoch_loss, validation)
            self._record_epoch(epoch_loss, validation)
            if reports:
                self._report_epoch(epoch_loss, validation, time.perf_counter() - start)
            if plateau is None:
                continue
            # Early stopping watches the validation score, otherwise the training loss.
            score = -epoch_loss if validation is None else validation
            if plateau.update(score, self._modules(), self._statistics_of_weights()):
                return "converged"
            if budget is not None and seen >= budget:
                return "budget"
        return None

    def _record_epoch(self, epoch_loss, validation_score):
        # Only once the epoch is complete (and validated), so an interrupt leaves no half record.
        self.n_iter_ += 1
        self.loss_curve_.append(epoch_loss)
        if validation_score is not None:
            self.validation_scores_.append(float(validation_score))

    def _report_epoch(self, epoch_loss, validation_score, seconds):
        """The ``verbose`` line of an epoch."""
        val = "" if validation_score is None else f", validation score {validation_score:.6f}"
        print(
            f"{type(self).__name__} epoch {self.n_iter_}: loss {epoch_loss:.6f}{val}, "
            f"{self.n_samples_seen_} images seen, {seconds:.2f} s",
            flush=True,
        )

    def _warn_not_converged(self, watched_validation):
        watched = "validation score" if watched_validation else "training loss"
        warnings.warn(
            f"{type(self).__name__}: training stopped at max_iter={self.max_iter} epochs before "
            f"the {watched} stopped improving by tol={self.tol:g} for "
            f"n_iter_no_change={self.n_iter_no_change} epochs. Raise max_iter (or cap training "
            "with max_samples).",
            # Points at fit's caller: above here come _train, _fit, fit, _fit_context's wrapper.
            ConvergenceWarning,
            stacklevel=6,
        )

    def _run_epoch(self, X, order, parallel=None, reports=True):
        total = 0.0
        bar = progress_bar(self.verbose if reports else 0, order.size, f"epoch {self.n_iter_ + 1}")
        try:
            for start in range(0, order.size, self.batch_size):
                rows = order[start : start + self.batch_size]
                for module in self._modules():
                    module.train()
                if parallel is None:
                    batch_loss = self._update(self._tensor(X[rows]))
                else:
                    batch_loss = parallel.update(self, X, rows)
                self._updates_in_call += 1
                total += batch_loss * rows.size
                self.n_samples_seen_ += rows.size
                if bar is not None:
                    bar.update(rows.size)
        finally:
            # Validation scores the model as transform and score will use it, and so does
            # whoever gets the model after an error or an interrupt.
            for module in self._modules():
                module.eval()
            if bar is not None:
                bar.close()
        return total / max(order.size, 1)

    def _update(self, target):
        """One optimizer step on the batch ``target``; returns its mean loss."""
        batch_loss = self._training_loss(target).mean()
        if not torch.isfinite(batch_loss):
            raise ValueError(self._non_finite_loss_message(batch_loss, target))
        self.optimizer_.zero_grad(set_to_none=True)
        batch_loss.backward()
        self.optimizer_.step()
        return batch_loss.item()

    def _non_finite_loss_message(self, batch_loss, target):
        """Why the training loss is not finite, and the fix: the data, or divergence."""
        kept = "The estimator keeps the state it had before this call."
        if self._updates_in_call:
            return (
                f"The training loss became {batch_loss.item()} at epoch {self.n_iter_ + 1}, "
                f"after {self._updates_in_call} update(s) in this call: training diverged. "
                f"Lower learning_rate (now {self.learning_rate!r}). {kept}"
            )
        if not self._parameters_finite():
            return (
                f"The training loss is {batch_loss.item()} before any update: the model's "
                f"weights are not all finite. Fit a new model (warm_start=False). {kept}"
            )
        dtype = str(self._model_dtype).replace("torch.", "")
        return (
            f"The training loss is {batch_loss.item()} before any update: the data (largest "
            f"magnitude {float(target.abs().max()):.3g}) overflow the model's {dtype} "
            "arithmetic. Scale the data (e.g. sklearn.preprocessing.StandardScaler or "
            f"MinMaxScaler) or use compute_dtype='float64'. {kept}"
        )

    def _parameters_finite(self):
        # One check of all parameters at once: it runs at every transform and score.
        parameters = [
            p.detach().reshape(-1)
            for m in self._modules()
            if isinstance(m, torch.nn.Module)
            for p in m.parameters()
        ]
        return not parameters or bool(torch.isfinite(torch.cat(parameters)).all())

    def _check_usable(self):
        """Refuse to encode with a parameter that ``set_params`` put out of range after
        ``fit`` (the flow reads them at every encoding, and would fail deep inside), or with
        a model whose weights are not finite (it would give zeros)."""
        self._validate_params()
        if not self._parameters_finite():
            raise ValueError(
                f"This {type(self).__name__}'s weights are not all finite (NaN or inf), so it "
                "cannot encode or score data: refit it, or load a model saved before it broke."
            )

    # -- inference ------------------------------------------------------------------------

    def _tensor(self, rows):
        """Dense torch rows shaped ``(n, *sample_shape)`` on the model's device and dtype."""
        rows = rows.toarray() if sp.issparse(rows) else rows
        tensor = torch.tensor(np.asarray(rows), dtype=self._model_dtype, device=self.device_)
        return tensor.reshape(tensor.shape[0], *self._sample_shape)

    def _map_batches(self, X, fn):
        """``fn`` on chunks of rows of ``X`` (dense or sparse), concatenated on the CPU."""
        step = max(self.batch_size, INFERENCE_BATCH_SIZE)
        with torch.no_grad(), torch_threads(self.n_threads):
            chunks = [
                fn(self._tensor(X[start : start + step])).cpu().numpy()
                for start in range(0, X.shape[0], step)
            ]
        return np.concatenate(chunks)

    def _inference_options(self):
        """Keyword arguments of ``_encode`` that hold for a whole call (not per batch)."""
        return {}

    def _score_batches(self, X):
        options = self._inference_options()
        return -self._map_batches(
            X, lambda target: self._encode(target, with_loss=True, **options)[1]
        )

    def transform(self, X: MatrixLike) -> np.ndarray:
        """Encode ``X`` into the latent space.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
            In the dtype of ``X`` (float32 or float64).
        """
        return self._transform(X)

    def _transform(self, X, **encode_options):
        """``transform`` with further options for ``_encode`` (a prior on the codes, say)."""
        check_is_fitted(self)
        self._check_usable()
        X = self._validate_X(X, reset=False)
        if self._transform_uses_loss:
            X = self._clipped_to_target_range(X)
        encode_options = {**self._inference_options(), **encode_options}
        codes = self._map_batches(
            X, lambda target: self._encode(target, with_loss=False, **encode_options)[0]
        )
        self._check_finite_output(codes, X, "codes")
        return codes.astype(X.dtype, copy=False)

    def _check_finite_output(self, values, X, what):
        if not np.isfinite(values).all():
            raise ValueError(
                f"{type(self).__name__} produced non-finite {what}: the data (largest magnitude "
                f"{float(abs(X).max()):.3g}) overflow the model's "
                f"{str(self._model_dtype).replace('torch.', '')} arithmetic. Scale the data the "
                "way the training data were scaled, or refit the model with "
                "compute_dtype='float64'."
            )

    @renamed_argument("Z", "X", since="0.10.0", removed_in="0.12.0")
    def inverse_transform(self, X: ArrayLike) -> np.ndarray:
        """Decode codes into data space (probabilities where ``loss_`` is ``'bce'``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Codes, as ``transform`` returns them. Named ``Z`` before 0.10.0; ``Z=`` still
            works, with a ``FutureWarning``, until 0.12.0.

        Returns
        -------
        X_original : ndarray of shape (n_samples, `n_features_in_`)
            In the dtype of ``X`` (float32 or float64).
        """
        check_is_fitted(self)
        self._check_usable()
        Z = check_array(readable_by_numpy(X), dtype=[np.float32, np.float64], input_name="X")
        self._check_codes_fit(Z)
        if Z.shape[1] != self._n_latent:
            raise ValueError(
                f"X has {Z.shape[1]} columns, but {type(self).__name__} encodes into "
                f"n_components={self._n_latent}: inverse_transform decodes codes."
            )
        to_data = LOSSES[self.loss_].to_data
        step = max(self.batch_size, INFERENCE_BATCH_SIZE)

        decoder = padded_mlp(self.decoder_)

        def decode(codes):
            return to_data(decoder(codes)).reshape(codes.shape[0], -1)

        with torch.no_grad(), torch_threads(self.n_threads):
            chunks = []
            for start in range(0, Z.shape[0], step):
                codes = torch.tensor(
                    Z[start : start + step], dtype=self._model_dtype, device=self.device_
                )
                # Row counts that round every row alike: a row decodes the same in any batch.
                decoded = invariant_rowwise(
                    decode,
                    codes,
                    chunk=self._row_chunk(self.decoder_),
                    owner=self.decoder_,
                    probe=(probe_codes(self._n_latent, codes),),
                    key=(to_data,),
                )
                chunks.append(decoded.cpu())
        decoded = torch.cat(chunks).numpy()
        if not np.isfinite(decoded).all():
            self._refuse_codes(Z, "decoding them overflowed")
        return decoded.astype(Z.dtype, copy=False)

    def _check_codes_fit(self, Z):
        """Refuse codes the model's dtype cannot hold (1e300 is inf in float32, decoded NaN)."""
        if Z.size and np.abs(Z).max() > torch.finfo(self._model_dtype).max:
            self._refuse_codes(Z, "they do not fit")

    def _refuse_codes(self, Z, problem):
        dtype = str(self._model_dtype).replace("torch.", "")
        raise ValueError(
            f"{type(self).__name__} cannot decode the codes X (largest magnitude "
            f"{float(np.abs(Z).max()):.3g}): {problem} the model's {dtype} arithmetic (largest "
            f"value {torch.finfo(self._model_dtype).max:.3g}). Codes from transform are in "
            "range; to decode larger ones, refit with compute_dtype='float64'."
        )

    def score_samples(self, X: MatrixLike) -> np.ndarray:
        """Minus each sample's reconstruction loss (higher is better).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        self._check_usable()
        X = self._validate_X(X, reset=False)
        X = self._clipped_to_target_range(X)
        scores = self._score_batches(X)
        self._check_finite_output(scores, X, "scores")
        return scores.astype(X.dtype, copy=False)

    def score(self, X: MatrixLike, y: None = None) -> float:
        """Minus the mean per-sample reconstruction loss (higher is better).

        Where ``loss_`` is ``'bce'`` this is minus the papers' mean cross-entropy.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        return float(np.mean(self.score_samples(X), dtype=np.float64))
