"""Which of the authors' flow settings make their decoders learn more per image (ablation).

Trains one GFE-amd decoder on the table-1 protocol (MNIST, batches of 5 drawn with
replacement, RMSprop lr 5e-4, decoder 20 -> 150 -> 300 -> 600 -> 784) with the training codes
found by one of three encoders, then scores the first ``--n-test`` test images encoded by
another (``--test``; the default is the authors' rule as replicated below):

* ``{"kind": "ours", ...}``: this package's engine, ``gfe_sklearn.flow.encode``, with
  ``tau``, ``stop_tol``, ``stop_rule``, ``options`` (AMD constants) and ``z0``;
* ``{"kind": "my", ...}``: a replica of the authors' AMD with every knob exposed: one step
  shared by the batch (``shared``), their Armijo test (``sigma``), ``tau``, step constants,
  the forced step after ``max_bt`` backtracks, their stop rule (``stop="theirs"``:
  after ``(1 - perc) tau``, mean per-step change of the last 5 losses below ``graddt``);
* ``{"kind": "theirs", ...}``: the authors' own solver, imported from their checkout
  (``--reference`` or ``$GFE_REFERENCE_DIR``), for checking the replica.

    python benchmarks/ablate_reference.py --train '{"kind": "ours", "tau": 1e5}' \
        --test '{"kind": "my", "z0": "rand", "shared": true, "sigma": 1e-5}'

Prints one JSON line per budget: test BCE, training seconds and decoder evaluations per
training and per test image. docs/precision.md lists the runs and their results.
"""

import argparse
import contextlib
import io
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from gfe_sklearn.datasets import load_fashion_mnist, load_mnist
from gfe_sklearn.flow import encode
from gfe_sklearn.nn import make_decoder


def bce_exact(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").mean(1)


def bce_eps(logits, x, eps=1e-8):
    p = torch.sigmoid(logits)
    return (-x * torch.log(p + eps) - (1 - x) * torch.log(1 - p + eps)).mean(1)


LOSSES = {"exact": bce_exact, "eps": bce_eps}


def their_flow(
    dec,
    x,
    z0,
    lossfn,
    tau=1e4,
    dtstep=1,
    dtmax=10,
    factor=0.5,
    dtiter=20,
    graddt=1e-5,
    perc=0.98,
    convstep=10,
    sigma=1e-5,
):
    def func(t, z):
        with torch.enable_grad():
            zt = z.clone()
            loss = lossfn(dec(zt), x).sum()
            return -torch.autograd.grad(loss, zt)[0]

    def floss(z):
        with torch.no_grad():
            return lossfn(dec(z), x)

    reference = os.environ.get("GFE_REFERENCE_DIR")
    if not reference:
        raise SystemExit(
            "kind 'theirs' needs --reference or $GFE_REFERENCE_DIR: a checkout of "
            "https://github.com/k-flouris/gfe"
        )
    sys.path.insert(0, os.path.join(reference, "torchdiffeq-master-amd"))
    from torchdiffeq import odeint_amd

    z0 = z0.clone().requires_grad_(True)
    with contextlib.redirect_stdout(io.StringIO()):
        zs, tl = odeint_amd(
            func,
            floss,
            z0,
            torch.from_numpy(np.linspace(0, tau, 10)),
            rtol=1e-5,
            atol=1e-9,
            method="amd",
            options=dict(
                dtstep=dtstep,
                dtmaxstep=dtmax,
                dtfactor=factor,
                dtiter=dtiter,
                conv_graddt=graddt,
                conv_dtstep=convstep,
                conv_percentagetau=perc,
                tau=tau,
                armijosigma=sigma,
            ),
        )
    return zs[-1].detach(), float("nan")  # their solver does not count evaluations


def my_amd(
    dec,
    x,
    z0,
    lossfn,
    *,
    shared=False,
    sigma=0.0,
    armijo_new=True,
    tau=1e4,
    s0=1.0,
    smin=1.0,
    smax=10.0,
    beta=0.5,
    kappa=1.1,
    max_bt=20,
    forced=10.0,
    stop="theirs",
    graddt=1e-5,
    perc=0.98,
    stop_tol=1e-6,
    max_iter=100000,
):
    """The authors' AMD rule, vectorised, with every knob; per-sample steps unless shared.

    Returns the codes and the decoder evaluations per image (every call evaluates the batch).
    """
    B = x.shape[0]

    def lg(z):
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            l = lossfn(dec(z), x)
            g = torch.autograd.grad(l.sum(), z)[0]
        return l.detach(), g

    z = z0.clone()
    l, g = lg(z)
    t = torch.zeros(B, dtype=z.dtype)
    h = torch.full((B,), s0, dtype=z.dtype)
    active = torch.ones(B, dtype=torch.bool)
    hist = [[] for _ in range(B)]
    thist = [[] for _ in range(B)]
    bhist = []
    nev = 1
    for _ in range(max_iter):
        if not active.any():
            break
        hh = torch.minimum(h, tau - t)
        trial = z - hh[:, None] * g
        lt, gt = lg(trial)
        nev += 1
        gn = (gt if armijo_new else g).pow(2).sum(1)
        ok = (l - lt) >= sigma * hh * smax * gn
        if sigma == 0:
            ok = lt < l
        if shared:
            ok = torch.full_like(ok, bool(ok[active].all()))
        force = hh < beta**max_bt
        if forced is not None and force.any():
            hh = torch.where(force, torch.minimum(torch.full_like(hh, forced), tau - t), hh)
            trial = z - hh[:, None] * g
            lt, gt = lg(trial)
            ok = ok | force
        ok = ok & active
        z = torch.where(ok[:, None], trial, z)
        l = torch.where(ok, lt, l)
        g = torch.where(ok[:, None], gt, g)
        t = torch.where(ok, t + hh, t)
        grown = torch.clamp(kappa * hh, min=smin, max=smax)
        h = torch.where(ok, grown, beta * hh)
        stalled = (~ok) & (hh < beta**max_bt) & (forced is None)
        active = active & ~stalled & (t < tau)
        # stop rules
        if stop == "theirs":
            if ok.any():
                if shared:
                    if bool(ok[0]) and t[0] >= (1 - perc) * tau:
                        bhist.append(float(l.mean()))
                        if len(bhist) >= 5 and abs(np.gradient(bhist[-5:]).mean()) < graddt:
                            active[:] = False
                else:
                    for i in torch.nonzero(ok & active).flatten().tolist():
                        if t[i] >= (1 - perc) * tau:
                            hist[i].append(float(l[i]))
                            if len(hist[i]) >= 5 and abs(np.gradient(hist[i][-5:]).mean()) < graddt:
                                active[i] = False
        elif stop == "ours":
            for i in torch.nonzero(ok & active).flatten().tolist():
                hist[i].append(float(l[i]))
                thist[i].append(float(t[i]))
                if len(hist[i]) > 5:
                    dl = hist[i][-6] - hist[i][-1]
                    dt = thist[i][-1] - thist[i][-6]
                    if dl <= stop_tol * dt * abs(hist[i][-6]):
                        active[i] = False
    return z, nev


def make_encoder(spec, lossfn):
    kind = spec.get("kind", "ours")
    z0kind = spec.get("z0", "zeros")

    def z0_of(x):
        if z0kind == "rand":
            return torch.rand(x.shape[0], 20, dtype=x.dtype)
        return torch.zeros(x.shape[0], 20, dtype=x.dtype)

    if kind == "theirs":
        opts = {k: v for k, v in spec.items() if k not in ("kind", "z0")}
        return lambda dec, x: their_flow(dec, x, z0_of(x), lossfn, **opts)
    if kind == "my":
        opts = {k: v for k, v in spec.items() if k not in ("kind", "z0")}
        return lambda dec, x: my_amd(dec, x, z0_of(x), lossfn, **opts)
    # our engine
    opts = dict(spec.get("options", {}))

    def enc(dec, x):
        res = encode(
            dec,
            x,
            20,
            solver="amd",
            loss=lambda o, t: lossfn(o, t),
            tau=spec.get("tau", 1000.0),
            stop_tol=spec.get("stop_tol", 1e-6),
            stop_rule=spec.get("stop_rule", "code"),
            options=opts,
            z0=z0_of(x),
            row_chunk=None,
        )
        return res.z.detach(), float(res.n_evals.float().mean())

    return enc


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", default=os.environ.get("GFE_REFERENCE_DIR"))
    p.add_argument("--data-home", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--train", type=json.loads, required=True)
    p.add_argument("--test", type=json.loads, default=None)
    p.add_argument("--loss", default="exact", help="loss inside the flows and training")
    p.add_argument("--sum", action="store_true", help="train on the sum over the batch")
    p.add_argument("--budgets", type=int, nargs="+", default=[480])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--test-batch", type=int, default=5)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--save", default=None)
    a = p.parse_args()
    if a.reference:
        os.environ["GFE_REFERENCE_DIR"] = a.reference
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    load = load_mnist if a.dataset == "mnist" else load_fashion_mnist
    tr = load(subset="train", data_home=a.data_home)
    te = load(subset="test", data_home=a.data_home)
    Xtr = torch.tensor(tr.data, dtype=dtype)
    Xte = torch.tensor(te.data[: a.n_test], dtype=dtype)
    torch.manual_seed(a.seed)  # z0="rand" and the authors' solver draw from torch's generator
    gen = torch.Generator().manual_seed(a.seed)
    dec = make_decoder(20, (150, 300, 600), 784, "elu", generator=gen, dtype=dtype)
    opt = torch.optim.RMSprop(dec.parameters(), lr=5e-4, alpha=0.9, eps=1e-6)
    lossfn = LOSSES[a.loss]
    tr_enc = make_encoder(a.train, lossfn)
    te_enc = make_encoder(a.test or a.train, LOSSES[a.loss])
    rng = np.random.default_rng(a.seed)
    seen, evals, start = 0, 0.0, time.perf_counter()
    out = {"train": a.train, "test": a.test, "loss": a.loss, "seed": a.seed, "rows": []}
    for budget in a.budgets:
        while seen < budget:
            idx = rng.integers(0, len(Xtr), 5)
            x = Xtr[idx]
            dec.eval()
            z, ne = tr_enc(dec, x)
            evals += ne * 5
            dec.train()
            l = bce_exact(dec(z), x)
            l = l.sum() if a.sum else l.mean()
            opt.zero_grad()
            l.backward()
            opt.step()
            seen += 5
        train_s = time.perf_counter() - start
        dec.eval()
        t0 = time.perf_counter()
        tot, tev = 0.0, 0.0
        for s in range(0, len(Xte), a.test_batch):
            x = Xte[s : s + a.test_batch]
            z, ne = te_enc(dec, x)
            tev += ne * x.shape[0]
            with torch.no_grad():
                tot += float(bce_exact(dec(z), x).sum())
        row = {
            "images": budget,
            "test_bce": tot / len(Xte),
            "train_s": round(train_s, 1),
            "evals_per_train_img": round(evals / seen, 1),
            "evals_per_test_img": round(tev / len(Xte), 1),
            "test_s": round(time.perf_counter() - t0, 1),
        }
        out["rows"].append(row)
        print(json.dumps(row), flush=True)
        start += time.perf_counter() - t0
    if a.save:
        torch.save(dec.state_dict(), a.save)
    print("RESULT", json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
