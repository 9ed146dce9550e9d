"""Property tests of ``encode``: on small random decoders, for every solver, flow and loss.

Each test states its property in its name. The decoders are tiny MLPs seeded by hypothesis
through a local generator; the solvers run with short horizons or grids so that each test
stays within a few seconds on a slow CPU. ``derandomize`` keeps the examples the same on
every run (CI reproducible); raise ``max_examples`` locally to search harder.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gfe_sklearn.flow import FLOWS, LOSSES, SOLVERS, encode, horizon
from gfe_sklearn.flow._fixed import ROUNDING_RISE

# Short flows: every solver finishes a sample in a few tens of decoder evaluations. A solver
# that goes straight to the flow's endpoint has no horizon and takes the gradient flow only.
CHEAP = {
    "amd": {"tau": 20.0, "options": {}},
    "euler": {"tau": 5.0, "options": {"n_steps": 20}},
    "rk4": {"tau": 5.0, "options": {"n_steps": 10}},
    "dopri5": {"tau": 5.0, "options": {}},
    "lbfgs": {"tau": "auto", "options": {"max_steps": 50}, "flows": ["gradient"]},
}
ACTIVATIONS = {"tanh": torch.nn.Tanh, "elu": torch.nn.ELU}
PROPERTY = settings(max_examples=25, deadline=None, derandomize=True)

# A fixed grid stops a sample whose step left the stability region, with a warning: that is
# expected on random decoders and is not what these tests look at.
pytestmark = pytest.mark.filterwarnings("ignore::gfe_sklearn.flow.StiffnessWarning")


def test_cheap_settings_cover_every_solver():
    assert set(SOLVERS) <= set(CHEAP)


# Every registered solver with each flow it takes.
solvers_and_flows = st.sampled_from(sorted(SOLVERS)).flatmap(
    lambda solver: st.tuples(
        st.just(solver), st.sampled_from(CHEAP[solver].get("flows", sorted(FLOWS)))
    )
)


@st.composite
def problems(draw, dtypes=(torch.float64,)):
    """A random decoder, a batch of targets in the loss's range and the loss's name."""
    seed = draw(st.integers(0, 2**31 - 1))
    n_components = draw(st.integers(1, 4))
    n_features = draw(st.integers(1, 8))
    hidden = draw(st.integers(1, 8))
    batch = draw(st.integers(1, 6))
    scale = draw(st.floats(0.1, 2.0))
    loss = draw(st.sampled_from(sorted(LOSSES)))
    activation = draw(st.sampled_from(sorted(ACTIVATIONS)))
    dtype = draw(st.sampled_from(dtypes))
    gen = torch.Generator().manual_seed(seed)
    decoder = torch.nn.Sequential(
        torch.nn.Linear(n_components, hidden),
        ACTIVATIONS[activation](),
        torch.nn.Linear(hidden, n_features),
    ).to(dtype)
    with torch.no_grad():
        for p in decoder.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=dtype))
    if loss == "bce":
        target = torch.rand(batch, n_features, generator=gen, dtype=dtype)
    else:
        target = torch.randn(batch, n_features, generator=gen, dtype=dtype)
    return decoder, target, n_components, loss


def _encode(decoder, target, n_components, loss, solver, flow, **kwargs):
    cheap = CHEAP[solver]
    return encode(
        decoder,
        target,
        n_components,
        solver=solver,
        flow=flow,
        loss=loss,
        tau=cheap["tau"],
        options=cheap["options"],
        **kwargs,
    )


@PROPERTY
@given(problem=problems(dtypes=(torch.float32, torch.float64)), solver_flow=solvers_and_flows)
def test_result_shapes_and_dtypes_follow_the_inputs_and_values_are_finite(problem, solver_flow):
    decoder, target, n_components, loss = problem
    solver, flow = solver_flow
    batch, dtype = target.shape[0], target.dtype
    res = _encode(decoder, target, n_components, loss, solver, flow)
    assert res.z.shape == (batch, n_components)
    state_size = 2 * n_components if flow == "nesterov" else n_components
    assert res.state.shape == (batch, state_size)
    for name in ("loss", "t", "n_steps", "n_evals", "converged"):
        assert getattr(res, name).shape == (batch,), name
    assert res.z.dtype == res.state.dtype == res.loss.dtype == res.t.dtype == dtype
    assert res.n_steps.dtype == res.n_evals.dtype == torch.long
    assert res.converged.dtype == torch.bool
    assert torch.isfinite(res.z).all() and torch.isfinite(res.loss).all()
    assert torch.all(res.n_evals >= 1)
    assert res.t_history is None and res.loss_history is None


@PROPERTY
@given(problem=problems(), solver_flow=solvers_and_flows)
def test_no_sample_flows_past_its_horizon(problem, solver_flow):
    # float64 here; float32 fixed grids are pinned by the test below.
    decoder, target, n_components, loss = problem
    solver, flow = solver_flow
    res = _encode(decoder, target, n_components, loss, solver, flow)
    assert torch.all(res.t >= 0)
    assert torch.all(res.t <= horizon(solver, CHEAP[solver]["tau"])), res.t


@pytest.mark.parametrize("solver", ["euler", "rk4"])
def test_float32_fixed_grid_ends_at_tau_not_past_it(solver):
    decoder = torch.nn.Linear(1, 1)
    with torch.no_grad():  # D(z) = z / 2: a slow, stable flow that runs the whole grid.
        decoder.weight.fill_(0.5)
        decoder.bias.zero_()
    target = torch.full((1, 1), 0.5)
    res = encode(
        decoder, target, 1, solver=solver, loss="mse", tau=5.0, stop_tol=0, options={"n_steps": 10}
    )
    assert res.t.item() <= 5.0, res.t.item() - 5.0


@PROPERTY
@given(problem=problems(), solver_flow=solvers_and_flows)
def test_reported_loss_is_the_loss_of_the_returned_code(problem, solver_flow):
    decoder, target, n_components, loss = problem
    solver, flow = solver_flow
    res = _encode(decoder, target, n_components, loss, solver, flow)
    with torch.no_grad():
        direct = LOSSES[loss](decoder(res.z), target)
    # Not exact: the engine evaluates padded widths in padded chunks of rows, a direct call
    # sums in another order on some math libraries; float64 rounding, with a wide margin.
    torch.testing.assert_close(res.loss, direct, rtol=1e-10, atol=1e-12)


@PROPERTY
@given(problem=problems(), flow=st.sampled_from(sorted(FLOWS)))
def test_amd_ends_no_higher_than_z0_and_its_accepted_losses_never_rise_beyond_rounding(
    problem, flow
):
    decoder, target, n_components, loss = problem
    res = _encode(decoder, target, n_components, loss, "amd", flow, record_history=True)
    with torch.no_grad():
        at_zero = LOSSES[loss](decoder(torch.zeros_like(res.z)), target)
    history = res.loss_history.numpy()
    # Not exact: the engine's padded layout against a direct call (see the test above).
    torch.testing.assert_close(res.loss_history[0], at_zero, rtol=1e-10, atol=1e-12)
    assert torch.all(res.loss <= res.loss_history[0])
    for column, steps, final in zip(history.T, res.n_steps.numpy(), res.loss.numpy()):
        curve = column[~np.isnan(column)]
        assert len(curve) == steps + 1
        # A step is accepted when it lowers the loss, or, near the minimum, where the loss
        # changes by less than its rounding, when it flattens the slope (docs/engine.md).
        slack = ROUNDING_RISE * np.finfo(curve.dtype).eps * np.abs(curve[:-1])
        assert np.all(np.diff(curve) <= slack), curve
        # The history records the accepted loss itself: a copy of the returned one.
        assert curve[-1] == final


@PROPERTY
@given(problem=problems(), solver=st.sampled_from(["euler", "rk4"]))
def test_gradient_flow_on_a_fixed_grid_raises_no_loss_beyond_rounding(problem, solver):
    decoder, target, n_components, loss = problem
    res = _encode(decoder, target, n_components, loss, solver, "gradient", record_history=True)
    history = res.loss_history.numpy()
    for column in history.T:
        curve = column[~np.isnan(column)]
        # The rise the grid itself forgives as rounding: ROUNDING_RISE ulps of the loss.
        slack = ROUNDING_RISE * np.finfo(curve.dtype).eps * np.abs(curve[:-1])
        assert np.all(np.diff(curve) <= slack), curve


@pytest.mark.portability
@PROPERTY
@given(
    problem=problems(dtypes=(torch.float32, torch.float64)),
    solver_flow=solvers_and_flows,
    data=st.data(),
)
def test_each_row_encoded_alone_gives_bitwise_the_batchs_codes(problem, solver_flow, data):
    # row_chunk='auto' (the default) is the setting that promises bit-identical rows.
    decoder, target, n_components, loss = problem
    solver, flow = solver_flow
    batch = target.shape[0]
    whole = _encode(decoder, target, n_components, loss, solver, flow)
    for row in range(batch):
        alone = _encode(decoder, target[row : row + 1], n_components, loss, solver, flow)
        assert torch.equal(alone.z, whole.z[row : row + 1]), (row, alone.z, whole.z[row])
        assert torch.equal(alone.loss, whole.loss[row : row + 1])
        assert torch.equal(alone.n_steps, whole.n_steps[row : row + 1])
    order = torch.tensor(data.draw(st.permutations(range(batch)), label="order"))
    shuffled = _encode(decoder, target[order], n_components, loss, solver, flow)
    assert torch.equal(shuffled.z, whole.z[order])
