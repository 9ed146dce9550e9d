"""Batch invariance of ``transform`` for every solver, and what the row layout costs.

Usage::

    python benchmarks/bench_batch_invariance.py [--solvers amd lbfgs] [--dtypes float32] \
        [--n-components 6] [--hidden 32] [--threads 1] [--device cpu] [--repeats 3]

On scikit-learn's digits / 16: an encoder is fitted on 200 rows (one epoch, batch 32), then
``transform`` of 128 further rows is compared with ``transform`` of 17 of them alone. For
every solver and dtype it prints the largest difference in the codes (0: bit-identical),
the time of ``transform`` of the 128 rows in the layout that gives invariance and with the
whole batch in one decoder call (``row_chunk=None``, no invariance), their ratio from the
same run, and the mean loss each reaches (the same up to rounding).
"""

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits

from gfe_sklearn import GradientFlowEncoder
from gfe_sklearn.flow import SOLVERS


def fitted(solver, dtype, n_components, hidden, device):
    X = load_digits().data / 16.0
    est = GradientFlowEncoder(
        n_components=n_components,
        hidden_layer_sizes=hidden,
        batch_size=32,
        max_iter=1,
        solver=solver,
        compute_dtype=dtype,
        device=device,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X[:200])
    return est, X[200:328]


def subset_difference(est, X, subset):
    whole = est.transform(X)
    alone = est.transform(X[subset])
    return float(np.abs(whole[subset] - alone).max())


def timed_transform(est, X, row_chunk, repeats):
    """Best time of ``transform`` with the encoder's flow in the given row layout."""
    flow = est._flow
    est._flow = lambda *a, **k: flow(*a, **{**k, "row_chunk": row_chunk})
    try:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            loss = -est.score(X)
            times.append(time.perf_counter() - start)
    finally:
        del est._flow
    return min(times), loss


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solvers", nargs="+", default=sorted(SOLVERS))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--n-components", type=int, default=6)
    parser.add_argument("--hidden", type=int, nargs="+", default=[32])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    subset = np.random.RandomState(0).choice(128, 17, replace=False)
    capability = torch.backends.cpu.get_cpu_capability()
    print(
        f"device={args.device} cpu_capability={capability} threads={args.threads} "
        f"n_components={args.n_components} hidden={tuple(args.hidden)} torch {torch.__version__}"
    )
    print(
        f"{'solver':7s} {'dtype':7s} {'max |diff|':>10s} {'invariant s':>11s} "
        f"{'one call s':>10s} {'ratio':>6s} {'loss':>8s} {'loss 1call':>10s}"
    )
    for solver in args.solvers:
        for dtype in args.dtypes:
            est, X = fitted(solver, dtype, args.n_components, tuple(args.hidden), args.device)
            est.n_threads = args.threads
            diff = subset_difference(est, X, subset)
            chunked, loss = timed_transform(est, X, "auto", args.repeats)
            single, loss_single = timed_transform(est, X, None, args.repeats)
            print(
                f"{solver:7s} {dtype:7s} {diff:10.2e} {chunked:11.4f} {single:10.4f} "
                f"{chunked / single:6.2f} {loss:8.5f} {loss_single:10.5f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
