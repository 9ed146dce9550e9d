"""Data-parallel training on torch.distributed: two gloo ranks on the CPU against one process.

One ``torchrun --standalone --nproc-per-node 2`` run of this file (``python -m
torch.distributed.run``, as docs/scaling.md launches a script) trains every scenario below on
both ranks; each rank writes what it ended with, and the tests compare the ranks with each
other and with the same fit in this process.
"""

import os
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder, _distributed

dist = torch.distributed

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()),
        reason="needs torch.distributed with the gloo backend",
    ),
]

SMALL = dict(n_components=4, hidden_layer_sizes=(16,), device="cpu", n_threads=1)
# The ranks sum their halves of every gradient where one process sums it whole: the same
# up to rounding, which training amplifies (RMSprop divides small gradients by their own
# size; a flow stops a step earlier or later). In float64 a few epochs stay within 1e-9 of
# one process. In float32 the differences grow as between one-process fits with n_threads=1
# and 2: two epochs of SMALL with batches of 24 and random_state=1 end 6e-5 apart in both
# cases; one epoch stays within 1e-6.
F64 = dict(SMALL, compute_dtype="float64")
TIGHT, FLOAT32 = dict(rtol=1e-7, atol=1e-8), dict(rtol=1e-5, atol=1e-5)

# Every scenario: the estimator, how each rank calls it, and how close to one process it
# ends. 289 digits in batches of 24 end on a batch of one row (fewer rows than ranks);
# batches of 25 split 13/12 between the ranks.
SCENARIOS = {
    "float32": (GradientFlowEncoder(**SMALL, batch_size=25, max_iter=1, random_state=0), "fit"),
    "lbfgs": (GradientFlowEncoder(**F64, batch_size=25, max_iter=3, random_state=0), "fit"),
    "encoder, hidden entries": (
        GradientFlowEncoder(
            **F64,
            batch_size=24,
            max_iter=2,
            code_init="encoder",
            fit_hide_fraction=0.5,
            random_state=1,
        ),
        "fit",
    ),
    "rk4, full adjoint, early stopping": (
        GradientFlowEncoder(
            **F64,
            solver="rk4",
            n_steps=8,
            tau=10.0,
            adjoint="full",  # the gradient reaches the decoder through the flow's calls too
            batch_size=32,
            max_iter=6,
            early_stopping=True,
            validation_fraction=0.2,
            n_iter_no_change=1,
            tol=10.0,  # no epoch gains this much: stops after the third
            random_state=2,
        ),
        "fit",
    ),
    "autoencoder, max_samples, warm_start": (
        AutoEncoderBaseline(**F64, batch_size=32, max_iter=4, max_samples=500, random_state=3),
        "fit, warm fit",
    ),
    # The prior is sized by the mean square of the whole batch's codes, gathered from the ranks.
    "partial_fit, code_prior": (
        GradientFlowEncoder(**F64, batch_size=25, code_prior=0.3, random_state=4),
        "partial_fit x2",
    ),
    # Every rank sees the same X, so loss='auto' chooses alike: mse for data outside [0, 1].
    "loss='auto' on centred data": (
        GradientFlowEncoder(**F64, batch_size=25, max_iter=2, random_state=9),
        "fit centred",
    ),
}

# A forward pass of the decoder in train mode (one per batch) at which one rank gets Ctrl-C
# (SIGINT) or, as torchrun passes Ctrl-C on, SIGTERM.
INTERRUPT_AT = 3
INTERRUPTS = {"SIGINT": (1, signal.SIGINT), "SIGTERM": (0, signal.SIGTERM)}

SEARCH = GridSearchCV(
    GradientFlowEncoder(**F64, batch_size=32, max_iter=1, random_state=8),
    {"learning_rate": [1e-3, 1e-2]},
    cv=2,
)


def digits():
    X = load_digits().data[:289] / 16.0
    return X


def train(estimator, calls, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if calls == "fit":
            estimator.fit(X)
        elif calls == "fit centred":
            estimator.fit(X - 0.5)
        elif calls == "fit, warm fit":
            estimator.fit(X).set_params(warm_start=True, max_samples=None, max_iter=1).fit(X)
        else:
            estimator.partial_fit(X[:150]).partial_fit(X[150:])
    return estimator


def record(estimator):
    return {
        "weights": [
            t.detach().cpu().numpy().copy()
            for m in estimator._modules()
            for t in m.state_dict().values()
        ],
        "loss_curve_": list(estimator.loss_curve_),
        "validation_scores_": estimator.validation_scores_,
        "n_iter_": estimator.n_iter_,
        "n_samples_seen_": estimator.n_samples_seen_,
        "loss_": estimator.loss_,
        "code_mean_square_": getattr(estimator, "code_mean_square_", None),
    }


class _SelfInterrupt(torch.nn.Module):
    """A decoder that sends its process ``signum`` in its ``at``-th forward pass in train
    mode."""

    def __init__(self, at, signum):
        super().__init__()
        self.inner = torch.nn.Sequential(
            torch.nn.Linear(4, 16), torch.nn.ELU(), torch.nn.Linear(16, 64)
        )
        self.at, self.signum, self.calls = at, signum, 0

    def forward(self, z):
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                os.kill(os.getpid(), self.signum)
        return self.inner(z)


def rank_main(out):
    """What each rank of the torchrun run does; writes ``rank{r}.pkl`` into ``out``."""
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    np.random.seed(rank)  # random_state=None must still give the ranks one model
    X = digits()
    results = {}
    # Each rank's share of the rows, gathered in row order (the distillation's encoding).
    parallel = _distributed.DataParallel()
    sums = [parallel.map_rows(rows, lambda part: part.sum(axis=1)) for rows in (X, X[:1])]
    results["map_rows"] = [bool(np.array_equal(s, x.sum(axis=1))) for s, x in zip(sums, (X, X[:1]))]
    for name, (estimator, calls) in SCENARIOS.items():
        results[name] = record(train(clone(estimator), calls, X))

    unseeded = train(GradientFlowEncoder(**SMALL, batch_size=25, max_iter=1), "fit", X)
    results["random_state=None"] = record(unseeded)

    own = X[rank::2]  # each rank its own data, trained alone
    alone = GradientFlowEncoder(**SMALL, max_iter=1, random_state=5, distributed=False)
    results["distributed=False"] = record(train(alone, "fit", own))

    try:
        GradientFlowEncoder(**SMALL, max_iter=1, random_state=6).fit(own)
    except ValueError as error:
        results["different X"] = str(error)

    for name, (interrupted_rank, signum) in INTERRUPTS.items():
        at = INTERRUPT_AT if rank == interrupted_rank else None
        interrupted = GradientFlowEncoder(
            **SMALL, batch_size=25, max_iter=2, random_state=7, decoder=_SelfInterrupt(at, signum)
        )
        try:
            interrupted.fit(X)
        except KeyboardInterrupt:
            results[name] = record(interrupted)
        # The signals act as before the fit again.
        results[name + " handler"] = signal.getsignal(signum) in (
            signal.default_int_handler,
            signal.SIG_DFL,
        )

    search = clone(SEARCH).fit(X)
    results["search"] = (search.best_params_, list(search.cv_results_["mean_test_score"]))

    fitted = clone(SCENARIOS["lbfgs"][0]).set_params(max_iter=1).fit(X)
    fitted.save(Path(out) / f"saved-by-rank{rank}.safetensors")
    with open(Path(out) / f"rank{rank}.pkl", "wb") as file:
        pickle.dump(results, file)
    dist.barrier()  # a rank that leaves the group while another still works aborts it
    dist.destroy_process_group()
    # torch's gloo can still abort a rank as the interpreter finalizes (SIGABRT,
    # "terminate called without an active exception", pytorch/pytorch#179291): seen in
    # 5 of about 60 runs here. Everything is written: leave without finalizing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        __file__,
        str(out),
    ]
    # The ranks import this checkout's package, as this process does.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    results = []
    for rank in range(2):
        with open(out / f"rank{rank}.pkl", "rb") as file:
            results.append(pickle.load(file))
    return out, results


def assert_same(a, b, rtol=0.0, atol=0.0):
    for x, y in zip(a["weights"], b["weights"], strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)
    np.testing.assert_allclose(a["loss_curve_"], b["loss_curve_"], rtol=rtol)
    if a["validation_scores_"] is not None:
        np.testing.assert_allclose(a["validation_scores_"], b["validation_scores_"], rtol=rtol)
    assert (a["n_iter_"], a["n_samples_seen_"]) == (b["n_iter_"], b["n_samples_seen_"])
    assert a["loss_"] == b["loss_"]
    if a["code_mean_square_"] is not None:
        np.testing.assert_allclose(a["code_mean_square_"], b["code_mean_square_"], rtol=rtol)
    else:
        assert b["code_mean_square_"] is None


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_ranks_end_with_the_one_process_fit(ranks, name):
    _, (rank0, rank1) = ranks
    assert_same(rank0[name], rank1[name])  # bit for bit: the ranks apply the same updates
    estimator, calls = SCENARIOS[name]
    alone = record(train(clone(estimator), calls, digits()))
    assert_same(rank0[name], alone, **(FLOAT32 if name == "float32" else TIGHT))
    assert rank0[name]["loss_"] == ("mse" if "centred" in name else "bce")


def test_early_stopping_stops_every_rank_at_the_same_epoch(ranks):
    _, (rank0, rank1) = ranks
    result = rank0["rk4, full adjoint, early stopping"]
    assert (
        result["n_iter_"]
        == 3
        == len(result["validation_scores_"])
        == rank1["rk4, full adjoint, early stopping"]["n_iter_"]
    )


def test_an_unseeded_fit_gives_the_ranks_one_model(ranks):
    _, (rank0, rank1) = ranks
    assert_same(rank0["random_state=None"], rank1["random_state=None"])


def test_distributed_false_trains_each_rank_alone_on_its_data(ranks):
    _, results = ranks
    X = digits()
    for rank, result in enumerate(results):
        alone = GradientFlowEncoder(**SMALL, max_iter=1, random_state=5, distributed=False)
        assert_same(result["distributed=False"], record(train(alone, "fit", X[rank::2])))
    assert (
        results[0]["distributed=False"]["loss_curve_"]
        != results[1]["distributed=False"]["loss_curve_"]
    )


def test_ranks_gather_what_each_computed_on_its_share_of_the_rows(ranks):
    _, results = ranks
    for result in results:
        assert result["map_rows"] == [True, True]  # 289 rows, and 1 row (not split)


def test_ranks_with_different_data_are_refused_by_name(ranks):
    _, results = ranks
    for result in results:
        assert "with different X" in result["different X"]
        assert "distributed=False" in result["different X"]


@pytest.mark.parametrize("name", list(INTERRUPTS))
def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_update(ranks, name):
    _, (rank0, rank1) = ranks
    assert_same(rank0[name], rank1[name])
    # The interrupt came in the third batch: two updates made, no epoch complete.
    assert rank0[name]["n_samples_seen_"] == 2 * 25
    assert rank0[name]["n_iter_"] == 0
    assert rank0[name + " handler"] and rank1[name + " handler"]


def test_a_search_run_alike_on_every_rank_fits_each_candidate_data_parallel(ranks):
    _, (rank0, rank1) = ranks
    alone = clone(SEARCH).fit(digits())
    assert rank0["search"][0] == rank1["search"][0] == alone.best_params_
    np.testing.assert_allclose(rank0["search"][1], rank1["search"][1], rtol=0)
    np.testing.assert_allclose(rank0["search"][1], alone.cv_results_["mean_test_score"], **TIGHT)


def test_save_writes_on_rank_0_only(ranks):
    out, _ = ranks
    assert (out / "saved-by-rank0.safetensors").is_file()
    assert not (out / "saved-by-rank1.safetensors").exists()
    loaded = GradientFlowEncoder.load(out / "saved-by-rank0.safetensors")
    assert loaded.n_iter_ == 1 and loaded.distributed == "auto"


def test_each_rank_takes_its_local_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert _distributed.local_gpu(rank=5) == 1  # torchrun's LOCAL_RANK, on any machine
    monkeypatch.delenv("LOCAL_RANK")
    assert _distributed.local_gpu(rank=0) == 0  # one machine, no LOCAL_RANK: the rank
    with pytest.raises(ValueError, match="start one rank per GPU"):
        _distributed.local_gpu(rank=2)


def test_the_parameter_is_checked_and_cloned():
    with pytest.raises(ValueError, match="'distributed' parameter"):
        GradientFlowEncoder(distributed="yes").fit(digits())
    with pytest.raises(ValueError, match="no torch.distributed process group"):
        GradientFlowEncoder(**SMALL, distributed=True).fit(digits())
    assert clone(AutoEncoderBaseline(distributed=False)).get_params()["distributed"] is False


if __name__ == "__main__":
    rank_main(sys.argv[1])
