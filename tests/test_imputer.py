"""GradientFlowImputer and make_hidden_entry_scorer."""

import warnings
from functools import partial

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import KNNImputer, MissingIndicator, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from gfe_sklearn import GradientFlowEncoder, GradientFlowImputer, make_hidden_entry_scorer
from gfe_sklearn import _imputer as imputer_module
from gfe_sklearn._imputer import neighbour_weights
from gfe_sklearn._scoring import hidden_entry_error, hide_entries

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]

SMALL = dict(
    n_components=2,
    hidden_layer_sizes=(8,),
    max_iter=2,
    batch_size=16,
    solver="lbfgs",
    device="cpu",
    random_state=0,
    code_prior=0.0,  # the imputer's own prior alone: the tests of its MAP codes need it
)


# What the default encoder leaves to the imputer's random_state.
UNSEEDED = {**SMALL, "random_state": None}


def small_encoder(**params):
    return GradientFlowEncoder(**{**SMALL, **params})


def low_rank(n_samples=300, n_features=24, rank=2, seed=0):
    """Data in (0, 1) that a ``rank``-dimensional code explains."""
    rng = np.random.RandomState(seed)
    basis = rng.uniform(-3, 3, size=(rank, n_features))
    return 1 / (1 + np.exp(-rng.normal(size=(n_samples, rank)) @ basis))


def with_holes(X, fraction=0.3, seed=0):
    X = X.copy()
    X[hide_entries(X, fraction, random_state=seed)] = np.nan
    return X


@parametrize_with_checks(
    [
        # The default loss='auto', as the default encoder's: any table, bce on [0, 1].
        GradientFlowImputer(encoder=small_encoder()),
        GradientFlowImputer(encoder=small_encoder(), add_indicator=True),
        GradientFlowImputer(encoder=small_encoder(), code_prior=1.0),
        GradientFlowImputer(encoder=small_encoder(), n_starts=3, random_state=0),
        GradientFlowImputer(encoder=small_encoder(), n_estimators=2, random_state=0),
    ]
)
def test_sklearn_compatible_imputer(estimator, check):
    check(estimator)


# -- imputation ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_observed_entries_are_returned_unchanged(X, dtype):
    X = with_holes(X).astype(dtype)
    filled = GradientFlowImputer(encoder=small_encoder(loss="bce")).fit_transform(X)
    observed = ~np.isnan(X)
    assert filled.dtype == dtype
    assert not np.isnan(filled).any()
    np.testing.assert_array_equal(filled[observed], X[observed])


def test_missing_entries_come_from_the_encoders_reconstruction(X):
    # Without the prior on the codes (code_prior=0), the codes are the encoder's own.
    X = with_holes(X)
    imputer = GradientFlowImputer(
        estimate="mode", encoder=small_encoder(loss="bce"), code_prior=0
    ).fit(X)
    encoder = imputer.encoder_
    expected = encoder.inverse_transform(encoder.transform(X))
    missing = np.isnan(X)
    # Exact: the imputer encodes a subset of the rows, bit-identical by the engine's row
    # layout (flow/_rows.py), and one start's mean is a division by 1.
    np.testing.assert_array_equal(imputer.transform(X)[missing], expected[missing])


def test_encoder_is_cloned_with_allow_nan_and_left_unchanged(X):
    encoder = small_encoder()
    imputer = GradientFlowImputer(encoder=encoder).fit(with_holes(X))
    assert imputer.encoder_ is not encoder
    assert imputer.encoder_.allow_nan and not encoder.allow_nan
    assert not hasattr(encoder, "decoder_")
    assert GradientFlowImputer()._encoder_template().loss == "auto"


def test_default_encoder_hides_entries_and_sees_enough_samples():
    small, large = (GradientFlowImputer()._encoder_template(n) for n in (100, 10_000))
    assert small.fit_hide_fraction == large.fit_hide_fraction == 0.8
    # Small data get more epochs, large data the encoder's 10; the sample budget ends both.
    assert (small.max_iter, small.max_samples) == (150, 15_000)
    assert (large.max_iter, large.max_samples) == (10, 100_000)
    assert small.n_iter_no_change == small.max_iter
    # The encoder's own prior, sized by the codes, in training and encoding (since 0.10).
    assert small.code_prior == GradientFlowEncoder().code_prior > 0


def test_default_encoder_trains_its_whole_budget_without_warning(monkeypatch):
    monkeypatch.setattr(imputer_module, "DEFAULT_MIN_SAMPLES", 400)
    small = {name: value for name, value in UNSEEDED.items() if name != "code_prior"}
    monkeypatch.setattr(
        imputer_module, "GradientFlowEncoder", partial(GradientFlowEncoder, **small)
    )
    X = with_holes(low_rank(n_samples=40, n_features=6))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        imputer = GradientFlowImputer(random_state=0).fit(X)
    encoder = imputer.encoder_
    # 36 rows train (4 are held out to pick the prior): 12 epochs reach 400 samples.
    assert encoder.fit_hide_fraction == 0.8
    assert encoder.n_iter_ == len(encoder.loss_curve_) == 12
    # Its training flows saw the prior sized by their codes.
    assert encoder.code_prior > 0 and encoder.code_mean_square_ > 0


def test_members_of_the_default_imputer_size_their_own_training(monkeypatch):
    monkeypatch.setattr(imputer_module, "DEFAULT_MIN_SAMPLES", 400)
    monkeypatch.setattr(
        imputer_module, "GradientFlowEncoder", partial(GradientFlowEncoder, **UNSEEDED)
    )
    X = with_holes(low_rank(n_samples=40, n_features=6))
    imputer = GradientFlowImputer(n_estimators=2, random_state=0).fit(X)
    first, second = (member.encoder_ for member in imputer.estimators_)
    assert first.max_iter == second.max_iter == 12
    assert first.random_state != second.random_state
    alone = GradientFlowImputer(random_state=0).fit(X)
    np.testing.assert_array_equal(alone.encoder_.transform(X[:5]), first.transform(X[:5]))


def test_other_placeholders_than_nan(X):
    holes = with_holes(X)
    placeholder = np.where(np.isnan(holes), -1.0, holes)
    imputer = GradientFlowImputer(encoder=small_encoder(), missing_values=-1.0, random_state=0)
    by_placeholder = imputer.fit_transform(placeholder)
    by_nan = GradientFlowImputer(encoder=small_encoder(), random_state=0).fit_transform(holes)
    # The placeholder is replaced by NaN first: the same data, the same seeded fit.
    np.testing.assert_array_equal(by_placeholder, by_nan)
    with pytest.raises(ValueError, match="NaN"):
        imputer.transform(holes)


@pytest.mark.parametrize("placeholder", [None, "?"])
def test_a_placeholder_that_numbers_cannot_hold_is_refused_by_name(X, placeholder):
    # X is read as numbers: None would already be NaN there, and "?" no value at all.
    holes = with_holes(X).astype(object)
    holes[np.isnan(holes.astype(float))] = placeholder
    imputer = GradientFlowImputer(encoder=small_encoder(), missing_values=placeholder)
    with pytest.raises(ValueError, match=r"'missing_values' parameter .* numpy.nan"):
        imputer.fit(holes)


def test_bfloat16_tensors_are_imputed_as_their_float32_values(X):
    torch = pytest.importorskip("torch")
    holes = torch.tensor(with_holes(X), dtype=torch.bfloat16)
    exact = holes.float().numpy()
    imputed = GradientFlowImputer(encoder=small_encoder(), random_state=0).fit_transform(holes)
    reference = GradientFlowImputer(encoder=small_encoder(), random_state=0).fit_transform(exact)
    np.testing.assert_array_equal(imputed, reference)


def test_rows_without_observed_entries_get_the_training_means(X):
    holes = with_holes(X)
    imputer = GradientFlowImputer(encoder=small_encoder()).fit(holes)
    np.testing.assert_allclose(imputer.statistics_, np.nanmean(holes, axis=0))
    test = holes[:4].copy()
    test[1] = np.nan
    filled = imputer.transform(test)
    np.testing.assert_array_equal(filled[1], imputer.statistics_)
    # Such rows are left out of training instead of refused.
    holes[[3, 7]] = np.nan
    GradientFlowImputer(encoder=small_encoder()).fit(holes)


def test_fit_refuses_data_without_an_observed_entry():
    with pytest.raises(ValueError, match="no observed entry"):
        GradientFlowImputer(encoder=small_encoder()).fit(np.full((5, 3), np.nan))


@pytest.mark.parametrize("keep", [False, True])
def test_features_never_observed_in_fit(X, keep):
    X = with_holes(X)
    X[:, 3] = np.nan
    imputer = GradientFlowImputer(encoder=small_encoder(), keep_empty_features=keep).fit(X)
    filled = imputer.transform(X)
    names = imputer.get_feature_names_out()
    if keep:
        assert filled.shape == X.shape and (filled[:, 3] == 0).all()
        assert "x3" in names
    else:
        assert filled.shape == (X.shape[0], X.shape[1] - 1)
        assert "x3" not in names and len(names) == filled.shape[1]
    assert imputer.encoder_.n_features_in_ == X.shape[1] - 1


def test_add_indicator_appends_the_missing_indicator(X):
    X = with_holes(X)
    imputer = GradientFlowImputer(encoder=small_encoder(), add_indicator=True).fit(X)
    filled = imputer.transform(X)
    indicator = MissingIndicator().fit(X)
    np.testing.assert_array_equal(filled[:, X.shape[1] :], indicator.transform(X))
    assert list(imputer.get_feature_names_out()[X.shape[1] :]) == list(
        indicator.get_feature_names_out()
    )


def test_feature_names_and_pandas_output(X):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(with_holes(X), columns=[f"pixel{i}" for i in range(X.shape[1])])
    imputer = GradientFlowImputer(encoder=small_encoder(), add_indicator=True)
    out = imputer.set_output(transform="pandas").fit(frame).transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns[: X.shape[1]]) == list(frame.columns)
    assert out.columns[-1].startswith("missingindicator_")
    np.testing.assert_array_equal(imputer.feature_names_in_, frame.columns)


def test_bce_encoder_refuses_data_outside_its_range(X):
    X = with_holes(X) * 3
    with pytest.raises(ValueError, match="MinMaxScaler"):
        GradientFlowImputer(encoder=small_encoder(loss="bce")).fit(X)


def test_imputes_structured_data_better_than_the_mean():
    X = low_rank()
    holes = with_holes(X, 0.5)
    missing = np.isnan(holes)
    encoder = small_encoder(hidden_layer_sizes=(32,), max_iter=15, learning_rate=5e-3)
    gfe = GradientFlowImputer(encoder=encoder).fit_transform(holes)
    mean = SimpleImputer().fit_transform(holes)
    gfe_error = hidden_entry_error(X, gfe, missing, "rmse")
    assert gfe_error < 0.5 * hidden_entry_error(X, mean, missing, "rmse")


def test_pipeline_before_a_classifier(Xy):
    X, y = Xy
    pipe = make_pipeline(GradientFlowImputer(encoder=small_encoder()), LogisticRegression())
    scores = cross_val_score(pipe, with_holes(X), y, cv=3)
    assert np.isfinite(scores).all()


# -- hidden-entry scoring --------------------------------------------------------------------


def test_hide_entries_hides_observed_entries_and_keeps_one_per_row():
    X = with_holes(np.random.RandomState(1).uniform(size=(500, 6)), 0.5, seed=1)
    hidden = hide_entries(X, 0.8, random_state=0)
    assert not hidden[np.isnan(X)].any()
    left = ~np.isnan(X) & ~hidden
    assert left.any(axis=1).all()
    # Rows with few observed entries keep one back, so less than 0.8 is hidden in all.
    assert 0.55 < hidden.sum() / (~np.isnan(X)).sum() < 0.8
    np.testing.assert_array_equal(hide_entries(X, 0.8, random_state=0), hidden)


def test_hidden_entries_are_not_the_holes_made_with_the_same_seed():
    # Holes drawn as uniform(seed 0) < 0.3 must not be what the scorer picks with seed 0.
    X = np.random.RandomState(1).uniform(size=(50, 10))
    holes = np.where(np.random.RandomState(0).uniform(size=X.shape) < 0.3, np.nan, X)
    hidden = hide_entries(holes, 0.3, random_state=0)
    assert 0.25 < hidden.sum() / (~np.isnan(holes)).sum() <= 0.3


def test_hidden_entry_error_metrics():
    truth = np.array([[0.0, 1.0, 0.5]])
    guess = np.array([[0.5, 0.0, 0.5]])
    hidden = np.array([[True, True, False]])
    rmse = np.sqrt((0.5**2 + 1**2) / 2)
    assert hidden_entry_error(truth, guess, hidden, "rmse") == pytest.approx(rmse)
    bce = -(np.log(0.5) + np.log(1e-7)) / 2
    assert hidden_entry_error(truth, guess, hidden, "bce") == pytest.approx(bce)


def test_scorer_rates_encoders_and_imputers_on_the_same_hidden_entries():
    X = low_rank(n_samples=120)
    scorer = make_hidden_entry_scorer(0.3, random_state=0)
    hidden = hide_entries(X, 0.3, random_state=0)
    masked = np.where(hidden, np.nan, X)
    knn = KNNImputer().fit(X)
    expected = -hidden_entry_error(X, knn.transform(masked), hidden, "rmse")
    assert scorer(knn, X) == pytest.approx(expected)
    encoder = small_encoder(allow_nan=True).fit(X)
    guess = encoder.inverse_transform(encoder.transform(masked))
    assert scorer(encoder, X) == pytest.approx(-hidden_entry_error(X, guess, hidden, "rmse"))
    pipe = make_pipeline(MinMaxScaler(), small_encoder(allow_nan=True)).fit(X)
    assert scorer(pipe, X) < 0
    assert "fraction=0.3" in repr(scorer)


class _Shift(TransformerMixin, BaseEstimator):
    """A transformer without inverse_transform."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(X) + 1.0


def test_scorer_compares_a_scaled_imputing_pipeline_with_x_itself(X):
    # Before: the pipeline's imputed values, still scaled, were compared with X unscaled.
    # Mean imputation commutes with a standard scaler fitted on the same data.
    scorer = make_hidden_entry_scorer(0.3, random_state=0)
    plain = scorer(SimpleImputer().fit(X), X)
    assert scorer(make_pipeline(StandardScaler(), SimpleImputer()).fit(X), X) == pytest.approx(
        plain
    )
    no_inverse = make_pipeline(_Shift(), SimpleImputer()).fit(X)
    with pytest.raises(ValueError, match="have no inverse_transform"):
        scorer(no_inverse, X)


def test_scorer_errors_name_the_problem(X):
    dropped = X.copy()
    dropped[:, 0] = np.nan
    imputer = KNNImputer().fit(dropped)
    with pytest.raises(ValueError, match="keep_empty_features=True"):
        make_hidden_entry_scorer()(imputer, X)
    with pytest.raises(ValueError, match="was hidden.*raise fraction"):
        make_hidden_entry_scorer()(imputer, X[:, :1])
    with pytest.raises(ValueError, match="fraction"):
        make_hidden_entry_scorer(fraction=1.5)


def test_grid_search_picks_n_components_by_hidden_entries():
    X = low_rank(n_samples=400, rank=3)
    encoder = small_encoder(
        hidden_layer_sizes=(32,), max_iter=15, learning_rate=5e-3, allow_nan=True
    )
    search = GridSearchCV(
        encoder, {"n_components": [1, 3]}, cv=2, scoring=make_hidden_entry_scorer(0.3)
    ).fit(X)
    assert search.best_params_ == {"n_components": 3}
    assert np.diff(search.cv_results_["mean_test_score"])[0] > 0


def test_grid_search_over_the_imputers_encoder():
    X = with_holes(low_rank(n_samples=200), 0.3)
    imputer = GradientFlowImputer(encoder=small_encoder(max_iter=3), keep_empty_features=True)
    search = GridSearchCV(
        imputer, {"encoder__n_components": [1, 2]}, cv=2, scoring=make_hidden_entry_scorer(0.3)
    ).fit(X)
    assert (
        search.best_estimator_.encoder_.n_components == search.best_params_["encoder__n_components"]
    )
    assert clone(search.best_estimator_).encoder.n_components in (1, 2)


# -- the prior on the codes ------------------------------------------------------------------


def test_code_prior_zero_encodes_without_a_prior():
    imputer = GradientFlowImputer(encoder=small_encoder(), code_prior=0)
    imputer.fit(with_holes(low_rank(40)))
    assert imputer.code_prior_ == 0.0 and imputer.code_prior_scores_ is None
    assert imputer.code_mean_ is None and imputer.code_scale_ is None


def test_an_imputer_pickled_in_0_5_keeps_its_prior(X):
    import pickle

    holes = with_holes(X)
    for weight in (0.0, 1.0):
        imputer = GradientFlowImputer(encoder=small_encoder(), code_prior=weight).fit(holes)
        expected = imputer.transform(holes)
        old = pickle.loads(pickle.dumps(imputer))
        for name in ("code_prior_", "code_prior_scores_"):  # what 0.5 did not have
            del old.__dict__[name]
        loaded = pickle.loads(pickle.dumps(old))
        assert loaded.code_prior_ == weight
        np.testing.assert_array_equal(loaded.transform(holes), expected)


# code_prior='auto' on data that two factors explain exactly, and on data whose codes overfit.
ENCODER_FOR_TWO_FACTORS = dict(hidden_layer_sizes=(32,), max_iter=15, learning_rate=5e-3)


def test_auto_prior_is_the_default_and_picks_the_best_weight_on_held_out_rows():
    holes = with_holes(low_rank(n_samples=240), 0.3, seed=2)
    imputer = GradientFlowImputer(encoder=small_encoder(**ENCODER_FOR_TWO_FACTORS), random_state=0)
    assert imputer.code_prior == "auto"
    imputer.fit(holes)
    scores = imputer.code_prior_scores_
    assert sorted(scores) == [0.0, 0.03, 0.1, 0.3, 1.0, 3.0]
    assert imputer.code_prior_ == min(scores, key=scores.get)
    # Two factors explain these data exactly: the prior only pulls good codes off.
    assert imputer.code_prior_ == 0.0
    assert scores[3.0] > 2 * scores[0.0]


def test_auto_prior_picks_a_prior_where_codes_overfit():
    # Digits with a barely trained decoder: codes found from 70% of the pixels fit those
    # alone, and the picked prior predicts held-out pixels better than none.
    X = load_digits().data[:600] / 16
    train = with_holes(X[:500], 0.3, seed=1)
    hidden = hide_entries(X[500:], 0.5, random_state=2)
    encoder = GradientFlowEncoder(loss="mse", max_iter=3, device="cpu", random_state=0)
    errors = {}
    for code_prior in (0.0, "auto"):
        imputer = GradientFlowImputer(
            estimate="mode", encoder=encoder, code_prior=code_prior, random_state=0
        )
        filled = imputer.fit(train).transform(np.where(hidden, np.nan, X[500:]))
        errors[code_prior] = np.sqrt(np.mean((filled[hidden] - X[500:][hidden]) ** 2))
    assert imputer.code_prior_ > 0
    assert errors["auto"] < 0.9 * errors[0.0]


def test_auto_prior_is_reproducible_and_needs_20_rows():
    holes = with_holes(low_rank(n_samples=60))
    fits = [GradientFlowImputer(encoder=small_encoder(), random_state=0).fit(holes) for _ in "ab"]
    assert fits[0].code_prior_scores_ == fits[1].code_prior_scores_
    np.testing.assert_array_equal(fits[0].transform(holes), fits[1].transform(holes))
    few = GradientFlowImputer(encoder=small_encoder()).fit(holes[:19])
    assert few.code_prior_ == 0.0 and few.code_prior_scores_ is None


def test_random_state_seeds_an_unseeded_encoder_and_leaves_a_seeded_one():
    holes = with_holes(low_rank(n_samples=60))
    unseeded = small_encoder(random_state=None)

    def imputed(random_state, encoder=unseeded):
        imputer = GradientFlowImputer(encoder=encoder, code_prior=0.0, random_state=random_state)
        return imputer.fit(holes), imputer.transform(holes)

    (first, a), (_, b), (_, c) = imputed(0), imputed(0), imputed(1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert unseeded.random_state is None and first.encoder_.random_state is not None
    seeded, _ = imputed(0, small_encoder(random_state=5))
    assert seeded.encoder_.random_state == 5


def test_code_prior_is_estimated_from_the_training_codes(X):
    holes = with_holes(X)
    imputer = GradientFlowImputer(estimate="mode", encoder=small_encoder(), code_prior=1.0).fit(
        holes
    )
    codes = imputer.encoder_.transform(holes)  # 60 rows: all of them
    np.testing.assert_allclose(imputer.code_mean_, codes.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(imputer.code_scale_, codes.std(axis=0), rtol=1e-6)


def test_code_prior_gives_the_map_code_of_a_linear_decoder():
    # A linear decoder and the squared error make the MAP code a ridge solution:
    # (2 W_o' W_o + c S^-2) z = 2 W_o' (x_o - b_o) + c S^-2 m, o the observed entries.
    X = low_rank(n_features=12)
    holes = with_holes(X, 0.6, seed=1)
    encoder = small_encoder(hidden_layer_sizes=(), loss="mse", stop_tol=1e-10)
    imputer = GradientFlowImputer(estimate="mode", encoder=encoder, code_prior=2.0).fit(holes)
    layer = imputer.encoder_.decoder_[0]
    W, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
    precision = np.diag(2.0 / imputer.code_scale_.astype(float) ** 2)
    filled = imputer.transform(holes[:10])
    for x, row in zip(holes[:10], filled):
        o = ~np.isnan(x)
        z = np.linalg.solve(
            2 * W[o].T @ W[o] + precision,
            2 * W[o].T @ (x[o] - b[o]) + precision @ imputer.code_mean_,
        )
        np.testing.assert_allclose(row[~o], (W @ z + b)[~o], atol=1e-5)


def test_code_prior_pulls_codes_to_the_prior_mean(X):
    holes = with_holes(X, 0.5)
    imputer = GradientFlowImputer(encoder=small_encoder(), code_prior=1.0).fit(holes)
    encoder, mean, scale = imputer.encoder_, imputer.code_mean_, imputer.code_scale_
    # A prior of weight 0 adds exact zeros to each loss and gradient: the same flow.
    np.testing.assert_array_equal(
        encoder._transform_from(holes, prior=(mean, scale, 0.0)), encoder.transform(holes)
    )
    distances = [
        np.linalg.norm((encoder._transform_from(holes, prior=(mean, scale, c)) - mean) / scale)
        for c in (0.0, 1.0, 100.0, 1e8)
    ]
    assert distances[0] > distances[1] > distances[2] > distances[3]
    assert distances[3] < 1e-3 * distances[0]


def test_code_prior_keeps_codes_batch_invariant(X):
    holes = with_holes(X)
    imputer = GradientFlowImputer(encoder=small_encoder(), code_prior=1.0).fit(holes)
    np.testing.assert_array_equal(imputer.transform(holes[:5]), imputer.transform(holes)[:5])


def test_code_prior_must_not_be_negative(X):
    with pytest.raises(ValueError, match="code_prior"):
        GradientFlowImputer(encoder=small_encoder(), code_prior=-1.0).fit(with_holes(X))


# -- the estimate: a sample's own code, or the mean over the training codes ----------------


def test_neighbour_weights_count_as_many_codes_as_asked_and_favour_the_best_fits():
    loss = torch.as_tensor(np.random.RandomState(0).exponential(5.0, size=(4, 300)))
    for n_neighbors in (1, 5, 20):
        weights = neighbour_weights(loss, n_neighbors).numpy()
        np.testing.assert_allclose(weights.sum(axis=1), 1.0)
        np.testing.assert_allclose(1 / (weights**2).sum(axis=1), n_neighbors, rtol=1e-3)
        for w, row in zip(weights, loss.numpy()):
            # Lower losses weigh more: the weights fall as the losses rise.
            order = np.argsort(row)
            assert np.all(np.diff(w[order]) <= 1e-15)
    # Fewer codes than neighbours asked: all of them, evenly.
    np.testing.assert_allclose(neighbour_weights(loss[:, :3], 10).numpy(), 1 / 3)


def _brute_force_mean(imputer, rows):
    """``estimate='mean'`` by its definition, entry by entry."""
    decoded = imputer.encoder_.inverse_transform(imputer.train_codes_).astype(float)
    out = []
    for row in rows:
        seen = ~np.isnan(row)
        if imputer.encoder_.loss_ == "bce":
            p = np.clip(decoded[:, seen], 1e-7, 1 - 1e-7)
            loss = -(row[seen] * np.log(p) + (1 - row[seen]) * np.log1p(-p)).sum(axis=1)
        else:
            loss = ((decoded[:, seen] - row[seen]) ** 2).sum(axis=1)
        weights = neighbour_weights(torch.as_tensor(loss[None]), imputer.n_neighbors_)
        out.append(weights[0].numpy() @ decoded)
    return np.array(out)


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_the_mean_averages_the_training_codes_decoded_by_their_likelihood(X, loss):
    holes = with_holes(X, 0.4)
    imputer = GradientFlowImputer(
        encoder=small_encoder(loss=loss), estimate="mean", n_neighbors=4, code_prior=0
    ).fit(holes)
    assert imputer.estimate_ == "mean" and imputer.n_neighbors_ == 4
    # Every training row's code, found as transform finds a code.
    np.testing.assert_array_equal(imputer.train_codes_, imputer.encoder_.transform(holes))
    filled = imputer.transform(holes[:8])
    missing = np.isnan(holes[:8])
    expected = _brute_force_mean(imputer, holes[:8])
    np.testing.assert_allclose(filled[missing], expected[missing], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(filled[~missing], holes[:8][~missing])


def test_the_mean_of_a_row_is_the_same_bit_for_bit_in_any_batch(X):
    holes = with_holes(X, 0.4)
    imputer = GradientFlowImputer(encoder=small_encoder(), estimate="mean", code_prior=0)
    imputer.fit(holes)
    whole = imputer.transform(holes)
    np.testing.assert_array_equal(imputer.transform(holes[3:8]), whole[3:8])
    np.testing.assert_array_equal(imputer.transform(holes[::-1]), whole[::-1])


def test_blend_is_the_average_of_the_mode_and_the_mean(X):
    holes = with_holes(X, 0.4)
    settings = dict(encoder=small_encoder(), n_neighbors=3, code_prior=0)
    blend = GradientFlowImputer(estimate="blend", **settings).fit(holes)
    mode = blend._mode(holes)
    mean = blend._posterior_mean(holes, blend.train_codes_, 3)
    missing = np.isnan(holes)
    np.testing.assert_allclose(blend.transform(holes)[missing], ((mode + mean) / 2)[missing])


def test_auto_estimate_keeps_the_choice_that_imputes_held_out_rows_best():
    holes = with_holes(low_rank(n_samples=240), 0.3, seed=2)
    imputer = GradientFlowImputer(encoder=small_encoder(), random_state=0).fit(holes)
    assert imputer.estimate == "auto" and imputer.n_neighbors == "auto"
    scores = imputer.estimate_scores_
    assert set(scores) == {("mode", None)} | {
        (kind, k) for kind in ("mean", "blend") for k in (5, 10, 20)
    }
    assert (imputer.estimate_, imputer.n_neighbors_) == min(scores, key=scores.get)
    # The held-out rows (one in ten) are among the codes transform averages over.
    if imputer.estimate_ != "mode":
        assert len(imputer.train_codes_) == len(holes)
    again = GradientFlowImputer(encoder=small_encoder(), random_state=0).fit(holes)
    assert again.estimate_scores_ == scores


def test_a_given_number_of_neighbours_leaves_only_the_estimate_open():
    holes = with_holes(low_rank(n_samples=120), 0.3, seed=2)
    imputer = GradientFlowImputer(
        encoder=small_encoder(), code_prior=0.0, n_neighbors=7, random_state=0
    ).fit(holes)
    assert set(imputer.estimate_scores_) == {("mode", None), ("mean", 7), ("blend", 7)}
    assert imputer.code_prior_scores_ is None


def test_the_mean_hedges_where_the_observed_entries_fit_two_completions():
    # Two kinds of rows share their first entries and differ in the last: with the last
    # hidden, the mean imputes near the middle, which errs less than the sample's own code.
    rng = np.random.RandomState(0)
    first = rng.uniform(0.2, 0.8, size=(400, 1)) * np.ones((1, 6))
    kind = rng.uniform(size=(400, 1)) < 0.5
    X = np.hstack([first, np.where(kind, 0.1, 0.9) * np.ones((1, 2))])
    encoder = small_encoder(hidden_layer_sizes=(16,), max_iter=30, learning_rate=1e-2)
    imputer = GradientFlowImputer(
        encoder=encoder, estimate="mean", n_neighbors=20, code_prior=0
    ).fit(with_holes(X, 0.1, seed=1))
    test = X[:100].copy()
    test[:, 6:] = np.nan
    mean, mode = imputer.transform(test)[:, 6:], imputer._mode(test)[:, 6:]
    assert abs(mean.mean() - 0.5) < 0.1 and np.abs(mean - 0.5).mean() < 0.2
    errors = [np.sqrt(np.mean((guess - X[:100, 6:]) ** 2)) for guess in (mean, mode)]
    assert errors[0] < 0.9 * errors[1]


def test_few_rows_are_imputed_by_their_own_codes():
    few = GradientFlowImputer(encoder=small_encoder()).fit(with_holes(low_rank(n_samples=60))[:19])
    assert few.estimate_ == "mode" and few.n_neighbors_ is None
    assert few.train_codes_ is None and few.estimate_scores_ is None


def test_estimate_and_neighbours_are_checked(X):
    with pytest.raises(ValueError, match="estimate"):
        GradientFlowImputer(encoder=small_encoder(), estimate="median").fit(with_holes(X))
    with pytest.raises(ValueError, match="n_neighbors"):
        GradientFlowImputer(encoder=small_encoder(), n_neighbors=0).fit(with_holes(X))


# -- several starts ---------------------------------------------------------------------------


def test_one_start_is_the_encoders_own_start(X):
    imputer = GradientFlowImputer(encoder=small_encoder(), code_prior=0).fit(with_holes(X))
    np.testing.assert_array_equal(imputer.start_codes_, np.zeros((1, 2)))
    assert imputer.code_mean_ is None


@pytest.mark.parametrize("code_prior", [0.0, 1.0])
def test_n_starts_fills_holes_with_the_mean_reconstruction_over_the_starts(X, code_prior):
    holes = with_holes(X, 0.5)
    imputer = GradientFlowImputer(
        estimate="mode", encoder=small_encoder(), n_starts=3, code_prior=code_prior, random_state=0
    ).fit(holes)
    encoder, starts = imputer.encoder_, imputer.start_codes_
    assert starts.shape == (3, 2) and not starts[0].any() and starts[1:].all()
    prior = (imputer.code_mean_, imputer.code_scale_, code_prior) if code_prior else None
    codes = [encoder._transform_from(holes, start, prior) for start in starts]
    if not code_prior:
        # The starts lead some samples to other codes (the prior makes these samples' loss
        # convex enough that every start ends at one MAP code).
        assert np.abs(codes[1] - codes[0]).max() > 1e-2
    expected = np.mean([encoder.inverse_transform(c) for c in codes], axis=0)
    filled = imputer.transform(holes)
    missing = np.isnan(holes)
    np.testing.assert_allclose(filled[missing], expected[missing], rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(filled[~missing], holes[~missing])


def test_n_starts_draws_are_reproducible_and_keep_rows_batch_invariant(X):
    holes = with_holes(X)
    make = partial(GradientFlowImputer, encoder=small_encoder(), n_starts=3)
    imputer = make(random_state=0).fit(holes)
    np.testing.assert_array_equal(
        imputer.start_codes_, make(random_state=0).fit(holes).start_codes_
    )
    assert not np.allclose(imputer.start_codes_, make(random_state=1).fit(holes).start_codes_)
    np.testing.assert_array_equal(imputer.transform(holes[:5]), imputer.transform(holes)[:5])


def test_an_imputer_pickled_before_code_prior_and_n_starts_imputes_as_it_did(X):
    import pickle

    holes = with_holes(X)
    # Before these parameters, an imputer encoded without a prior, from one start.
    imputer = GradientFlowImputer(encoder=small_encoder(), code_prior=0).fit(holes)
    expected = imputer.transform(holes)
    old = pickle.loads(pickle.dumps(imputer))
    for name in ("code_prior", "n_starts", "random_state", "code_mean_", "code_scale_"):
        del old.__dict__[name]
    for name in ("code_prior_", "code_prior_scores_"):
        del old.__dict__[name]
    del old.__dict__["start_codes_"]
    loaded = pickle.loads(pickle.dumps(old))
    np.testing.assert_array_equal(loaded.transform(holes), expected)
    assert loaded.get_params()["n_starts"] == 1 and loaded.code_prior == 0.0


# -- n_estimators ----------------------------------------------------------------------------


def test_members_average_to_the_imputation_and_the_first_is_the_lone_imputer():
    holes = with_holes(low_rank(n_samples=60))
    lone = GradientFlowImputer(encoder=small_encoder(), random_state=0).fit(holes)
    imputer = GradientFlowImputer(encoder=small_encoder(), n_estimators=3, random_state=0)
    filled = imputer.fit(holes).transform(holes)
    members = imputer.estimators_
    assert len(members) == 3 and all(m.n_estimators == 1 for m in members)
    np.testing.assert_array_equal(members[0].transform(holes), lone.transform(holes))
    each = [m.transform(holes) for m in members]
    np.testing.assert_allclose(filled, np.mean(each, axis=0), rtol=1e-6)
    # The encoder passed is seeded, yet the members' decoders differ.
    assert len({m.encoder_.random_state for m in members}) == 3
    assert not np.allclose(each[1], each[2])
    assert imputer.encoder_ is members[0].encoder_
    assert imputer.code_prior_ == members[0].code_prior_
    np.testing.assert_array_equal(filled[~np.isnan(holes)], holes[~np.isnan(holes)])


def test_members_are_reproducible_and_a_refit_with_one_drops_them():
    holes = with_holes(low_rank(n_samples=60))
    unseeded = small_encoder(random_state=None)

    def fitted(random_state):
        return GradientFlowImputer(
            encoder=unseeded, code_prior=0.0, n_estimators=2, random_state=random_state
        ).fit(holes)

    a, b, c = fitted(0), fitted(0), fitted(1)
    np.testing.assert_array_equal(a.transform(holes), b.transform(holes))
    assert not np.allclose(a.transform(holes), c.transform(holes))
    # The first member's encoder seed is not reused by the second.
    assert a.estimators_[0].encoder_.random_state != a.estimators_[1].encoder_.random_state
    first = b.estimators_[0].transform(holes)
    a.set_params(n_estimators=1).fit(holes)
    assert not hasattr(a, "estimators_")
    # The first member is the imputer that n_estimators=1 fits: the same seeded fit.
    np.testing.assert_array_equal(a.transform(holes), first)


def test_members_keep_the_placeholder_indicator_and_empty_features():
    X = low_rank(n_samples=60)
    holes = np.where(np.isnan(with_holes(X)), -1.0, X)
    holes[:, 0] = -1.0
    imputer = GradientFlowImputer(
        encoder=small_encoder(),
        missing_values=-1.0,
        add_indicator=True,
        keep_empty_features=True,
        n_estimators=2,
        random_state=0,
    ).fit(holes)
    filled = imputer.transform(holes)
    n_features = X.shape[1]
    assert filled.shape[1] > n_features
    np.testing.assert_array_equal(filled[:, n_features:], holes == -1.0)
    assert (filled[:, 0] == 0).all() and not (filled[:, :n_features] == -1.0).any()


def test_members_in_parallel_processes_impute_as_in_one():
    holes = with_holes(low_rank(n_samples=60))

    def fitted(n_jobs):
        return GradientFlowImputer(
            encoder=small_encoder(), code_prior=0.0, n_estimators=2, n_jobs=n_jobs, random_state=0
        ).fit(holes)

    alone, parallel = fitted(None), fitted(2)
    assert parallel.estimators_[1].encoder_.n_iter_ == alone.estimators_[1].encoder_.n_iter_
    expected = alone.transform(holes)
    # The same seeded fits on one torch thread (n_threads=1) in another process: identical
    # arithmetic.
    np.testing.assert_array_equal(parallel.transform(holes), expected)
    # Members fitted in one process and run in two.
    np.testing.assert_array_equal(alone.set_params(n_jobs=2).transform(holes), expected)


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_members_warnings_reach_the_caller(n_jobs):
    holes = with_holes(low_rank(n_samples=60))
    encoder = small_encoder(max_iter=1)
    imputer = GradientFlowImputer(encoder=encoder, code_prior=0.0, n_estimators=2, n_jobs=n_jobs)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        imputer.fit(holes)


def test_an_imputer_pickled_before_n_estimators_has_one(X):
    import pickle

    holes = with_holes(X)
    imputer = GradientFlowImputer(encoder=small_encoder(), code_prior=0.0).fit(holes)
    old = pickle.loads(pickle.dumps(imputer))
    del old.__dict__["n_estimators"], old.__dict__["n_jobs"]
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.n_estimators == 1 and loaded.n_jobs is None
    np.testing.assert_array_equal(loaded.transform(holes), imputer.transform(holes))


def test_members_refuse_data_without_an_observed_entry_naming_the_placeholder():
    imputer = GradientFlowImputer(encoder=small_encoder(), missing_values=-1.0, n_estimators=2)
    with pytest.raises(ValueError, match=r"no observed entry.*missing_values=-1\.0"):
        imputer.fit(np.full((5, 3), -1.0))
