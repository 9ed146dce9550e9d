"""On a Dask cluster, searches and chunked arrays give what one process gives (docs/scaling.md).

Every test runs on one real two-process ``LocalCluster``: its workers unpickle the estimators
as the workers of a remote cluster would.
"""

import pickle
import sys
import warnings

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import gfe_sklearn
from gfe_sklearn import GradientFlowEncoder, GradientFlowImputer

dask = pytest.importorskip("dask", reason="needs the distributed extra")
da = pytest.importorskip("dask.array", reason="needs the distributed extra")
distributed = pytest.importorskip("distributed", reason="needs the distributed extra")
wrappers = pytest.importorskip("dask_ml.wrappers", reason="needs the distributed extra")
cloudpickle = pytest.importorskip("cloudpickle", reason="needs the distributed extra")

pytestmark = [
    pytest.mark.dask,
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]

# n_threads=1 runs the same kernels here and in the workers (which Dask starts with one
# OpenMP thread), whatever thread count this process has.
SETTINGS = dict(
    n_components=2,
    hidden_layer_sizes=(8,),
    max_iter=2,
    batch_size=16,
    device="cpu",
    random_state=0,
    n_threads=1,
)
LARGE_GRAPH = "Sending large graph"


@pytest.fixture(scope="module")
def client():
    # The workers cannot import this module (tests/ is not installed), so the functions it
    # hands them travel by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    try:
        with distributed.Client(cluster) as client:
            yield client
    finally:
        cluster.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:240] / 16, y[:240]


@pytest.fixture(scope="module")
def fitted(digits):
    return GradientFlowEncoder(**SETTINGS).fit(digits[0])


def chunked(X):
    # Chunks of 50 rows and a last one of 40: other batches than the in-memory call's.
    return da.from_array(X, chunks=(50, -1))


def transform(block, estimator):
    return estimator.transform(block)


def inverse_transform(block, estimator):
    return estimator.inverse_transform(block)


def score_samples(block, estimator):
    return estimator.score_samples(block)


def test_the_workers_import_the_package_under_test(client):
    # Spawned workers import the package afresh; another copy would test other code.
    def where():
        return gfe_sklearn.__file__

    assert set(client.run(where).values()) == {gfe_sklearn.__file__}


@pytest.mark.parametrize("with_classifier", [True, False], ids=["pipeline", "encoder"])
def test_a_grid_search_on_the_dask_backend_equals_the_local_search(client, digits, with_classifier):
    X, y = digits
    gfe = GradientFlowEncoder(**SETTINGS)
    estimator = (
        make_pipeline(gfe, StandardScaler(), LogisticRegression()) if with_classifier else gfe
    )
    prefix = "gradientflowencoder__" if with_classifier else ""
    grid = {f"{prefix}solver": ["lbfgs", "amd"]}
    # refit=False: the refit runs here either way, so it would compare nothing.
    search = GridSearchCV(estimator, grid, cv=2, refit=False)
    y_fit = y if with_classifier else None
    local = search.fit(X, y_fit).cv_results_["mean_test_score"]
    with distributed.get_task_stream(client) as tasks, joblib.parallel_config(backend="dask"):
        remote = GridSearchCV(estimator, grid, cv=2, refit=False, n_jobs=2).fit(X, y_fit)
    assert len(tasks.data) >= 4  # the 2 candidates x 2 folds ran on the cluster
    assert remote.best_params_ == search.best_params_
    # Exact: the same data, seeds and single-threaded kernels give the same floats in any
    # process on one machine. The pipeline scores accuracies; the encoder alone scores
    # minus the mean cross-entropy, a continuous score that any difference in a fit moves.
    np.testing.assert_array_equal(remote.cv_results_["mean_test_score"], local)


def test_parallel_post_fit_transforms_chunks_as_in_memory(client, digits, fitted):
    X = digits[0]
    codes = wrappers.ParallelPostFit(fitted).transform(chunked(X))
    assert isinstance(codes, da.Array)
    np.testing.assert_array_equal(codes.compute(), fitted.transform(X))


def test_map_blocks_with_the_scattered_model_equals_in_memory(client, digits, fitted):
    X = digits[0]
    estimator = client.scatter(fitted, broadcast=True)
    Xd = chunked(X)
    codes = Xd.map_blocks(
        transform, estimator=estimator, chunks=(Xd.chunks[0], (2,)), dtype=Xd.dtype
    )
    decoded = codes.map_blocks(
        inverse_transform, estimator=estimator, chunks=Xd.chunks, dtype=Xd.dtype
    )
    scores = Xd.map_blocks(score_samples, estimator=estimator, drop_axis=1, dtype=Xd.dtype)
    codes, decoded, scores = dask.compute(codes, decoded, scores)
    np.testing.assert_array_equal(codes, fitted.transform(X))
    np.testing.assert_array_equal(decoded, fitted.inverse_transform(fitted.transform(X)))
    np.testing.assert_array_equal(scores, fitted.score_samples(X))
    assert np.mean(scores, dtype=np.float64) == fitted.score(X)


def test_a_scattered_10_mb_model_sends_no_large_graph(client):
    # A decoder 784 features wide with hidden layers of 300, 600 and 1,200 units: 15 MB
    # pickled with its optimizer's state, above Dask's 10 MB threshold, so a graph that
    # holds it warns.
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(300, 784))
    big = GradientFlowEncoder(
        hidden_layer_sizes=(300, 600, 1200), max_iter=1, device="cpu", random_state=0, n_threads=1
    ).fit(X)
    assert len(pickle.dumps(big)) > 10e6
    Xd = da.from_array(X[:100], chunks=(25, -1))
    chunks = (Xd.chunks[0], (big.n_components,))

    with pytest.warns(UserWarning, match=LARGE_GRAPH):
        inline = wrappers.ParallelPostFit(big).transform(Xd).compute()
    estimator = client.scatter(big, broadcast=True)
    assert len(client.who_has(estimator)[estimator.key]) == 2  # on both workers
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=LARGE_GRAPH)
        codes = Xd.map_blocks(transform, estimator=estimator, chunks=chunks, dtype=Xd.dtype)
        scattered = codes.compute()
    np.testing.assert_array_equal(scattered, inline)
    np.testing.assert_array_equal(scattered, big.transform(X[:100]))


def test_incremental_trains_block_by_block_as_partial_fit_calls_do(client, digits):
    X = digits[0]
    incremental = wrappers.Incremental(GradientFlowEncoder(**SETTINGS), shuffle_blocks=False)
    with distributed.get_task_stream(client) as tasks:
        incremental.fit(chunked(X))
    # A partial_fit task per block ran on the cluster (besides one that holds the model).
    assert sum(str(task["key"]).startswith("('fit-") for task in tasks.data) >= 5
    local = GradientFlowEncoder(**SETTINGS)
    for start in range(0, len(X), 50):
        local.partial_fit(X[start : start + 50])
    # partial_fit makes one pass over its rows per call: one epoch per block.
    assert incremental.estimator_.n_iter_ == local.n_iter_ == 5
    codes = incremental.transform(chunked(X))
    np.testing.assert_array_equal(codes.compute(), local.transform(X))


def test_the_imputer_fills_chunks_as_in_memory(client, digits):
    X = digits[0].copy()
    X[np.random.RandomState(0).uniform(size=X.shape) < 0.2] = np.nan
    imputer = GradientFlowImputer(encoder=GradientFlowEncoder(**SETTINGS), random_state=0)
    expected = imputer.fit(X).transform(X)
    Xd = chunked(X)
    filled = wrappers.ParallelPostFit(imputer).transform(Xd)
    np.testing.assert_array_equal(filled.compute(), expected)
    estimator = client.scatter(imputer, broadcast=True)
    filled = Xd.map_blocks(
        transform,
        estimator=estimator,
        chunks=(Xd.chunks[0], (expected.shape[1],)),
        dtype=Xd.dtype,
    )
    np.testing.assert_array_equal(filled.compute(), expected)
