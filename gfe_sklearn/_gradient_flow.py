"""``GradientFlowEncoder``: a decoder-only encoder that encodes by integrating a gradient flow."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from functools import partial
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._autoencoder import AutoEncoderBaseline
from ._base import BaseFlowEstimator, build_mlp
from ._device import resolve_device, torch_threads
from ._distil import distil_encoder
from ._fitted_state import FITTED_FIELDS, FittedField, started, taken_over
from ._model_file import ModelFileError
from ._record_checks import is_numbers
from .flow import (
    ADJOINTS,
    ALPHAS,
    FLOWS,
    GRIDS,
    LOSSES,
    SOLVERS,
    STOP_RULES,
    FlowResult,
    check_combination,
    encode,
    endpoint_conflicts,
    solver_options,
)
from .flow._losses import gaussian_code_penalty, sum_of_penalties
from .flow._rows import invariant_rowwise, padded_mlp, probe_rows
from .nn import make_decoder, make_encoder

if TYPE_CHECKING:
    from ._typing import Device, MatrixLike, RandomStateLike

# What from_autoencoder takes over from the autoencoder.
MODEL_PARAMETERS = (
    "n_components",
    "hidden_layer_sizes",
    "activation",
    "loss",
    "decoder",
    "device",
    "random_state",
    "verbose",
)

# Where each sample's flow starts in transform: a distilled encoder's guess, or the origin;
# 'auto' refines the guess with L-BFGS in the coordinates of the training codes' mean
# Hessian (code_metric_), each sample until a step gains less than fit measured on held-out
# rows (refine_min_decrease_) or at fit's cap (refine_max_evals_), where that keeps the
# zero start's precision (docs/performance.md), and starts at the origin elsewhere.
CODE_INITS = ("auto", "encoder", "zeros")

# How fast the standardisation of the codes the encoder learns follows the training codes
# (an exponential average over batches, as batch normalisation's running statistics).
CODE_STATS_MOMENTUM = 0.1

# Solver options exposed as flat estimator parameters; each solver receives the ones it takes.
SOLVER_PARAMETERS = (
    "beta",
    "s0",
    "s_min",
    "s_max",
    "kappa",
    "max_backtracks",
    "n_steps",
    "grid",
    "rtol",
    "atol",
    "max_steps",
)

# The solvers' options that are not parameters of their own, with the values each may take:
# solver_options sets them. With SOLVER_PARAMETERS they are every option of every solver.
SOLVER_OPTIONS = {
    # L-BFGS: step pairs kept, first step's length in code space, Armijo fraction, backtracking
    # factor. Its pair matrices grow with history squared per sample, and past a few dozen
    # pairs nothing is gained: 1000 keeps a mistyped value from exhausting memory.
    "history": Interval(Integral, 1, 1000, closed="both"),
    "first_step": Interval(Real, 0, None, closed="neither"),
    "armijo": Interval(Real, 0, 1, closed="neither"),
    "shrink": Interval(Real, 0, 1, closed="neither"),
    # The loss decrease per step below which L-BFGS stops a sample (0: never).
    "min_decrease": Interval(Real, 0, None, closed="left"),
    # The decoder evaluations after which L-BFGS stops a sample (its start's included).
    "max_evals": Interval(Integral, 1, None, closed="left"),
    # Dormand-Prince's step-size controller: safety factor, smallest and largest change.
    "safety": Interval(Real, 0, 1, closed="right"),
    "min_factor": Interval(Real, 0, 1, closed="right"),
    "max_factor": Interval(Real, 1, None, closed="left"),
}

# The solver training used, 'auto' resolved once per fit; files from before 0.10.0 lack it,
# and their models trained with what their parameters resolve to.
SOLVER_FIELD = FittedField(
    "solver_",
    "solver",
    "fit",
    lambda v: isinstance(v, str) and v in SOLVERS,
    start=lambda estimator: estimator._resolve_solver(),
    since="0.10.0",
)


def _is_spread(value):
    return value is None or (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and bool(np.isfinite(value))
        and value >= 0
    )


# The running mean square of training's codes under code_prior, which sizes the prior; None
# before a training flow with the prior has run (and in files from before 0.10.0).
CODE_SPREAD_FIELD = FittedField(
    "code_mean_square_",
    "code_mean_square_",
    "training",
    _is_spread,
    start=lambda _: None,
    since="0.10.0",
    write=lambda value, _: None if value is None else float(value),
)


# Whether the last training call distilled the encoder on its final decoder's codes; files
# from before 0.10.0 lack it, and their models encode from z = 0 under code_init='auto'.
DISTILLED_FIELD = FittedField(
    "encoder_distilled_",
    "encoder_distilled",
    "fit",
    lambda v: isinstance(v, bool),
    start=lambda _: False,
    since="0.10.0",
)


def _is_metric(value):
    if value is None:
        return True
    if not (isinstance(value, list) and value and all(is_numbers(row) for row in value)):
        return False
    if any(len(row) != len(value) for row in value):
        return False
    try:
        return all(math.isfinite(float(v)) for row in value for v in row)
    except OverflowError:  # an int beyond float's range
        return False


def _read_metric(saved, estimator, tensors, source):
    if saved is None:
        return None
    if len(saved) != estimator._n_latent:
        raise ModelFileError(
            f"{source}: fitted attribute code_metric is {len(saved)} x {len(saved)}, but the "
            f"model's codes have {estimator._n_latent} components."
        )
    return np.asarray(saved, dtype=np.float64)


# The search coordinates of code_init='auto''s refinement (fitted with the distillation);
# None where the guess is not used, and in files from before 0.10.0.
METRIC_FIELD = FittedField(
    "code_metric_",
    "code_metric",
    "fit",
    _is_metric,
    start=lambda _: None,
    since="0.10.0",
    write=lambda value, _: None if value is None else np.asarray(value, float).tolist(),
    read=_read_metric,
)


# When code_init='auto''s refinement stops a sample (fit measures both): the smallest step
# decrease on which it goes on (0: none) and its cap on the decoder evaluations (None:
# none); None where no guess is used.
REFINE_FIELD = FittedField(
    "refine_min_decrease_",
    "refine_min_decrease",
    "fit",
    lambda v: v is None or (isinstance(v, float) and math.isfinite(v) and v >= 0),
    start=lambda _: None,
    since="0.10.0",
)
REFINE_CAP_FIELD = FittedField(
    "refine_max_evals_",
    "refine_max_evals",
    "fit",
    lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
    start=lambda _: None,
    since="0.10.0",
)


class GradientFlowEncoder(BaseFlowEstimator):
    """Gradient flow encoding (GFE): a decoder whose codes are found by a gradient flow.

    No encoder network is trained with the decoder. A sample ``y`` is encoded by
    integrating ``dz/dt = -grad_z l(y, D(z))`` from ``z = 0`` up to time ``tau`` (or
    Nesterov's second-order flow), separately for every sample; training updates the
    decoder ``D`` on the loss at those codes (Flouris et al., 2024). ``transform`` finds the
    codes of new data on the trained decoder the same way, by default from the guess of an
    encoder network distilled after training, refined for a few steps (``code_init``); a
    sample's code is the same whether it is encoded alone or in a batch.

    Parameters
    ----------
    n_components : int, default=20
        Dimension of the latent code.
    hidden_layer_sizes : tuple of int, default=(150, 300, 600)
        Hidden widths of the MLP decoder from the latent side to the data side (the papers'
        MNIST decoder is ``20 -> 150 -> 300 -> 600 -> 784``). Ignored with ``decoder``.
    activation : {'elu', 'relu', 'leaky_relu', 'gelu', 'silu', 'softplus', 'tanh', \
'sigmoid', 'identity'}, default='elu'
        Nonlinearity between the decoder's linear layers.
    loss : {'auto', 'bce', 'mse'}, default='auto'
        Per-sample reconstruction loss, the mean over features. ``'bce'`` is the papers'
        cross-entropy: ``X`` must lie in ``[0, 1]`` (e.g. after ``MinMaxScaler(clip=True)``)
        and the decoder emits logits. ``'mse'`` takes any finite data. ``'auto'`` chooses
        at a model's first fit (``fit``, or the first ``partial_fit``): ``'bce'`` where every
        observed (non-NaN) entry of ``X`` lies in ``[0, 1]`` (up to rounding, 1e-6), so
        images train as the papers' models do, and ``'mse'`` otherwise. Continued training
        (``warm_start``, later ``partial_fit`` calls) keeps the choice; ``loss_`` records it.
    allow_nan : bool, default=False
        Treat NaN entries of ``X`` as missing instead of refusing them. The flow's loss, the
        training loss and ``score`` then use each sample's observed entries only (their mean,
        so a sample with few observations weighs as much as a complete one), ``fit`` trains
        on incomplete samples, and ``inverse_transform`` reconstructs every entry, missing
        ones included (``GradientFlowImputer`` fills them in). A sample needs at least one
        observed entry. Off by default: a NaN is then more often a bug upstream than a gap.
    fit_hide_fraction : float in [0, 1), default=0.0
        Trains the decoder to predict entries its codes were not found from. In ``fit``, the
        flow of each training sample sees only part of its observed entries: each is hidden
        from the flow with a probability drawn per sample, uniformly from
        ``[0, fit_hide_fraction]``, and the decoder is trained on the loss over all observed
        entries at the code found from the rest (a sample keeps at least one entry in view).
        The codes of incomplete samples then fill in their missing entries better, since
        codes found from few entries no longer fit those alone: use it for imputation
        (``GradientFlowImputer``) and for encoding samples with gaps, with codes taken at
        the flow's endpoint (``'lbfgs'``; a short ``tau`` already keeps codes near their
        start, and gained nothing from it). 0 (the default) shows the flow every observed
        entry, as the papers do. Works with and without ``allow_nan``.
    code_init : {'auto', 'encoder', 'zeros'}, default='auto'
        Where the flow of each sample starts in ``transform``, ``score`` and
        ``flow_diagnostics``. ``'zeros'``: at ``z = 0``, the papers' definition.
        ``'encoder'``: at the guess of an encoder network (the mirror image of the MLP
        decoder) trained to predict the codes (semi-amortised inference): alongside the
        decoder on the training flows' codes, then, once ``fit`` has trained the decoder,
        on the codes ``transform`` gives the training rows at ``fit_stop_tol`` (at least 30
        epochs; ``fit`` encodes its rows once more for it; ``partial_fit`` skips this
        step). The flow then refines the guess to a minimum of the sample's loss, or for
        ``max_steps`` steps (L-BFGS in the coordinates of ``code_metric_``). ``'auto'``: the
        encoder's guess refined by L-BFGS in those coordinates, each sample until a step
        after its first lowers its loss by less than ``refine_min_decrease_`` or after
        ``refine_max_evals_`` decoder evaluations, which ``fit`` measures on training rows
        held out of the distillation; where that was measured to keep the zero start's
        precision: with a prior on the codes (``code_prior > 0``), ``'lbfgs'`` as the
        solver, and an encoder that ``fit`` distilled (``encoder_distilled_``); from ``z =
        0`` otherwise, e.g. after ``partial_fit``, whose rows are one chunk of a stream, or
        with ``code_prior=0``, where the guesses are far less precise (``fit`` then skips
        the distillation). On MNIST, Fashion-MNIST and digits the refinement ends within
        0.001 of the zero start's cross-entropy at a fifth of its evaluations or fewer, and
        its codes serve a classifier better (docs/performance.md, docs/results.md). Training
        flows start at ``z = 0`` either way, and the encoder's training changes neither the
        decoder nor ``loss_curve_``. Set when the model is fitted: a model fitted with
        ``'zeros'`` has no encoder, and ``set_params(code_init='zeros')`` on one fitted with
        another setting encodes from ``z = 0`` again. ``'auto'`` is the default since 0.10
        (``'zeros'`` before).
    code_prior : float >= 0, default=0.1
        Weight of a Gaussian prior on the codes, in the flows of ``fit`` and of
        ``transform``, ``score`` and ``flow_diagnostics`` alike: each flow minimises the
        sample's mean loss per entry plus ``code_prior * ||z||^2 / (2 v)`` divided by its
        number of (observed) entries, so its endpoint is a MAP code under ``N(0, v I)``. The
        variance ``v`` is ``max(1, code_mean_square_)``, the running mean square of the
        training flows' codes: a young decoder reconstructs only from codes far from 0, and a
        prior of the standard normal's width would hold them back and slow what it learns;
        sized by the codes, the prior draws them in as the decoder learns, and is the
        standard normal once they are within its scale (a new model's first batch flows
        without it). The prior pins the directions in which the loss is flat, where codes
        otherwise drift far from 0 and carry no information: it gives codes that serve a
        classifier far better, with flows about 40% shorter, at a reconstruction within 2%
        of the prior-free model's (docs/results.md, "A prior sized by the codes").
        ``score``, ``score_samples`` and ``loss_curve_`` report the reconstruction loss
        alone. 0 is the papers' flow (the default before 0.10).
    solver : {'auto', 'lbfgs', 'amd', 'euler', 'rk4', 'dopri5'}, default='auto'
        How the codes are found. ``'lbfgs'``: per-sample L-BFGS, which goes straight to the
        gradient flow's endpoint in far fewer decoder evaluations than integrating the flow
        (with ``flow='gradient'``, ``adjoint='approx'``, ``stop_rule='code'``,
        ``alpha='constant'`` and ``tau='auto'``). Or an integrator of the flow itself: the
        papers' adaptive minimise-distance solver ``'amd'`` (steps picked by backtracking on
        the loss, the papers' GFE-amd), fixed-grid Euler or RK4, or adaptive Dormand-Prince;
        these follow the flow's path, which the Nesterov flow, the full or unrolled adjoint,
        the loss stop rule and a finite horizon ``tau`` need. ``'auto'`` is ``'lbfgs'``
        where the other settings allow it and ``'amd'`` otherwise, so that e.g.
        ``flow='nesterov'`` alone works (docs/performance.md compares them).
    flow : {'gradient', 'nesterov'}, default='gradient'
        First-order gradient flow or Nesterov's accelerated second-order flow.
    adjoint : {'approx', 'full', 'unrolled'}, default='approx'
        How training differentiates through the codes: ``'approx'`` treats them as constants
        (the papers' choice, one backward pass), ``'full'`` is the exact discrete adjoint,
        ``'unrolled'`` backpropagates through every step.
    tau : 'auto' or float, default='auto'
        Horizon of the flow; most samples stop earlier, at their endpoint (``stop_rule``).
        ``'auto'`` is 1e5 for ``'amd'`` and 1000 for the other solvers. A young decoder's
        codes keep drifting long after their loss looks flat, and a decoder trained on
        codes taken further along the flow learns more per image; AMD's line search keeps
        such long flows safe, where the steps of a fixed grid would grow unstable
        (docs/precision.md).
    alpha : {'constant', 'exp'}, default='constant'
        Time scaling of the gradient; ``'exp'`` (``exp(-2t/tau)``) needs a solver other
        than ``'amd'``.
    stop_rule : {'code', 'loss'}, default='code'
        When a sample has reached its flow's endpoint. ``'code'``: once the distance its
        code has left to move, estimated from how its speed decays over the last
        ``stop_window`` steps, is below ``stop_tol * max(|z|, 1)``, so codes come out
        within about ``stop_tol`` (relative) of the endpoint. ``'loss'``: once its loss
        falls by less than ``stop_tol`` (relative) per unit of flow time, the rule of
        versions before 0.2, which stops early where the loss at the optimum is large.
    stop_tol : float, default=1e-4
        Tolerance of the stop rule for ``transform``, ``score`` and the codes of
        ``inverse_transform``; 0 integrates to ``tau``.
    fit_stop_tol : float, default=1e-2
        The same for the encodings of training batches in ``fit``: the decoder learns as
        much from codes within 1% of their endpoints as from tighter ones, at about half the
        decoder evaluations (docs/performance.md; the papers' experiments use 1e-3).
    fit_max_steps : int or None, default=25
        Accepted steps after which ``'lbfgs'`` stops the encoding of a training sample (None:
        ``max_steps``); only read by a solver that goes straight to the flow's endpoint
        (``'lbfgs'``). Most samples reach
        ``fit_stop_tol`` sooner; the slowest few of a batch would otherwise run on for as
        many steps again, in a batch too thin to use the CPU, and the decoder learns as much
        without them (docs/performance.md). ``transform`` is not capped by it.
    stop_window : int, default=5
        Accepted steps over which the stop rule measures the flow.
    nesterov_eps : float, default=1e-2
        The ``eps`` in the Nesterov friction ``3 / (t + eps)``.
    beta, s0, s_max, kappa, max_backtracks : float, float, float, float, int, \
default=0.75, 1.0, 1000.0, 1.1, 30
        AMD constants: backtracking factor, first trial step, largest trial step, step
        growth factor, and backtracks before a sample counts as stationary. The papers cap
        steps at 10; a young decoder's flow accepts far larger ones, and the cap then
        decides how much flow time a budget of evaluations covers (docs/precision.md).
    s_min : float or None, default=0.0
        AMD's floor under each later trial step, ``max(kappa * previous step, s_min)``.
        None uses ``s0``, as the papers do: once a trained decoder's stable step falls
        below that floor, every step first tries it and backtracks, which costs 5-7x the
        decoder evaluations for the same codes (Fashion-MNIST, docs/engine.md) and the
        same test loss (docs/results.md). With 0 each trial step grows by ``kappa`` from
        the last accepted one.
    n_steps : int, default=100
        Steps of the fixed-grid solvers (``'euler'``, ``'rk4'``).
    grid : {'log', 'linear'}, default='log'
        Fixed grid spacing: geometric (fine near ``t = 0``) or even.
    rtol, atol : float, default=1e-5, 1e-6
        Error tolerances of ``'dopri5'``.
    max_steps : int, default=1000
        Attempted steps per sample after which ``'dopri5'`` gives up (stiff flow), and
        accepted steps after which ``'lbfgs'`` stops.
    solver_options : dict or None, default=None
        The solvers' few remaining options, which are not parameters of their own; each
        solver reads the keys it takes, as it reads the parameters above. L-BFGS:
        ``history=10`` (step pairs it keeps, at most 1000), ``first_step=1.0`` (length of
        its first step in code space; from the distilled guess, in the coordinates of
        ``code_metric_``, half that many Newton steps of the mean Hessian), ``armijo=1e-4``
        (the sufficient-decrease fraction), ``shrink=0.5`` (the longest retry after a
        rejected step, as a fraction of it), ``min_decrease=0.0`` (a sample stops once a
        step after its first lowers its loss by less) and ``max_evals=None`` (a sample
        stops after that many decoder evaluations, its start's included); under
        ``code_init='auto'`` these replace ``refine_min_decrease_`` and
        ``refine_max_evals_``.
        Dormand-Prince: ``safety=0.9``, ``min_factor=0.2`` and ``max_factor=10.0`` of its
        step-size controller. Unknown keys are refused, naming the ones it takes. Set it
        whole: ``GridSearchCV`` searches over dicts, e.g. ``{"solver_options": [None,
        {"history": 20}]}``.
    optimizer : {'rmsprop', 'adam'}, default='rmsprop'
        Optimizer of the decoder; RMSprop uses the papers' ``alpha=0.9, eps=1e-6``.
    learning_rate : float, default=2e-3
        Learning rate of the decoder's optimizer; the papers use 5e-4 with batches of 5.
    batch_size : int, default=128
        Minibatch size. Each batch's codes are found together, so larger batches spread the
        per-step overhead of the solver over more samples; with the learning rate scaled to
        match, 128 learns as much per epoch as 32 in a fraction of the time
        (docs/performance.md). The papers use 5 on MNIST.
    max_iter : int, default=10
        Maximum epochs; training also ends once the loss stops improving by ``tol``. An
        epoch costs tens of autoencoder epochs (each batch is encoded by tens of decoder
        passes), but the decoder learns far more from each one: on digits ten epochs reach
        a lower held-out loss than the autoencoder's two hundred, in less time, and the next
        ten improve it by about 2% (docs/performance.md). Raise it when the
        ``ConvergenceWarning`` says training was still improving and time allows.
    max_samples : int, default=None
        Stop once this call to ``fit`` has trained on this many images (counted with
        repetition, the x-axis of the papers' figures), without a ``ConvergenceWarning``.
    tol : float, default=1e-4
        Improvement of the training loss (or validation score) that counts as progress.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of ``X``, track its score after each epoch, stop
        when it stalls and keep the best decoder.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=3
        Training stops after more than this many epochs in a row without progress of
        ``tol``. Fewer than the autoencoder's 10: a GFE epoch costs far more, and with 10
        the default ``max_iter`` could never end on a plateau.
    warm_start : bool, default=False
        Continue training the fitted decoder on the next ``fit`` instead of starting over.
    decoder : torch.nn.Module, default=None
        A decoder to train instead of the MLP, e.g. a convolutional one. It maps codes
        ``(n, n_components)`` to ``(n, *sample_shape)`` with ``n_features`` values per sample
        (logits for ``'bce'``) and treats rows independently in eval mode (no batch
        statistics). ``X`` stays 2-D: its rows are reshaped to ``sample_shape`` (C order) to
        be compared with the output. ``fit`` trains a deep copy moved to ``device_`` and
        ``compute_dtype``, starting from the module's own weights; the module passed is
        unchanged.
    device : str, default='auto'
        ``'auto'`` (CUDA, else MPS, else CPU), ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'mps'``.
        Resolved at ``fit``; nothing touches CUDA before.
    compute_dtype : {'float32', 'float64'} or None, default='float32'
        The floating-point type of the model and its arithmetic, chosen when the model is
        created (``fit``, or the first ``partial_fit``; continued training keeps it).
        float32 fits faster than float64 on a CPU and far faster on most GPUs, at the same
        held-out loss and with codes as close to the flow's endpoint (docs/performance.md).
        ``'float64'`` is for data beyond float32's range or precision; None follows the
        training data: float64 data train a float64 model, anything else a float32 one (MPS
        has no float64). The outputs of ``transform``, ``inverse_transform`` and
        ``score_samples`` keep the dtype of their input either way.
    n_threads : int or None, default=1
        torch's intra-op CPU threads while fitting and encoding, set for each call and
        restored after; -1 uses every CPU, -2 all but one; None leaves torch's setting
        alone. The solvers' many small operations gain little from more threads on a quiet
        machine and lose several times over when another busy process shares the cores
        (docs/performance.md); raise it for large decoders or batches on an otherwise idle
        machine, and parallelise over fits instead (``GridSearchCV(n_jobs=...)``).
    random_state : int, RandomState instance or None, default=None
        Seeds the decoder's initial weights (through a local ``torch.Generator``) and the
        shuffling; an int makes ``fit`` and ``transform`` bit-reproducible on the CPU.
    verbose : int, default=0
        1 prints a line per epoch (loss, images seen, time); 2 adds a progress bar per epoch.
        In data-parallel training rank 0 alone prints.
    distributed : {'auto', True, False}, default='auto'
        Data-parallel training when a ``torch.distributed`` process group is initialised
        (as under ``torchrun``): every rank calls ``fit`` or ``partial_fit`` with the same
        ``X`` and parameters and encodes its share of each batch of ``batch_size`` rows;
        the gradients are combined so that every rank ends with the same weights, those of
        the one-process fit up to float rounding (which training amplifies, in float32 as
        much as a change of ``n_threads`` does). ``device='auto'`` or ``'cuda'`` puts each
        rank on its own GPU (``LOCAL_RANK``), and ``save`` writes on rank 0 only
        (docs/scaling.md). ``'auto'`` trains data-parallel in a group of two ranks or more
        and alone otherwise; ``True`` refuses to fit without a group; ``False`` trains
        each rank's model alone, on its own data, in a group or not.

    Attributes
    ----------
    decoder_ : torch.nn.Module
        The trained decoder, in eval mode, on ``device_``.
    encoder_ : torch.nn.Sequential
        With ``code_init='encoder'`` or ``'auto'``: the MLP whose output, times its buffer
        ``code_scale`` plus ``code_mean`` (the training codes' running spread and mean), is
        where each sample's flow starts in ``transform``. Trained with the decoder's
        optimizer on the squared distance to the standardised training codes, then (``fit``
        only) with its own Adam on that distance to the standardised codes ``transform``
        gives the training rows at ``fit_stop_tol``, whose mean and spread the buffers then
        hold.
    encoder_distilled_ : bool
        Whether the last ``fit`` or ``partial_fit`` call ended by distilling ``encoder_`` on
        the final decoder's codes (``fit`` does, ``partial_fit`` does not, and with
        ``code_init='auto'`` ``fit`` does only where the guess will be used):
        ``code_init='auto'`` starts from the guess only then.
    code_metric_ : ndarray of shape (n_components, n_components) or None
        Set with the distillation: ``P`` with ``P P^T`` the inverse of the mean Hessian of
        the flow's loss at the codes of the first 256 training rows. L-BFGS refines the
        encoder's guess in the coordinates ``u`` of ``z = guess + P u``, where the loss is
        about equally curved in every direction. None where no guess is used, and where the
        decoder has no second derivative (``'auto'`` then refines in code coordinates).
    refine_min_decrease_, refine_max_evals_ : float or None, int or None
        Set with the distillation: under ``code_init='auto'`` L-BFGS stops refining a
        sample's guess once a step after its first lowers its loss by less than
        ``refine_min_decrease_``, or after ``refine_max_evals_`` decoder evaluations (its
        start's included; None: no cap). ``fit`` holds one in eight training rows (at most
        512, drawn at random) out of the distillation and takes the largest decrease at
        which their mean flow loss ends within 3.75e-4 of their flows' from ``z = 0``
        (values falling by ``2 ** (1/4)`` from 0.002), then the fewest evaluations that
        keep it within 5e-4: a batch waits for its slowest sample. 0 and None, refine to
        the stop rule, where no decrease does or fewer than 256 rows were fitted. None
        where no guess is used.
    optimizer_ : torch.optim.Optimizer
    loss_ : {'bce', 'mse'}
        The loss the model trains, encodes, scores and decodes with: ``loss``, with
        ``'auto'`` resolved at the first fit. A ``loss`` set after fitting takes effect at
        the next ``fit`` that builds a new model (a bce decoder emits logits, which another
        loss would read as wrong data).
    code_mean_square_ : float or None
        The running mean square of the codes of training's flows (an exponential average
        over batches), which sizes the prior of ``code_prior``; None for a model that never
        trained with a prior, which encodes with the standard normal if one is set.
    device_ : str
    solver_ : str
        The solver training used: ``solver``, with ``'auto'`` resolved (once per ``fit`` or
        ``partial_fit``). ``transform`` resolves ``solver`` with the settings of its call,
        which ``set_params`` may have changed since.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined when ``X`` has string column names.
    n_iter_ : int
        Epochs trained since the model was created (``warm_start`` fits and ``partial_fit``
        calls add theirs).
    n_samples_seen_ : int
        Images trained on since the model was created, with repetition.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    validation_scores_ : list of float or None
        Validation score (minus the mean loss) after each epoch with ``early_stopping``.

    See Also
    --------
    AutoEncoderBaseline : the same decoder trained with a mirror-image encoder.

    Notes
    -----
    The torch model computes in float32 whatever the data's dtype (``compute_dtype``), and
    outputs come back in the dtype of the input. Ask for float64 only where the data need
    it: on consumer GPUs its throughput is a small fraction of float32's.

    With ``allow_nan=True`` a sample's code depends on its observed entries alone, so
    encoding a masked sample gives the same code as encoding only its observed features with
    a decoder restricted to them; see ``make_hidden_entry_scorer`` to choose settings by how
    well hidden entries are predicted.

    ``loss='bce'`` needs data in ``[0, 1]`` (the flow's target is the sample itself).
    ``fit`` refuses data outside it, and so does continued training of a model for which
    ``loss='auto'`` chose ``'bce'``; ``transform`` and ``score`` clip them into it with a
    ``DataConversionWarning`` that says how many values were clipped and by how much, since
    a ``MinMaxScaler`` fitted on other rows maps new data slightly outside ``[0, 1]``.
    ``MinMaxScaler(clip=True)`` keeps them inside and avoids the warning.

    References
    ----------
    K. Flouris, A. Volokitin, G. Bredell, E. Konukoglu. Explicit and data-efficient encoding
    via gradient flow. NeurIPS 2024 workshop on Machine Learning and the Physical Sciences.

    Examples
    --------
    >>> import numpy as np
    >>> from gfe_sklearn import GradientFlowEncoder
    >>> X = np.random.RandomState(0).uniform(size=(40, 8))
    >>> gfe = GradientFlowEncoder(n_components=2, hidden_layer_sizes=(16,), max_iter=2,
    ...                           device="cpu", random_state=0)
    >>> gfe.fit_transform(X).shape
    (40, 2)
    >>> gfe.inverse_transform(gfe.transform(X[:3])).shape
    (3, 8)

    With ``allow_nan=True``, NaN marks entries that are missing; they are reconstructed:

    >>> X_missing = X.copy()
    >>> X_missing[0, :4] = np.nan
    >>> gfe = GradientFlowEncoder(n_components=2, hidden_layer_sizes=(16,), max_iter=2,
    ...                           allow_nan=True, device="cpu", random_state=0).fit(X_missing)
    >>> bool(np.isfinite(gfe.inverse_transform(gfe.transform(X_missing[:1]))).all())
    True
    """

    _parameter_constraints = {
        **BaseFlowEstimator._parameter_constraints,
        "solver": [StrOptions(set(SOLVERS) | {"auto"})],
        "flow": [StrOptions(set(FLOWS))],
        "adjoint": [StrOptions(set(ADJOINTS))],
        "tau": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "alpha": [StrOptions(set(ALPHAS))],
        "stop_rule": [StrOptions(set(STOP_RULES))],
        "stop_tol": [Interval(Real, 0, None, closed="left")],
        "fit_stop_tol": [Interval(Real, 0, None, closed="left")],
        "stop_window": [Interval(Integral, 1, None, closed="left")],
        "nesterov_eps": [Interval(Real, 0, None, closed="neither")],
        "beta": [Interval(Real, 0, 1, closed="neither")],
        "s0": [Interval(Real, 0, None, closed="neither")],
        "s_min": [Interval(Real, 0, None, closed="left"), None],
        "s_max": [Interval(Real, 0, None, closed="neither")],
        "kappa": [Interval(Real, 0, None, closed="neither")],
        "max_backtracks": [Interval(Integral, 0, None, closed="left")],
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "grid": [StrOptions(set(GRIDS))],
        "rtol": [Interval(Real, 0, None, closed="neither")],
        "atol": [Interval(Real, 0, None, closed="neither")],
        "max_steps": [Interval(Integral, 1, None, closed="left")],
        "fit_max_steps": [Interval(Integral, 1, None, closed="left"), None],
        "allow_nan": ["boolean"],
        "fit_hide_fraction": [Interval(Real, 0, 1, closed="left")],
        "code_init": [StrOptions(set(CODE_INITS))],
        "solver_options": [dict, None],
        "code_prior": [Interval(Real, 0, None, closed="left")],
    }

    _transform_uses_loss = True
    _recorded_since = {"code_init": CODE_INITS}
    _fitted_fields = (
        *FITTED_FIELDS,
        SOLVER_FIELD,
        CODE_SPREAD_FIELD,
        DISTILLED_FIELD,
        METRIC_FIELD,
        REFINE_FIELD,
        REFINE_CAP_FIELD,
    )
    _weight_statistics = ("code_mean_square_",)
    # Models saved before these parameters existed stopped on their loss curves, trained
    # without a step cap on their training flows, and encoded from z = 0.
    _values_before_parameter = {
        **BaseFlowEstimator._values_before_parameter,
        "stop_rule": "loss",
        "fit_max_steps": None,
        "fit_hide_fraction": 0.0,
        "code_prior": 0.0,
        "code_init": "zeros",
    }

    def __init__(
        self,
        *,
        n_components: int = 20,
        hidden_layer_sizes: int | Sequence[int] = (150, 300, 600),
        activation: str = "elu",
        loss: str = "auto",
        solver: str = "auto",
        flow: str = "gradient",
        adjoint: str = "approx",
        tau: float | str = "auto",
        alpha: str = "constant",
        stop_rule: str = "code",
        stop_tol: float = 1e-4,
        fit_stop_tol: float = 1e-2,
        fit_max_steps: int | None = 25,
        stop_window: int = 5,
        nesterov_eps: float = 1e-2,
        beta: float = 0.75,
        s0: float = 1.0,
        s_min: float | None = 0.0,
        s_max: float = 1000.0,
        kappa: float = 1.1,
        max_backtracks: int = 30,
        n_steps: int = 100,
        grid: str = "log",
        rtol: float = 1e-5,
        atol: float = 1e-6,
        max_steps: int = 1000,
        solver_options: dict[str, float] | None = None,
        optimizer: str = "rmsprop",
        learning_rate: float = 2e-3,
        batch_size: int = 128,
        max_iter: int = 10,
        max_samples: int | None = None,
        tol: float = 1e-4,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 3,
        warm_start: bool = False,
        decoder: torch.nn.Module | None = None,
        device: Device = "auto",
        compute_dtype: str | None = "float32",
        n_threads: int | None = 1,
        random_state: RandomStateLike = None,
        verbose: int = 0,
        allow_nan: bool = False,
        fit_hide_fraction: float = 0.0,
        code_init: str = "auto",
        code_prior: float = 0.1,
        distributed: bool | str = "auto",
    ) -> None:
        super().__init__(
            n_components=n_components,
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            loss=loss,
            optimizer=optimizer,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_iter=max_iter,
            max_samples=max_samples,
            tol=tol,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            warm_start=warm_start,
            device=device,
            compute_dtype=compute_dtype,
            n_threads=n_threads,
            random_state=random_state,
            verbose=verbose,
            decoder=decoder,
            distributed=distributed,
        )
        self.solver = solver
        self.flow = flow
        self.adjoint = adjoint
        self.tau = tau
        self.alpha = alpha
        self.stop_rule = stop_rule
        self.stop_tol = stop_tol
        self.fit_stop_tol = fit_stop_tol
        self.fit_max_steps = fit_max_steps
        self.stop_window = stop_window
        self.nesterov_eps = nesterov_eps
        self.beta = beta
        self.s0 = s0
        self.s_min = s_min
        self.s_max = s_max
        self.kappa = kappa
        self.max_backtracks = max_backtracks
        self.n_steps = n_steps
        self.grid = grid
        self.rtol = rtol
        self.atol = atol
        self.max_steps = max_steps
        self.solver_options = solver_options
        self.allow_nan = allow_nan
        self.fit_hide_fraction = fit_hide_fraction
        self.code_init = code_init
        self.code_prior = code_prior

    @classmethod
    def from_autoencoder(
        cls, autoencoder: AutoEncoderBaseline, **params: Any
    ) -> GradientFlowEncoder:
        """A fitted ``GradientFlowEncoder`` on a copy of a fitted autoencoder's decoder.

        Its ``transform`` encodes by gradient flow through the autoencoder's decoder: the
        "Mixed" column of the papers' table 1. It has trained no epoch itself (``n_iter_`` is
        0); fit it with ``warm_start=True`` to train the copied decoder further by GFE.

        Parameters
        ----------
        autoencoder : AutoEncoderBaseline
            A fitted autoencoder; it is not modified.
        **params
            ``GradientFlowEncoder`` parameters: solver settings, ``device`` (the decoder copy
            moves there), training settings for a later warm-started ``fit``. Those that
            define the decoder (``n_components``, ``hidden_layer_sizes``, ``activation``,
            ``loss``, ``decoder``) are the autoencoder's and cannot be changed; ``device``,
            ``random_state`` and ``verbose`` default to the autoencoder's, the training
            settings to ``GradientFlowEncoder``'s defaults (its epochs cost more).

        Returns
        -------
        GradientFlowEncoder
        """
        if not isinstance(autoencoder, AutoEncoderBaseline):
            raise TypeError(
                f"from_autoencoder needs a fitted AutoEncoderBaseline; got "
                f"{type(autoencoder).__name__}."
            )
        check_is_fitted(autoencoder)
        fixed = sorted(set(params) & set(MODEL_PARAMETERS[:5]))
        if fixed:
            raise ValueError(
                f"from_autoencoder cannot change {fixed}: they define the autoencoder's "
                "decoder, which the encoder takes over as it is."
            )
        if params.get("code_init", "zeros") != "zeros":
            raise ValueError(
                "from_autoencoder encodes from z = 0 (code_init='zeros', the papers' Mixed "
                "model): it has no encoder distilled from GFE codes. Leave code_init out."
            )
        shared = {name: copy.deepcopy(getattr(autoencoder, name)) for name in MODEL_PARAMETERS}
        # The papers' Mixed model: the autoencoder's decoder never saw a prior on its codes.
        gfe = cls(**shared, code_init="zeros", code_prior=0.0).set_params(**params)
        gfe._validate_params()
        gfe._check_params()
        device = resolve_device(gfe.device) if "device" in params else autoencoder.device_
        # What describes the decoder is the autoencoder's; the training record starts anew.
        gfe.__dict__.update(copy.deepcopy(taken_over(gfe, autoencoder)))
        gfe.device_ = device
        gfe.decoder_ = copy.deepcopy(autoencoder.decoder_).to(device).eval()
        gfe.__dict__.update({**started(gfe, "training"), **started(gfe, "fit")})
        return gfe

    def flow_diagnostics(self, X: MatrixLike, *, record_history: bool = False) -> FlowResult:
        """Encode ``X`` as ``transform`` does and return each sample's flow diagnostics.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Encoded in one batch (``transform`` works in chunks): pass as many rows as you
            want curves for, e.g. a few hundred.
        record_history : bool, default=False
            Keep each sample's flow time and loss at every accepted step, for convergence
            curves (``gfe_sklearn.plotting.plot_flow_history``).

        Returns
        -------
        result : gfe_sklearn.flow.FlowResult
            Tensors on the CPU: ``z`` (the codes ``transform`` returns, bit for bit on a
            CPU), ``loss`` at the codes (what the flow minimised: with ``code_prior`` the
            prior's term included, which ``score`` leaves out), ``n_steps`` (accepted steps),
            ``n_evals`` (decoder
            evaluations), ``t`` (flow time reached; steps taken for ``'lbfgs'``),
            ``converged``, and with ``record_history`` the ``t_history`` and
            ``loss_history`` of shape ``(steps + 1, n_samples)``, NaN after a sample stopped.

        Examples
        --------
        >>> import numpy as np
        >>> from gfe_sklearn import GradientFlowEncoder
        >>> X = np.random.RandomState(0).uniform(size=(40, 8))
        >>> gfe = GradientFlowEncoder(n_components=2, hidden_layer_sizes=(16,), max_iter=2,
        ...                           device="cpu", random_state=0).fit(X)
        >>> result = gfe.flow_diagnostics(X[:5], record_history=True)
        >>> bool((result.z.numpy() == gfe.transform(X[:5])).all())
        True
        >>> result.loss_history.shape[1], int(result.n_evals.min()) > 0
        (5, True)
        """
        check_is_fitted(self)
        self._check_usable()
        X = self._validate_X(X, reset=False)
        X = self._clipped_to_target_range(X)
        with torch.no_grad(), torch_threads(self.n_threads):
            target = self._tensor(X)
            solver = self._resolve_solver()
            result = self._flow(
                target,
                solver,
                "approx",
                self.stop_tol,
                record_history=record_history,
                **self._start(target, solver),
            )
        tensors = {field.name: getattr(result, field.name) for field in dataclasses.fields(result)}
        return dataclasses.replace(
            result,
            **{
                name: value.detach().cpu()
                for name, value in tensors.items()
                if isinstance(value, torch.Tensor)
            },
        )

    def _check_params(self):
        hidden = super()._check_params()
        self._check_solver_options()
        check_combination(
            self._resolve_solver(),
            self.alpha,
            flow=self.flow,
            adjoint=self.adjoint,
            stop_rule=self.stop_rule,
            tau=self.tau,
        )
        if self.stop_rule == "code" and self.stop_window < 2:
            raise ValueError(
                f"stop_window={self.stop_window!r} is too short for stop_rule='code', which "
                "measures how the code's speed decays between steps: use stop_window >= 2, or "
                "stop_rule='loss'."
            )
        if self.s0 > self.s_max:
            raise ValueError(
                f"s0={self.s0!r} exceeds s_max={self.s_max!r}: AMD's first trial step must not "
                "exceed its largest one. Lower s0 or raise s_max."
            )
        if self.s_min is not None and self.s_min > self.s_max:
            raise ValueError(
                f"s_min={self.s_min!r} exceeds s_max={self.s_max!r}: AMD's trial steps would "
                "have no valid size. Lower s_min or raise s_max."
            )
        return hidden

    def _check_solver_options(self):
        options = self.solver_options or {}
        own = sorted(set(options) & set(SOLVER_PARAMETERS))
        if own:
            name = own[0]
            raise ValueError(
                f"solver_options={options!r} holds {own}, which are parameters of their own: "
                f"set them as such, e.g. {type(self).__name__}({name}={options[name]!r}), and "
                f"keep solver_options for {sorted(SOLVER_OPTIONS)}."
            )
        unknown = sorted(str(key) for key in set(options) - set(SOLVER_OPTIONS))
        if unknown:
            takes = {
                name: sorted(set(solver_options(name)) & set(SOLVER_OPTIONS)) for name in SOLVERS
            }
            raise ValueError(
                f"solver_options has unknown key(s) {unknown}; it takes {sorted(SOLVER_OPTIONS)} "
                f"({', '.join(f'{n}: {k}' for n, k in sorted(takes.items()) if k)})."
            )
        for name, value in options.items():
            valid = SOLVER_OPTIONS[name]
            if isinstance(value, bool) or not valid.is_satisfied_by(value):
                raise ValueError(
                    f"solver_options[{name!r}]={value!r} is invalid: it must be {valid}."
                )

    _nan_advice = (
        "set allow_nan=True to treat NaN entries as missing (the flow and the "
        "training loss then use each sample's observed entries), or fill them in "
        "with gfe_sklearn.GradientFlowImputer."
    )

    def _check_missing(self, X):
        if not self.allow_nan:
            super()._check_missing(X)
            return
        if sp.issparse(X):
            missing = sp.csr_matrix((np.isnan(X.data), X.indices, X.indptr), shape=X.shape)
            observed = X.shape[1] - np.asarray(missing.sum(axis=1)).ravel()
        else:
            observed = X.shape[1] - np.isnan(X).sum(axis=1)
        empty = np.flatnonzero(observed == 0)
        if empty.size:
            shown = ", ".join(str(i) for i in empty[:10]) + (", ..." if empty.size > 10 else "")
            raise ValueError(
                f"{empty.size} row(s) of X have no observed entry (every value is NaN): rows "
                f"[{shown}]. A sample's code is found from its observed entries, so such a row "
                "cannot be encoded or trained on. Drop these rows (e.g. "
                "X[~np.isnan(X).all(axis=1)]), or let GradientFlowImputer fill them with the "
                "training means."
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.allow_nan
        return tags

    def _loss(self):
        """The loss of the flow and of training: over observed entries with ``allow_nan``."""
        loss = LOSSES[self.loss_]
        return loss.observed_only() if self.allow_nan else loss

    def _unread_parameters(self):
        """Parameters that the solver these settings resolve to never reads."""
        solver = self._resolve_solver()
        takes = set(solver_options(solver))
        unread = set(SOLVER_PARAMETERS) - takes
        if not takes & set(self.solver_options or {}):
            unread.add("solver_options")
        return unread if SOLVERS[solver].goes_to_endpoint else unread | {"fit_max_steps"}

    def _resolve_solver(self):
        """The solver's name, ``'auto'`` resolved: L-BFGS unless a setting needs the flow's path."""
        if self.solver != "auto":
            return self.solver
        conflicts = endpoint_conflicts(
            flow=self.flow,
            alpha=self.alpha,
            adjoint=self.adjoint,
            stop_rule=self.stop_rule,
            tau=self.tau,
        )
        return "amd" if conflicts else "lbfgs"

    def _build_modules(self, n_features, architecture, generator, dtype, device):
        def build(module, maker):
            if module is not None:
                return copy.deepcopy(module).to(device=device, dtype=dtype)
            return build_mlp(maker, architecture, n_features, generator, dtype, device)

        modules = {"decoder_": build(self.decoder, make_decoder)}
        if architecture.get("code_init", "zeros") != "zeros":
            # Drawn after the decoder, whose initial weights stay those of a model without one.
            encoder = build(None, make_encoder)
            k, like = architecture["n_components"], {"dtype": dtype, "device": device}
            encoder.register_buffer("code_mean", torch.zeros(k, **like))
            encoder.register_buffer("code_scale", torch.ones(k, **like))
            encoder.register_buffer(
                "code_batches", torch.zeros((), dtype=torch.long, device=device)
            )
            modules["encoder_"] = encoder
        return modules

    def _modules(self):
        encoder = self.__dict__.get("encoder_")
        return [self.decoder_] if encoder is None else [self.decoder_, encoder]

    def _architecture(self, hidden, loss):
        return {**super()._architecture(hidden, loss), "code_init": self.code_init}

    def _end_fit(self, X, incremental, parallel):
        # partial_fit's rows are one chunk of a stream: distilling on them would forget the
        # rest, so its encoder learns only from the training flows.
        if "encoder_" not in self.__dict__ or incremental:
            return
        if self.code_init == "auto" and not self._guess_serves():
            return
        start = time.perf_counter()
        distil_encoder(self, X, parallel)
        self.encoder_distilled_ = True
        if self.verbose and (parallel is None or parallel.rank == 0):
            print(
                f"{type(self).__name__}: encoder distilled on the codes of {X.shape[0]} "
                f"training rows, {time.perf_counter() - start:.2f} s",
                flush=True,
            )

    def _check_tau_fits(self, solver, dtype):
        # The engine runs the horizon in the model's dtype, where 1e308 is inf (float32): it
        # would refuse "tau=inf", a value the user never set, or integrate to infinity.
        if self.tau == "auto" or SOLVERS[solver].goes_to_endpoint:
            return
        largest = torch.finfo(dtype).max
        if np.isfinite(self.tau) and self.tau > largest:
            raise ValueError(
                f"tau={self.tau!r} overflows the model's {str(dtype).replace('torch.', '')} "
                f"arithmetic (largest value {largest:.3g}) with solver={solver!r}. Use a "
                "smaller tau, or compute_dtype='float64'."
            )

    def _inference_options(self):
        # Resolved once per call, with the settings of the call (set_params may have
        # changed them since fit).
        return {"solver": self._resolve_solver()}

    def _solver_settings(self, solver):
        """The options ``solver`` takes, from the flat parameters and ``solver_options``."""
        takes = solver_options(solver)
        given = {name: getattr(self, name) for name in SOLVER_PARAMETERS}
        given.update(self.solver_options or {})
        return {name: value for name, value in given.items() if name in takes}

    def _flow(
        self,
        target,
        solver,
        adjoint,
        stop_tol,
        row_chunk="auto",
        record_history=False,
        max_steps=None,
        code_penalty=None,
        z0=None,
        loss=None,
        training=False,
        metric=None,
        min_decrease=None,
        max_evals=None,
    ):
        self._check_tau_fits(solver, target.dtype)
        options = self._solver_settings(solver)
        if max_steps is not None:
            options["max_steps"] = max_steps
        # A user's solver_options values win over the ones fit measured.
        for name, value in (("min_decrease", min_decrease), ("max_evals", max_evals)):
            if value is not None:
                options.setdefault(name, value)
        return encode(
            self.decoder_,
            target,
            self._n_latent,
            solver=solver,
            flow=self.flow,
            adjoint=adjoint,
            loss=self._loss() if loss is None else loss,
            tau=self.tau,
            alpha=self.alpha,
            stop_rule=self.stop_rule,
            stop_tol=stop_tol,
            stop_window=self.stop_window,
            options=options,
            nesterov_eps=self.nesterov_eps,
            row_chunk=row_chunk,
            record_history=record_history,
            code_penalty=self._with_code_prior(code_penalty, target, training),
            z0=z0,
            metric=metric,
        )

    def _with_code_prior(self, penalty, target, training=False):
        """``penalty`` plus the Gaussian prior of ``code_prior`` (``_prior_strength``)."""
        strength = self._prior_strength(training)
        if strength == 0:
            return penalty
        zeros = torch.zeros(self._n_latent, dtype=target.dtype, device=target.device)
        prior = gaussian_code_penalty(zeros, zeros + 1, strength)
        return prior if penalty is None else sum_of_penalties(prior, penalty)

    def _prior_strength(self, training=False):
        """``code_prior`` over the prior's variance, ``max(1, code_mean_square_)``.

        A young decoder reconstructs only from codes far from 0; a prior of fixed width
        would hold them back and slow what it learns. Sized by the codes themselves, the
        prior only shapes them until they have come within the standard normal's scale,
        from where it is the standard prior.
        """
        if self.code_prior == 0:
            return 0.0
        spread = self.__dict__.get("code_mean_square_")
        if spread is None:
            # A new model's first batch has no codes to size the prior by: it runs without
            # one. A model that never trained with it (from_autoencoder) takes the standard.
            return 0.0 if training else float(self.code_prior)
        return float(self.code_prior) / max(1.0, spread)

    def _track_code_spread(self, codes, batch=None):
        """Update ``code_mean_square_`` with a training batch's codes (over the whole batch
        when ``codes`` are a rank's share): an exponential average from the first batch's
        value, which follows the codes as the decoder learns."""
        with torch.no_grad():
            squares = codes.double() ** 2
            columns = squares.mean(dim=0) if batch is None else batch.mean_std(squares)[0]
            mean_square = float(columns.mean())
        previous = self.__dict__.get("code_mean_square_")
        self.code_mean_square_ = (
            mean_square
            if previous is None
            else previous + CODE_STATS_MOMENTUM * (mean_square - previous)
        )

    def _training_loss(self, target, batch=None):
        # The flow runs on the decoder in eval mode (rows independent); the update pass
        # sees it in train mode.
        # Training batches need no bit-level batch invariance (only transform's codes do), so
        # the flow skips the fixed-size row chunks that cost up to 13x at the papers' batch 5.
        self.decoder_.eval()
        solver = self.solver_
        cap = self.fit_max_steps if SOLVERS[solver].goes_to_endpoint else None
        seen, loss = target, None
        if self.fit_hide_fraction > 0:
            seen = self._hidden_from_flow(target, batch)
            loss = LOSSES[self.loss_].observed_only()
        result = self._flow(
            seen,
            solver,
            self.adjoint,
            self.fit_stop_tol,
            row_chunk=None,
            max_steps=cap,
            loss=loss,
            training=True,
        )
        if self.code_prior != 0:
            self._track_code_spread(result.z, batch)
        self.decoder_.train()
        loss = self._loss()(self.decoder_(result.z), target)
        if "encoder_" not in self.__dict__:
            return loss
        # The encoder's term adds nothing to the loss's value (loss_curve_, early stopping)
        # and only the encoder's gradients: the codes are constants to it, as to the decoder.
        distance = self._distillation_loss(target, result.z.detach(), batch)
        return loss + (distance - distance.detach())

    def _distillation_loss(self, target, codes, batch=None):
        """Each sample's squared distance from the encoder's guess to its code, measured in
        the training codes' running standardisation, which it updates first (with the
        statistics of the whole batch when ``target`` is a rank's share of it)."""
        encoder = self.encoder_
        with torch.no_grad():
            encoder.code_batches += 1
            # A plain average over the first batches, then an exponential one that follows
            # the codes as the decoder learns.
            weight = max(1.0 / int(encoder.code_batches), CODE_STATS_MOMENTUM)
            if batch is None:
                size, mean = len(codes), codes.mean(dim=0)
                spread = codes.std(dim=0) if size > 1 else None
            else:
                size, (mean, spread) = batch.size, batch.mean_std(codes)
            encoder.code_mean.lerp_(mean, weight)
            if size > 1:
                encoder.code_scale.lerp_(
                    torch.where(spread > 0, spread, encoder.code_scale), weight
                )
        standard = (codes - encoder.code_mean) / encoder.code_scale
        return ((self._encoder_input(encoder, target) - standard) ** 2).sum(dim=1)

    @staticmethod
    def _encoder_input(encoder, target):
        """Flat rows with missing entries (NaN) read as 0, through ``encoder``."""
        return encoder(torch.nan_to_num(target.reshape(len(target), -1), nan=0.0))

    def _hidden_from_flow(self, target, batch=None):
        """``target`` with a random part of each row's observed entries set to NaN
        (``fit_hide_fraction``); a row that would lose every entry keeps them all.

        A rank's share of a batch (``batch``) draws for the whole batch and keeps its rows,
        so that the generator moves on every rank as in one process.
        """
        observed = ~torch.isnan(target)
        n_rows = target.shape[0] if batch is None else batch.size
        rates = self._rng.uniform(0, self.fit_hide_fraction, size=(n_rows, 1))
        draws = self._rng.uniform(size=(n_rows, *target.shape[1:]))
        if batch is not None:
            rates, draws = rates[batch.rows], draws[batch.rows]
        hidden = torch.as_tensor(draws < rates, device=target.device) & observed
        hidden[~(observed & ~hidden).any(dim=1)] = False
        return target.masked_fill(hidden, float("nan"))

    def _transform_from(self, X, start=None, prior=None):
        """``transform`` with every row's flow started at the code ``start`` (zeros if None)
        and, given ``prior = (mean, scale, strength)``, a Gaussian prior on the codes in the
        flow's loss (MAP codes, ``flow._losses.gaussian_code_penalty``).

        ``GradientFlowImputer`` encodes through this (``code_prior``, ``n_starts``); ``start``,
        ``mean`` and ``scale`` are per-component arrays.
        """
        check_is_fitted(self)
        as_tensor = partial(torch.as_tensor, dtype=self._model_dtype, device=self.device_)
        options = {}
        if prior is not None:
            mean, scale, strength = prior
            options["code_penalty"] = gaussian_code_penalty(
                as_tensor(mean), as_tensor(scale), float(strength)
            )
        # The imputer's starts are its own: None is the origin, not the encoder's guess.
        options["z0"] = as_tensor(np.zeros(self._n_latent) if start is None else start)
        return self._transform(X, **options)

    def _guess_serves(self, solver=None):
        """Whether ``code_init='auto'`` starts from a distilled encoder's guess under these
        settings (``solver``: the call's resolved solver, None to resolve it): with a prior
        (the endpoints the guess predicts) and L-BFGS (the capped steps), where the capped
        steps were measured to keep the zero start's precision."""
        solver = self._resolve_solver() if solver is None else solver
        return self.code_prior > 0 and SOLVERS[solver].goes_to_endpoint

    def _start(self, target, solver):
        """How each row's flow starts at inference with ``solver``: ``_flow``'s ``z0`` (the
        encoder's guess, or None: zeros), ``max_steps`` (None: the solver's) and ``metric``
        (the search's coordinates, None: the codes')."""
        if self.code_init == "zeros":
            return {}
        metric = self.__dict__.get("code_metric_")
        if not SOLVERS[solver].takes_metric:
            metric = None
        if self.code_init == "encoder":
            return {"z0": self._guess(target), "metric": metric}
        if not (self.__dict__.get("encoder_distilled_") and self._guess_serves(solver)):
            return {}
        return {
            "z0": self._guess(target),
            "metric": metric,
            "min_decrease": self.__dict__.get("refine_min_decrease_") or 0.0,
            "max_evals": self.__dict__.get("refine_max_evals_"),
        }

    def _guess(self, target):
        """The encoder's guess of each row's code."""
        encoder = self.__dict__.get("encoder_")
        if encoder is None:
            raise ValueError(
                f"code_init='encoder', but this {type(self).__name__} was fitted with "
                "code_init='zeros' (or saved before code_init existed) and has no encoder. "
                "Set code_init='zeros' to encode from z = 0, or fit it again with "
                "code_init='encoder'."
            )
        layers = padded_mlp(encoder)

        def guess(rows):
            # Separate product and sum: each entry rounds alike on every code path.
            return self._encoder_input(layers, rows) * encoder.code_scale + encoder.code_mean

        # In the row counts that round every row alike, as the flow's engine: a sample's
        # start, and so its code, is the same bit for bit whatever batch it is in.
        return invariant_rowwise(
            guess,
            target,
            chunk=self._row_chunk(encoder),
            owner=encoder,
            probe=(probe_rows(target),),
        )

    def _encode(self, target, with_loss, solver, code_penalty=None, z0=None, stop_tol=None):
        if z0 is None:
            start = self._start(target, solver)
        else:
            start = {"z0": z0.expand(target.shape[0], -1).clone()}
        stop_tol = self.stop_tol if stop_tol is None else stop_tol
        result = self._flow(target, solver, "approx", stop_tol, code_penalty=code_penalty, **start)
        if not bool(torch.isfinite(result.loss).all()):
            # AMD accepts no step from a non-finite loss: such codes would silently stay z(0).
            raise ValueError(
                "The reconstruction loss of some samples is not finite even at their codes "
                f"(largest magnitude in the batch {float(target.abs().nan_to_num().max()):.3g}):"
                " the data "
                f"overflow the model's {str(self._model_dtype).replace('torch.', '')} "
                "arithmetic. Scale the data the way the training data were scaled, or refit "
                "the model with compute_dtype='float64'."
            )
        penalty = self._with_code_prior(code_penalty, target) if with_loss else None
        if penalty is None:
            return result.z, result.loss
        # The flow minimised loss plus prior; score reports the reconstruction alone.
        return result.z, result.loss - penalty(result.z, target)
