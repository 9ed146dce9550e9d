import weakref

import pytest
import torch

from gfe_sklearn.flow import ADJOINTS, FLOWS, LOSSES, SOLVERS, encode

from .problems import binary_targets, goes_to_endpoint, mlp_decoder

FIXED = {"euler": {"n_steps": 6, "grid": "log"}, "rk4": {"n_steps": 4, "grid": "linear"}}


def parameter_gradients(decoder, target, adjoint, **kwargs):
    decoder.zero_grad()
    res = encode(decoder, target, 2, adjoint=adjoint, **kwargs)
    LOSSES["bce"](decoder(res.z), target).sum().backward()
    return [p.grad.clone() for p in decoder.parameters()]


def relative_difference(a, b):
    num = sum(float((x - y).norm() ** 2) for x, y in zip(a, b)) ** 0.5
    den = sum(float(y.norm() ** 2) for y in b) ** 0.5
    return num / den


@pytest.mark.parametrize("flow", sorted(FLOWS))
@pytest.mark.parametrize("solver", sorted(s for s in SOLVERS if not goes_to_endpoint(s)))
def test_full_adjoint_equals_unrolled(solver, flow):
    decoder = mlp_decoder(2, 5, hidden=6, seed=1)
    target = binary_targets(4, 5, seed=2)
    kwargs = {
        "solver": solver,
        "flow": flow,
        "tau": 3.0,
        "stop_tol": 0,
        "options": FIXED.get(solver, {}),
    }
    full = parameter_gradients(decoder, target, "full", **kwargs)
    unrolled = parameter_gradients(decoder, target, "unrolled", **kwargs)
    approx = parameter_gradients(decoder, target, "approx", **kwargs)
    assert relative_difference(full, unrolled) < 1e-6
    # The codes' dependence on the decoder is a real part of the gradient.
    assert relative_difference(approx, unrolled) > 1e-3


@pytest.mark.parametrize("adjoint", ["full", "unrolled"])
@pytest.mark.parametrize("solver", sorted(FIXED))
@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_exact_modes_pass_gradcheck(adjoint, solver, flow):
    decoder = mlp_decoder(2, 3, hidden=3, seed=3)
    target = binary_targets(2, 3, seed=4)
    params = list(decoder.parameters())

    def total_loss(*_):
        res = encode(
            decoder,
            target,
            2,
            solver=solver,
            flow=flow,
            adjoint=adjoint,
            tau=2.0,
            stop_tol=0,
            options=FIXED[solver],
        )
        return LOSSES["bce"](decoder(res.z), target).sum()

    assert torch.autograd.gradcheck(total_loss, params, eps=1e-6, atol=1e-5)


def test_approx_gradient_is_the_partial_derivative_at_fixed_codes():
    decoder = mlp_decoder(2, 5, seed=5)
    target = binary_targets(3, 5, seed=6)
    grads = parameter_gradients(
        decoder, target, "approx", solver="rk4", tau=2.0, stop_tol=0, options=FIXED["rk4"]
    )
    res = encode(decoder, target, 2, solver="rk4", tau=2.0, stop_tol=0, options=FIXED["rk4"])
    decoder.zero_grad()
    LOSSES["bce"](decoder(res.z.detach()), target).sum().backward()
    for g, p in zip(grads, decoder.parameters()):
        torch.testing.assert_close(g, p.grad)


class SavedTensorMeter:
    """Peak bytes of tensors that autograd graphs hold at once (CPU-safe memory measure)."""

    def __init__(self):
        self.live = 0
        self.peak = 0

    def _release(self, nbytes):
        self.live -= nbytes

    def pack(self, tensor):
        nbytes = tensor.numel() * tensor.element_size()
        box = _Box(tensor)
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(box, self._release, nbytes)
        return box

    @staticmethod
    def unpack(box):
        return box.tensor

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


class _Box:
    def __init__(self, tensor):
        self.tensor = tensor


def peak_graph_bytes(adjoint, n_steps):
    decoder = mlp_decoder(4, 64, hidden=128, seed=7)
    target = binary_targets(32, 64, seed=8)
    with SavedTensorMeter() as meter:
        res = encode(
            decoder,
            target,
            4,
            solver="rk4",
            adjoint=adjoint,
            tau=5.0,
            stop_tol=0,
            options={"n_steps": n_steps},
        )
        LOSSES["bce"](decoder(res.z), target).sum().backward()
    return meter.peak


def test_full_adjoint_memory_stays_flat_while_unrolled_grows():
    full = [peak_graph_bytes("full", n) for n in (10, 80)]
    unrolled = [peak_graph_bytes("unrolled", n) for n in (10, 80)]
    # Unrolled holds every step's graph: memory grows with the trajectory.
    assert unrolled[1] > 6 * unrolled[0]
    # Full holds one step's graph at a time (plus the stored states, far smaller).
    assert full[1] < 1.5 * full[0]
    assert unrolled[1] > 20 * full[1]


def test_unknown_adjoint_lists_choices():
    with pytest.raises(ValueError, match=str(sorted(ADJOINTS)).replace("[", r"\[")):
        encode(mlp_decoder(2, 3), binary_targets(1, 3), 2, adjoint="exact")
