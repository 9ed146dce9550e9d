"""AMD encoder throughput against a bare forward + input-gradient loop of the same decoder.

Usage::

    python benchmarks/bench_amd_throughput.py [--batch 1024] [--repeats 3] [--device cpu]

Uses MNIST test images when the data are found (``GFE_SKLEARN_DATA``), else uniform noise.
A decoder evaluation is one forward pass of one sample with its input gradient; the bare loop
does exactly that for the whole batch, the encoder adds its per-sample bookkeeping (line
search, early stopping, retiring finished samples). Both figures come from the same run.
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


def load_images(batch):
    try:
        from gfe_sklearn.datasets import load_mnist

        X = load_mnist(subset="test", download_if_missing=False, return_X_y=True)[0]
        return torch.as_tensor(X[:batch]), "MNIST test images"
    except (OSError, ValueError):
        gen = torch.Generator().manual_seed(0)
        return torch.rand(batch, 784, generator=gen), "uniform noise (MNIST not found)"


def pretrain(decoder, images, n_batches, batch_size=64):
    """A few GFE training steps so the flow sees a decoder like the one it meets in training."""
    opt = torch.optim.RMSprop(decoder.parameters(), lr=5e-4, alpha=0.9, eps=1e-6)
    for i in range(n_batches):
        y = images[(i * batch_size) % len(images):][:batch_size]
        z = encode(decoder, y, 20).z
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


def amd_encoder(decoder, images):
    start = time.perf_counter()
    res = encode(decoder, images, 20, solver="amd")
    _sync(images.device)
    elapsed = time.perf_counter() - start
    return int(res.n_evals.sum()) / elapsed, res


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pretrain-batches", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    images, source = load_images(args.batch)
    decoder = papers_decoder()
    pretrain(decoder, images, args.pretrain_batches)
    decoder, images = decoder.to(device), images.to(device)
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} data={source}")

    amd_rates, bare_rates = [], []
    for _ in range(args.repeats):
        rate, res = amd_encoder(decoder, images)
        mean_evals = float(res.n_evals.double().mean())
        amd_rates.append(rate)
        bare_rates.append(bare_loop(decoder, images, max(1, round(mean_evals))))
    amd, bare = np.median(amd_rates), np.median(bare_rates)
    print(f"AMD: mean {mean_evals:.1f} decoder evaluations/sample "
          f"(min {int(res.n_evals.min())}, max {int(res.n_evals.max())}), "
          f"mean loss {float(res.loss.mean()):.4f}, "
          f"converged {float(res.converged.float().mean()):.0%}")
    print(f"AMD encoder    : {amd:12.0f} decoder evaluations/s")
    print(f"bare fwd+grad  : {bare:12.0f} decoder evaluations/s")
    print(f"ratio          : {amd / bare:.2f}  (goal >= 0.70)")


if __name__ == "__main__":
    main()
