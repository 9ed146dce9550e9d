"""``transform`` of chunked rows on a local Dask cluster against one process.

Usage::

    python benchmarks/bench_dask_transform.py [--n-rows 100000] [--n-workers 2]
        [--chunk-rows 5000] [--repeats 3] [--max-iter 5]
        [--dataset {auto,digits,mnist}] [--dask-malloc-trim]

Fits a small ``GradientFlowEncoder`` (8 components, one hidden layer of 64, ``--max-iter``
epochs, the default solver and ``code_init``) on scikit-learn's digits scaled to [0, 1], or on
the first 2,000 MNIST training images (``--dataset mnist``; ``auto`` takes MNIST when
``GFE_SKLEARN_DATA`` is set). Encodes ``--n-rows`` rows drawn uniformly from [0, 1] (a
seeded ``dask.array.random`` array, so the workers make their own chunks and the data are
not shipped in the graph), once with ``transform`` in this process and once with
``map_blocks`` on a ``LocalCluster`` of ``--n-workers`` processes with one thread each,
the model scattered to every worker beforehand (docs/scaling.md). The workers start without
the ``MALLOC_TRIM_THRESHOLD_=65536`` that Dask sets for them by default, as docs/scaling.md
advises (``--dask-malloc-trim`` keeps it, to measure its cost). Every process runs
torch on one thread. Both runs are warmed up on a chunk per worker first; ``--repeats``
alternating runs follow. Prints the seconds of each, their ratio pair by pair, the CPU seconds each
used (this process's; the workers' together, their Dask threads included) and whether the
codes are identical: the speed-up is only worth quoting at the same result. The ratio needs
``--n-workers`` free cores; on a loaded machine it says little, and the CPU seconds show
what the cluster costs in work instead.
"""

import argparse
import os
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from gfe_sklearn import GradientFlowEncoder


def training_images(dataset):
    if dataset == "auto":
        dataset = "mnist" if os.environ.get("GFE_SKLEARN_DATA") else "digits"
    if dataset == "mnist":
        from gfe_sklearn.datasets import load_mnist

        return "MNIST, 2,000 images", load_mnist(return_X_y=True)[0][:2000]
    return "digits", load_digits().data / 16.0


def transform(block, estimator):
    return estimator.transform(block)


def worker_cpu(client):
    """CPU seconds the workers' processes have used, all their threads together."""
    return sum(client.run(time.process_time).values())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-rows", type=int, default=100_000)
    parser.add_argument("--n-workers", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-iter", type=int, default=5)
    parser.add_argument("--dataset", choices=["auto", "digits", "mnist"], default="auto")
    parser.add_argument("--dask-malloc-trim", action="store_true")
    args = parser.parse_args(argv)
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    if not args.dask_malloc_trim:
        environ.pop("MALLOC_TRIM_THRESHOLD_", None)

    # A few epochs leave training still improving: the timing, not the fit, is the point.
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    name, images = training_images(args.dataset)
    model = GradientFlowEncoder(
        n_components=8,
        hidden_layer_sizes=(64,),
        max_iter=args.max_iter,
        device="cpu",
        random_state=0,
        n_threads=1,
    ).fit(images)
    rows = da.random.default_rng(0).random(
        (args.n_rows, images.shape[1]), chunks=(args.chunk_rows, -1)
    )
    # The workers' environment is read when they are created; the setting ends there.
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        cluster = LocalCluster(
            n_workers=args.n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    with cluster, Client(cluster) as client:
        start = time.perf_counter()
        estimator = client.scatter(model, broadcast=True)
        scatter_seconds = time.perf_counter() - start
        codes = rows.map_blocks(
            transform,
            estimator=estimator,
            chunks=(rows.chunks[0], (model.n_components,)),
            dtype=rows.dtype,
        )
        X = rows.compute()  # the same rows, for the one-process run
        # Warm-up: a process's first calls initialise what later calls reuse; a chunk for
        # each worker, so that none starts cold.
        codes[: args.chunk_rows * args.n_workers].compute()
        model.transform(X[: args.chunk_rows])
        print(
            f"{name}; transform of {args.n_rows:,} rows of {X.shape[1]} features in chunks of "
            f"{args.chunk_rows:,}; 1 process vs a LocalCluster of {args.n_workers} processes "
            f"x 1 thread, MALLOC_TRIM_THRESHOLD_={environ.get('MALLOC_TRIM_THRESHOLD_', 'unset')}; "
            f"torch {torch.__version__}; model scattered in {scatter_seconds:.2f} s"
        )
        print(
            "| repeat | 1 process | cluster | ratio | rows/s, cluster "
            "| CPU, 1 process | CPU, workers | identical |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---|")
        ratios = []
        for repeat in range(args.repeats):
            cpu, start = time.process_time(), time.perf_counter()
            local = model.transform(X)
            one, one_cpu = time.perf_counter() - start, time.process_time() - cpu
            cpu, start = worker_cpu(client), time.perf_counter()
            remote = codes.compute()
            many, many_cpu = time.perf_counter() - start, worker_cpu(client) - cpu
            ratios.append(one / many)
            same = bool(np.array_equal(local, remote))
            print(
                f"| {repeat} | {one:.2f} s | {many:.2f} s | {one / many:.2f}x "
                f"| {args.n_rows / many:,.0f} | {one_cpu:.2f} s | {many_cpu:.2f} s | {same} |"
            )
    print(f"median speed-up: {np.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
