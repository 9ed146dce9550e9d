"""A data-parallel ``fit`` on ``torchrun`` ranks against the same fit in one process.

Usage::

    python benchmarks/bench_ddp_fit.py [--n-train 10000] [--n-test 2000] [--batch-size 256]
        [--max-iter 1] [--nproc 2] [--repeats 1] [--dataset {auto,mnist,digits}]
        [--code-init {auto,encoder,zeros}]

Fits ``GradientFlowEncoder(batch_size=--batch-size, max_iter=--max-iter, random_state=0,
code_init=--code-init)``, its other parameters the defaults (one torch thread per process),
on the first ``--n-train`` MNIST training images, once in this process and once
data-parallel on ``--nproc`` gloo ranks on the CPU (``python -m torch.distributed.run
--standalone``; every rank runs this file with ``--rank-out``), ``--repeats`` times each,
alternating, every process warmed up by a fit on one batch first. Prints, for each pair,
the seconds and CPU seconds of ``fit`` alone (the ranks': from a barrier before ``fit`` to
the slowest rank's end; their CPU seconds added up), the seconds of the whole ``torchrun``
run (the ranks' start, imports and data loading included), the ratio, the held-out
cross-entropy of both models on the first ``--n-test`` MNIST test images, and the largest
difference between their weights: the speed-up is only worth quoting at the same result.
``--dataset digits`` (scikit-learn's, the first ``--n-test`` images held out) needs no
download, for a quick run. The ratio needs ``--nproc`` free cores.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from gfe_sklearn import GradientFlowEncoder


def data(dataset, n_train, n_test):
    if dataset == "auto":
        dataset = "mnist" if os.environ.get("GFE_SKLEARN_DATA") else "digits"
    if dataset == "mnist":
        from gfe_sklearn.datasets import load_mnist

        train = load_mnist(subset="train", return_X_y=True)[0][:n_train]
        test = load_mnist(subset="test", return_X_y=True)[0][:n_test]
        return "MNIST", train, test
    X = load_digits().data / 16.0
    return "digits", X[n_test:][:n_train], X[:n_test]


def estimator(args):
    return GradientFlowEncoder(
        batch_size=args.batch_size,
        max_iter=args.max_iter,
        code_init=args.code_init,
        device="cpu",
        random_state=0,
    )


def warm_up(args, X):
    """A process's first fit imports and initialises what later fits reuse (on the ranks,
    more than a second of lazy imports of torch.distributed): one batch, not timed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator(args).set_params(max_iter=1).fit(X[: args.batch_size])


def fit(model, X):
    """Seconds and CPU seconds of ``model.fit(X)``."""
    # A few epochs leave training still improving: the timing, not the fit, is the point.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cpu, start = time.process_time(), time.perf_counter()
        model.fit(X)
        return time.perf_counter() - start, time.process_time() - cpu


def rank_main(args):
    """One rank of the data-parallel run: fit, then rank 0 writes the model and the times."""
    dist = torch.distributed
    dist.init_process_group("gloo")
    _, X, _ = data(args.dataset, args.n_train, args.n_test)
    warm_up(args, X)
    model = estimator(args)
    dist.barrier()  # the ranks start fit together: their imports and loading take unequal time
    seconds, cpu = fit(model, X)
    times = [None] * dist.get_world_size()
    dist.all_gather_object(times, (seconds, cpu))
    out = Path(args.rank_out)
    model.save(out / "model.safetensors")  # rank 0 writes
    if dist.get_rank() == 0:
        (out / "times.json").write_text(json.dumps(times))
    dist.barrier()
    dist.destroy_process_group()
    # gloo can abort a rank as the interpreter finalizes (docs/scaling.md): all is written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_ranks(args, out):
    """The data-parallel fit on ``--nproc`` ranks: (fit seconds, their CPU seconds, run
    seconds, model)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", str(args.nproc), __file__, "--rank-out", str(out)]
    command += ["--n-train", str(args.n_train), "--n-test", str(args.n_test)]
    command += ["--batch-size", str(args.batch_size), "--max-iter", str(args.max_iter)]
    command += ["--dataset", args.dataset, "--code-init", args.code_init]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    run_seconds = time.perf_counter() - start
    times = json.loads((out / "times.json").read_text())
    seconds = max(t[0] for t in times)
    cpu = sum(t[1] for t in times)
    return seconds, cpu, run_seconds, GradientFlowEncoder.load(out / "model.safetensors")


def largest_difference(a, b):
    return max(
        float((x - y).abs().max())
        for x, y in zip(a.decoder_.state_dict().values(), b.decoder_.state_dict().values())
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-iter", type=int, default=1)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--dataset", choices=["auto", "digits", "mnist"], default="auto")
    parser.add_argument(
        "--code-init",
        choices=["auto", "encoder", "zeros"],
        default="auto",
        help="GradientFlowEncoder's code_init ('zeros': no encoder distilled, as before 0.10)",
    )
    parser.add_argument("--rank-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rank_out:
        rank_main(args)
        return
    name, X, X_test = data(args.dataset, args.n_train, args.n_test)
    print(
        f"{name}, {X.shape[0]:,} training images, {X_test.shape[0]:,} held out; batch "
        f"{args.batch_size}, {args.max_iter} epoch(s); 1 process vs {args.nproc} gloo ranks, "
        f"1 torch thread each; torch {torch.__version__}"
    )
    print(
        f"| repeat | 1 process | {args.nproc} ranks | ratio | torchrun run | CPU, 1 process "
        f"| CPU, ranks | held-out BCE, 1 process | held-out BCE, {args.nproc} ranks "
        "| largest weight difference |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    warm_up(args, X)
    ratios = []
    for repeat in range(args.repeats):
        alone = estimator(args)
        one, one_cpu = fit(alone, X)
        with tempfile.TemporaryDirectory() as out:
            many, many_cpu, run_seconds, parallel = run_ranks(args, Path(out))
        ratios.append(one / many)
        print(
            f"| {repeat} | {one:.1f} s | {many:.1f} s | {one / many:.2f}x | {run_seconds:.1f} s "
            f"| {one_cpu:.1f} s | {many_cpu:.1f} s | {-alone.score(X_test):.5f} "
            f"| {-parallel.score(X_test):.5f} | {largest_difference(alone, parallel):.1e} |"
        )
    print(f"median speed-up of fit: {np.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
