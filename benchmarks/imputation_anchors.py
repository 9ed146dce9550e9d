"""Strong imputers to measure ``GradientFlowImputer`` against: MissForest, SoftImpute, MIWAE.

Each is inductive, as ``GradientFlowImputer`` is: ``fit`` learns from training rows with
missing entries (NaN), ``transform`` fills the NaN of new rows (observed entries are returned
as given) without refitting.

``MissForestImputer``
    Stekhoven & Bühlmann (2012), "MissForest - non-parametric missing value imputation for
    mixed-type data", through scikit-learn: ``IterativeImputer`` with an
    ``ExtraTreesRegressor`` per feature (the variant the MIWAE authors use as missForest).
``SoftImputer``
    Mazumder, Hastie & Tibshirani (2010), "Spectral regularization algorithms for learning
    large incomplete matrices", JMLR 11: iterative soft-thresholded SVD of the column-centred
    training matrix, the shrinkage chosen on observed training entries held out from it.
``MIWAEImputer``
    Mattei & Frellsen (2019), "MIWAE: deep generative modelling and imputation of incomplete
    data sets", ICML: a deep latent variable model trained on the importance-weighted bound
    of the observed entries' likelihood; a new row is imputed by the conditional mean of its
    missing entries, estimated by self-normalised importance sampling.

``benchmarks/bench_imputation.py`` runs them as "MissForest-style", "SoftImpute" and
"MIWAE"; ``benchmarks/check_miwae.py`` checks ``MIWAEImputer`` against a figure its
authors report.
"""

import math
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer
from sklearn.utils import check_random_state

__all__ = ["MIWAEImputer", "MissForestImputer", "SoftImputer"]


def _as_float_matrix(X):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d array, got shape {X.shape}")
    return X


def _column_means(X):
    """Means of the observed entries per column; 0 for a column with none observed."""
    observed = ~np.isnan(X)
    counts = observed.sum(axis=0)
    sums = np.where(observed, X, 0.0).sum(axis=0)
    return np.divide(sums, counts, out=np.zeros(X.shape[1]), where=counts > 0)


class MissForestImputer(TransformerMixin, BaseEstimator):
    """MissForest-style imputation: ``IterativeImputer`` over extremely randomised trees.

    Parameters
    ----------
    n_estimators : int, default=20
        Trees per feature's forest.
    max_iter : int, default=5
        Rounds over the features.
    max_depth : int or None, default=None
    n_nearest_features : int or None, default=None
        Predict each feature from this many others (``IterativeImputer``'s option; 50 keeps
        MNIST-sized images within reach).
    min_value, max_value : float, default=-inf, inf
        Imputations are clipped to this range (0 and 1 for data scaled to [0, 1]).
    random_state : int or None, default=None
    """

    def __init__(
        self,
        *,
        n_estimators=20,
        max_iter=5,
        max_depth=None,
        n_nearest_features=None,
        min_value=-np.inf,
        max_value=np.inf,
        random_state=None,
    ):
        self.n_estimators = n_estimators
        self.max_iter = max_iter
        self.max_depth = max_depth
        self.n_nearest_features = n_nearest_features
        self.min_value = min_value
        self.max_value = max_value
        self.random_state = random_state

    def fit(self, X, y=None):
        forest = ExtraTreesRegressor(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            n_jobs=1,
            random_state=self.random_state,
        )
        self.imputer_ = IterativeImputer(
            estimator=forest,
            max_iter=self.max_iter,
            n_nearest_features=self.n_nearest_features,
            min_value=self.min_value,
            max_value=self.max_value,
            keep_empty_features=True,
            random_state=self.random_state,
        ).fit(_as_float_matrix(X))
        return self

    def transform(self, X):
        return self.imputer_.transform(_as_float_matrix(X))


def _shrunk_svd(Y, lam):
    """Right singular vectors, singular values and soft-thresholded values of ``Y``.

    Only the directions whose singular value exceeds ``lam`` are returned (the others are
    thresholded to zero). The decomposition goes through the smaller Gram matrix: its
    eigenvalues lose the smallest singular values to rounding, which the threshold removes
    anyway, and it costs a fraction of a full SVD on MNIST-sized matrices.
    """
    n, p = Y.shape
    if n >= p:
        evals, V = np.linalg.eigh(Y.T @ Y)
        d = np.sqrt(np.clip(evals, 0.0, None))
        keep = d > lam
        return V[:, keep], d[keep], d[keep] - lam
    evals, U = np.linalg.eigh(Y @ Y.T)
    d = np.sqrt(np.clip(evals, 0.0, None))
    keep = d > lam
    V = (Y.T @ U[:, keep]) / d[keep]
    return V, d[keep], d[keep] - lam


def _soft_impute(Xc, observed, lam, Z, max_iter, tol):
    """Mazumder et al.'s Soft-Impute at one ``lam`` from the warm start ``Z``.

    Repeats: fill the unobserved entries of ``Xc`` from ``Z``; ``Z`` becomes the filled
    matrix's SVD with singular values soft-thresholded by ``lam``. Stops when the relative
    change of ``Z`` in squared Frobenius norm falls below ``tol``.
    """
    V, d, s = np.zeros((Xc.shape[1], 0)), np.zeros(0), np.zeros(0)
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        Y = np.where(observed, Xc, Z)
        V, d, s = _shrunk_svd(Y, lam)
        Z_new = ((Y @ V) * (s / d)) @ V.T
        change = np.sum((Z_new - Z) ** 2) / max(np.sum(Z**2), 1e-300)
        Z = Z_new
        if change < tol:
            break
    return Z, V, d, s, n_iter


class SoftImputer(TransformerMixin, BaseEstimator):
    """SoftImpute (Mazumder, Hastie & Tibshirani 2010), inductive.

    ``fit`` centres each column by its observed mean and solves
    ``min_Z 1/2 ||P_obs(X - Z)||_F^2 + lambda ||Z||_*`` by Soft-Impute (fill the holes from
    ``Z``, soft-threshold the singular values, repeat). The shrinkage ``lambda`` is a
    fraction of ``lambda_max``, the largest singular value of the zero-filled centred matrix
    (at which the solution is zero). By default the fraction is chosen on the training data
    alone: ``validation_fraction`` of the observed training entries are hidden, the path
    ``lambda_max * geomspace(0.9, min_shrinkage, n_shrinkages)`` is solved with warm starts,
    and the fraction with the lowest RMSE on the hidden entries is refitted on every
    observed entry.

    ``transform`` keeps the fitted right singular vectors ``V`` and the ratios
    ``r = s / d`` of thresholded to unthresholded singular values fixed, and returns for a
    new row the fixed point of the EM-style iteration the fit uses: fill the missing
    entries, map the row ``y`` to ``y V diag(r) V^T``, repeat. The fixed point is solved
    exactly as a ridge regression on the row's observed entries: with ``W = V diag(sqrt(r))``,
    coefficients ``c = (W_o^T W_o + diag(1 - r))^{-1} W_o^T y_o`` and missing entries
    ``W_m c`` (Woodbury's identity turns the iteration's geometric series into this
    ``rank x rank`` solve).

    Parameters
    ----------
    shrinkage : float in (0, 1) or None, default=None
        ``lambda / lambda_max``; None picks it on held-out training entries.
    n_shrinkages : int, default=16
    min_shrinkage : float, default=0.005
        The path's smallest fraction.
    validation_fraction : float, default=0.1
    patience : int, default=3
        The path stops after this many fractions in a row worse than the best.
    max_iter : int, default=200
        Soft-Impute iterations per ``lambda``.
    tol : float, default=1e-7
        Stop at a ``lambda`` when ``||Z_new - Z||^2 / ||Z||^2`` falls below it.
    min_value, max_value : float, default=-inf, inf
        Imputations are clipped to this range.
    random_state : int or None, default=None
        Draws the held-out entries.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
    lambda_max_, lambda_, shrinkage_ : float
    components_ : ndarray of shape (rank_, n_features)
        The fitted right singular vectors.
    ratios_ : ndarray of shape (rank_,)
        Thresholded over unthresholded singular values.
    rank_ : int
    path_ : list of (shrinkage, validation RMSE, rank)
    """

    def __init__(
        self,
        *,
        shrinkage=None,
        n_shrinkages=16,
        min_shrinkage=0.005,
        validation_fraction=0.1,
        patience=3,
        max_iter=200,
        tol=1e-7,
        min_value=-np.inf,
        max_value=np.inf,
        random_state=None,
    ):
        self.shrinkage = shrinkage
        self.n_shrinkages = n_shrinkages
        self.min_shrinkage = min_shrinkage
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.max_iter = max_iter
        self.tol = tol
        self.min_value = min_value
        self.max_value = max_value
        self.random_state = random_state

    def fit(self, X, y=None):
        X = _as_float_matrix(X)
        observed = ~np.isnan(X)
        self.mean_ = _column_means(X)
        Xc = np.where(observed, X - self.mean_, 0.0)
        self.lambda_max_ = float(np.sqrt(np.linalg.eigvalsh(Xc.T @ Xc)[-1]))
        self.path_ = []
        start = np.zeros_like(Xc)
        if self.shrinkage is None:
            shrinkage, start = self._choose_shrinkage(X, observed)
        else:
            if not 0 < self.shrinkage < 1:
                raise ValueError(
                    f"shrinkage must be in (0, 1) or None, got {self.shrinkage!r}; it is "
                    "lambda as a fraction of the largest singular value"
                )
            shrinkage = float(self.shrinkage)
        self.shrinkage_ = shrinkage
        self.lambda_ = shrinkage * self.lambda_max_
        _, V, d, s, self.n_iter_ = _soft_impute(
            Xc, observed, self.lambda_, start, self.max_iter, self.tol
        )
        self.components_ = V.T
        self.ratios_ = s / d
        self.rank_ = len(s)
        return self

    def _choose_shrinkage(self, X, observed):
        rng = check_random_state(self.random_state)
        flat = np.flatnonzero(observed)
        held = rng.choice(
            flat, size=max(1, int(self.validation_fraction * flat.size)), replace=False
        )
        held_mask = np.zeros(X.size, dtype=bool)
        held_mask[held] = True
        held_mask = held_mask.reshape(X.shape)
        fit_observed = observed & ~held_mask
        fit_X = np.where(fit_observed, X, np.nan)
        mean = _column_means(fit_X)
        Xc = np.where(fit_observed, X - mean, 0.0)
        lambda_max = float(np.sqrt(np.linalg.eigvalsh(Xc.T @ Xc)[-1]))
        Z = np.zeros_like(Xc)
        best, best_error, best_Z, worse = None, np.inf, Z, 0
        for shrinkage in np.geomspace(0.9, self.min_shrinkage, self.n_shrinkages):
            Z, _, _, s, _ = _soft_impute(
                Xc, fit_observed, shrinkage * lambda_max, Z, self.max_iter, self.tol
            )
            guess = np.clip(Z + mean, self.min_value, self.max_value)
            error = float(np.sqrt(np.mean((guess - X)[held_mask] ** 2)))
            self.path_.append((float(shrinkage), error, len(s)))
            if error < best_error:
                best, best_error, best_Z, worse = float(shrinkage), error, Z, 0
            else:
                worse += 1
                if worse >= self.patience:
                    break
        # The path's solution is a warm start for the refit on every observed entry.
        return best, best_Z + mean - self.mean_

    def transform(self, X):
        X = _as_float_matrix(X)
        missing = np.isnan(X)
        filled = np.where(missing, 0.0, X - self.mean_)
        guess = np.zeros_like(filled)
        if self.rank_:
            W = self.components_.T * np.sqrt(self.ratios_)
            penalty = np.diag(1.0 - self.ratios_)
            chunk = max(1, 4_000_000 // (X.shape[1] * self.rank_))
            for start in range(0, len(X), chunk):
                rows = slice(start, start + chunk)
                Wo = (~missing[rows])[:, :, None] * W  # (rows, features, rank)
                gram = np.swapaxes(Wo, 1, 2) @ W + penalty
                rhs = np.einsum("nfr,nf->nr", Wo, filled[rows])
                coef = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
                guess[rows] = coef @ W.T
        guess = np.clip(guess + self.mean_, self.min_value, self.max_value)
        return np.where(missing, guess, X)


# --- MIWAE -----------------------------------------------------------------------------------

_OBSERVATIONS = {"studentt": 3, "gaussian": 2, "bernoulli": 1}  # decoder outputs per feature
_POSTERIORS = {"studentt": 3, "gaussian": 2}  # encoder outputs per latent dimension
_SCALE_FLOOR = 1e-3  # the authors' floor on the decoder's scales (data standardised)
_MIN_DF = 3.0  # degrees of freedom above 3: the Student-t mean and variance exist


def _student_t_log_prob(x, loc, scale, df):
    z = (x - loc) / scale
    return (
        torch.lgamma((df + 1) / 2)
        - torch.lgamma(df / 2)
        - 0.5 * torch.log(df * math.pi)
        - torch.log(scale)
        - (df + 1) / 2 * torch.log1p(z * z / df)
    )


def _normal_log_prob(x, loc, scale):
    z = (x - loc) / scale
    return -0.5 * z * z - torch.log(scale) - 0.5 * math.log(2 * math.pi)


def _mlp(sizes, generator):
    """ReLU layers initialised as the authors' notebook does (He, truncated normal)."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = torch.nn.Linear(fan_in, fan_out)
        # A normal truncated at two standard deviations keeps 0.7737 of its variance;
        # dividing by its square root gives the layer the variance 2 / fan_in.
        std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
        with torch.no_grad():
            torch.nn.init.trunc_normal_(
                linear.weight, std=std, a=-2 * std, b=2 * std, generator=generator
            )
            linear.bias.zero_()
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


class MIWAEImputer(TransformerMixin, BaseEstimator):
    """MIWAE (Mattei & Frellsen 2019): a deep latent variable model fitted on incomplete data.

    Model: ``z ~ N(0, I_d)``; ``x | z`` has independent features whose distribution's
    parameters a decoder (``d -> hidden -> hidden``, ReLU) gives: a Student-t (location,
    scale ``softplus + 1e-3``, degrees of freedom ``softplus + 3``), a Gaussian (location,
    scale ``softplus + 1e-3``) or a Bernoulli (logits; for data in [0, 1], whose
    log-likelihood is then minus the binary cross-entropy). The encoder (``p -> hidden ->
    hidden -> hidden``, ReLU) reads the row with its missing entries filled by constants
    (zeros, learned when ``learn_fill``, as in the authors' TensorFlow 2 notebook) and gives
    ``q(z | x_o)``, a Student-t or a Gaussian with diagonal scale. Training maximises the
    MIWAE bound ``mean_i log (1/K) sum_k p(x_o,i | z_k) p(z_k) / q(z_k | x_o,i)`` with
    ``K = n_importance`` reparameterised samples, in which only observed entries'
    log-likelihoods count, by Adam on shuffled mini-batches.

    A row is imputed by the conditional mean of its missing entries under the model,
    ``sum_l w_l mu(z_l)`` over ``L = n_impute_samples`` draws from ``q``, with
    self-normalised importance weights ``w_l`` proportional to
    ``p(x_o | z_l) p(z_l) / q(z_l | x_o)``.

    For the Student-t and Gaussian observation models, ``standardize`` centres and scales
    each column by its observed mean and standard deviation before fitting (the scale floor
    assumes data of unit variance) and undoes it after imputing.

    Parameters
    ----------
    n_latent : int, default=10
    hidden : int, default=128
    observation : {'studentt', 'gaussian', 'bernoulli'}, default='studentt'
    posterior : {'studentt', 'gaussian'}, default='studentt'
    n_importance : int, default=20
        ``K``, importance samples per row in the training bound.
    n_impute_samples : int, default=1000
        ``L``, importance samples per row when imputing.
    batch_size : int, default=64
    learning_rate : float, default=1e-3
    epochs : int, default=100
    time_budget : float or None, default=None
        Seconds; training stops after the first epoch that ends past it (or after
        ``epochs``).
    learn_fill : bool, default=True
    standardize : bool, default=True
    min_value, max_value : float, default=-inf, inf
        Imputations are clipped to this range.
    random_state : int or None, default=None
        Seeds a local ``torch.Generator`` (initial weights, batches, samples); ``transform``
        draws its samples from a generator seeded anew at each call.

    Attributes
    ----------
    loss_curve_ : list of float
        Minus the MIWAE bound per row, averaged over each epoch's batches.
    n_epochs_ : int
    """

    def __init__(
        self,
        *,
        n_latent=10,
        hidden=128,
        observation="studentt",
        posterior="studentt",
        n_importance=20,
        n_impute_samples=1000,
        batch_size=64,
        learning_rate=1e-3,
        epochs=100,
        time_budget=None,
        learn_fill=True,
        standardize=True,
        min_value=-np.inf,
        max_value=np.inf,
        random_state=None,
    ):
        self.n_latent = n_latent
        self.hidden = hidden
        self.observation = observation
        self.posterior = posterior
        self.n_importance = n_importance
        self.n_impute_samples = n_impute_samples
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.time_budget = time_budget
        self.learn_fill = learn_fill
        self.standardize = standardize
        self.min_value = min_value
        self.max_value = max_value
        self.random_state = random_state

    # The data as the networks see them: zero-filled values and a mask of observed entries.
    def _prepare(self, X):
        X = _as_float_matrix(X)
        observed = ~np.isnan(X)
        scaled = (X - self.shift_) / self.scale_
        values = torch.as_tensor(np.where(observed, scaled, 0.0), dtype=torch.float32)
        return values, torch.as_tensor(observed, dtype=torch.float32)

    def fit(self, X, y=None):
        if self.observation not in _OBSERVATIONS:
            raise ValueError(
                f"observation must be one of {sorted(_OBSERVATIONS)}, got {self.observation!r}"
            )
        if self.posterior not in _POSTERIORS:
            raise ValueError(
                f"posterior must be one of {sorted(_POSTERIORS)}, got {self.posterior!r}"
            )
        X = _as_float_matrix(X)
        n, p = X.shape
        self.shift_, self.scale_ = np.zeros(p), np.ones(p)
        if self.standardize and self.observation != "bernoulli":
            self.shift_ = _column_means(X)
            spread = np.sqrt(_column_means((X - self.shift_) ** 2))
            self.scale_ = np.where(spread > 1e-12, spread, 1.0)
        self.seed_ = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        generator = torch.Generator().manual_seed(self.seed_)
        d, h = self.n_latent, self.hidden
        self.encoder_ = _mlp([p, h, h, h, _POSTERIORS[self.posterior] * d], generator)
        self.decoder_ = _mlp([d, h, h, _OBSERVATIONS[self.observation] * p], generator)
        self.fill_ = torch.zeros(p, requires_grad=bool(self.learn_fill))
        parameters = [*self.encoder_.parameters(), *self.decoder_.parameters()]
        if self.learn_fill:
            parameters.append(self.fill_)
        optimizer = torch.optim.Adam(parameters, lr=self.learning_rate)
        values, observed = self._prepare(X)
        self.loss_curve_ = []
        start = time.perf_counter()
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=generator)
            total = 0.0
            for batch in torch.split(order, self.batch_size):
                log_w, _ = self._log_weights(
                    values[batch], observed[batch], self.n_importance, generator
                )
                bound = torch.logsumexp(log_w, dim=0) - math.log(self.n_importance)
                loss = -bound.mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            self.loss_curve_.append(total / n)
            if self.time_budget is not None and time.perf_counter() - start >= self.time_budget:
                break
        self.n_epochs_ = len(self.loss_curve_)
        return self

    def _log_weights(self, values, observed, n_samples, generator):
        """Log importance weights (samples, rows) and the decoder's means (samples, rows, p)."""
        d, p = self.n_latent, values.shape[1]
        encoded = self.encoder_(values + (1 - observed) * self.fill_)
        loc = encoded[:, :d]
        scale = torch.nn.functional.softplus(encoded[:, d : 2 * d])
        shape = (n_samples, *loc.shape)
        noise = torch.randn(shape, generator=generator)
        if self.posterior == "studentt":
            df = _MIN_DF + torch.nn.functional.softplus(encoded[:, 2 * d :])
            # A Student-t draw is a normal over sqrt(chi2(df) / df), chi2(df) = 2 Gamma(df / 2);
            # torch's gamma sampler is differentiable in its shape (implicit reparameterisation).
            gamma = torch._standard_gamma(df.expand(shape) / 2, generator=generator)
            z = loc + scale * noise * torch.rsqrt(2 * gamma / df)
            log_q = _student_t_log_prob(z, loc, scale, df).sum(-1)
        else:
            z = loc + scale * noise
            log_q = _normal_log_prob(z, loc, scale).sum(-1)
        log_prior = _normal_log_prob(z, torch.zeros(()), torch.ones(())).sum(-1)
        out = self.decoder_(z.reshape(-1, d)).reshape(n_samples, len(values), -1)
        mean = out[..., :p]
        if self.observation == "bernoulli":
            log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
                mean, values.expand_as(mean), reduction="none"
            )
            mean = torch.sigmoid(mean)
        else:
            obs_scale = torch.nn.functional.softplus(out[..., p : 2 * p]) + _SCALE_FLOOR
            if self.observation == "studentt":
                obs_df = _MIN_DF + torch.nn.functional.softplus(out[..., 2 * p :])
                log_px = _student_t_log_prob(values, mean, obs_scale, obs_df)
            else:
                log_px = _normal_log_prob(values, mean, obs_scale)
        log_px_obs = (log_px * observed).sum(-1)
        return log_px_obs + log_prior - log_q, mean

    def transform(self, X):
        X = _as_float_matrix(X)
        values, observed = self._prepare(X)
        L = self.n_impute_samples
        chunk = max(1, 2**17 // L)
        guesses = []
        # Each call draws the same samples: imputing the same rows twice gives the same values.
        generator = torch.Generator().manual_seed(self.seed_ + 1)
        with torch.no_grad():
            for rows in range(0, len(values), chunk):
                log_w, mean = self._log_weights(
                    values[rows : rows + chunk], observed[rows : rows + chunk], L, generator
                )
                weights = torch.softmax(log_w, dim=0)
                guesses.append(torch.einsum("lr,lrp->rp", weights, mean).double().numpy())
        guess = np.concatenate(guesses) * self.scale_ + self.shift_
        guess = np.clip(guess, self.min_value, self.max_value)
        return np.where(np.isnan(X), guess, X)
