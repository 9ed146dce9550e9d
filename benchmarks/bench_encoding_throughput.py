"""Encoding throughput against a bare forward + input-gradient loop of the same decoder.

Usage::

    python benchmarks/bench_encoding_throughput.py [--solvers lbfgs amd] \
        [--batches 1 32 256 1024 4096] [--stop-tol 1e-4] [--repeats 3] [--device cpu]

Uses MNIST test images when the data are found (``GFE_SKLEARN_DATA``), else uniform noise,
on the papers' decoder after a few GFE training steps. A decoder evaluation is one forward
pass of one sample with its input gradient; the bare loop does exactly that for the whole
batch, a solver adds its per-sample bookkeeping (line search, quasi-Newton updates, stopping,
retiring finished samples, whose batch then shrinks). For each solver and batch size it
prints evaluations per sample at ``--stop-tol`` (codes within that relative distance of the
flow's endpoint), the mean loss, both rates and their ratio, all from the same run, with
the torch thread count (one unless ``--threads``).
"""

import argparse
import time

import numpy as np
import torch

from gfe_sklearn.flow import LOSSES, encode


def papers_decoder(n_components=20, widths=(150, 300, 600), n_features=784, seed=0):
    """20 -> 150 -> 300 -> 600 -> 784 with ELU, PyTorch's default initialisation."""
    gen = torch.Generator().manual_seed(seed)
    sizes = (n_components, *widths, n_features)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layer = torch.nn.Linear(a, b)
        bound = 1 / a**0.5
        with torch.no_grad():
            layer.weight.uniform_(-bound, bound, generator=gen)
            layer.bias.uniform_(-bound, bound, generator=gen)
        layers.append(layer)
        if i < len(sizes) - 2:
            layers.append(torch.nn.ELU())
    return torch.nn.Sequential(*layers)


def load_images(n):
    try:
        from gfe_sklearn.datasets import load_mnist

        X = load_mnist(subset="test", download_if_missing=False, return_X_y=True)[0]
        return torch.as_tensor(X[:n]), "MNIST test images"
    except (OSError, ValueError):
        gen = torch.Generator().manual_seed(0)
        return torch.rand(n, 784, generator=gen), "uniform noise (MNIST not found)"


def pretrain(decoder, images, n_batches, batch_size=64):
    """A few GFE training steps so the solvers see a decoder like the one they meet in fit."""
    opt = torch.optim.RMSprop(decoder.parameters(), lr=5e-4, alpha=0.9, eps=1e-6)
    for i in range(n_batches):
        y = images[(i * batch_size) % len(images) :][:batch_size]
        z = encode(decoder, y, 20, solver="lbfgs", stop_tol=1e-2).z
        loss = LOSSES["bce"](decoder(z), y).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def bare_loop(decoder, images, n_iterations):
    z = torch.zeros(images.shape[0], 20, device=images.device)
    start = time.perf_counter()
    for _ in range(n_iterations):
        z = z.detach().requires_grad_(True)
        loss = LOSSES["bce"](decoder(z), images)
        (grad,) = torch.autograd.grad(loss.sum(), z)
        z = z - 0.1 * grad
    _sync(images.device)
    return images.shape[0] * n_iterations / (time.perf_counter() - start)


def encoder_rate(decoder, images, solver, stop_tol):
    start = time.perf_counter()
    res = encode(decoder, images, 20, solver=solver, stop_tol=stop_tol)
    _sync(images.device)
    return int(res.n_evals.sum()) / (time.perf_counter() - start), res


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solvers", nargs="+", default=["lbfgs", "amd"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256, 1024, 4096])
    parser.add_argument("--stop-tol", type=float, default=1e-4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pretrain-batches", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    images, source = load_images(max(args.batches))
    decoder = papers_decoder()
    pretrain(decoder, images, args.pretrain_batches)
    decoder, images = decoder.to(device).eval(), images.to(device)
    print(
        f"device={device} threads={torch.get_num_threads()} data={source} "
        f"stop_tol={args.stop_tol:g} torch {torch.__version__}"
    )
    print(
        f"{'solver':7s} {'batch':>6s} {'evals/sample':>12s} {'loss':>7s} {'solver ev/s':>12s} "
        f"{'bare ev/s':>10s} {'ratio':>6s}"
    )
    for solver in args.solvers:
        for batch in args.batches:
            rows = images[:batch]
            rates, bare = [], []
            for _ in range(args.repeats):
                rate, res = encoder_rate(decoder, rows, solver, args.stop_tol)
                rates.append(rate)
                mean_evals = float(res.n_evals.double().mean())
                bare.append(bare_loop(decoder, rows, max(1, round(mean_evals))))
            rate, bare_rate = np.median(rates), np.median(bare)
            print(
                f"{solver:7s} {batch:6d} {mean_evals:12.1f} {float(res.loss.mean()):7.4f} "
                f"{rate:12.0f} {bare_rate:10.0f} {rate / bare_rate:6.2f}",
                flush=True,
            )
    print("goal (speed issue): ratio >= 0.7 at batch >= 256, >= 0.5 at batch 32")


if __name__ == "__main__":
    main()
