"""The row layout that keeps each row's result independent of the batch it is in."""

import warnings

import pytest
import torch

from gfe_sklearn.flow import _problem, encode
from gfe_sklearn.flow._rows import (
    ELEMENTWISE_BLOCK,
    MIN_ROW_CHUNK,
    NARROW_ROW_CHUNK,
    NARROW_WIDTH,
    ONE_SIZE_FALLBACK,
    ROW_CHUNK,
    PaddedMLP,
    RowLayout,
    RowLayoutWarning,
    call_sizes,
    candidate_layouts,
    checked_row_layout,
    invariant_rowwise,
    padded_mlp,
    padded_rows,
    per_sample,
    probe_codes,
    resolve_row_chunk,
    rows_round_alike,
    rowwise,
    widest_layer,
)

from .problems import binary_targets, mlp_decoder

pytestmark = pytest.mark.portability


def papers_sized_decoder():
    widths = (20, 150, 300, 600, 784)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ELU()]
    return torch.nn.Sequential(*layers[:-1])


class PositionDependent(torch.nn.Module):
    """A decoder that rounds a row differently by its position in the call, as some math
    libraries' kernels do (by a part in 1e6 here, so that the flow shows it)."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, z):
        out = self.decoder(z)
        position = torch.arange(z.shape[0], dtype=z.dtype)[:, None] % 2
        return out * (1 + 1e-6 * position)


class Kernels(torch.nn.Module):
    """A decoder that rounds a row by the size of its call (``by_size``, a part in 1e6 per
    row of the call) and, in calls of the sizes in ``by_position``, by its position, as some
    math libraries' kernels do (MKL's AVX2 kernels, docs/engine.md)."""

    def __init__(self, decoder, by_size=False, by_position=()):
        super().__init__()
        self.decoder, self.by_size, self.by_position = decoder, by_size, by_position

    def forward(self, z):
        n = z.shape[0]
        position = torch.arange(n, dtype=z.dtype)[:, None] % 2 * (n in self.by_position)
        return self.decoder(z) * (1 + 1e-6 * (self.by_size * n + position))


@pytest.mark.parametrize("n, expected", [(1, 16), (16, 16), (17, 32), (33, 64), (64, 64)])
def test_partial_chunks_are_padded_to_a_power_of_two(n, expected):
    assert padded_rows(n, 64) == expected
    assert padded_rows(3, 8) == 8
    assert MIN_ROW_CHUNK == 16


def test_call_sizes_are_the_powers_of_two_up_to_the_chunk():
    assert call_sizes(128) == [16, 32, 64, 128]
    assert call_sizes(100) == [16, 32, 64, 100]
    assert call_sizes(8) == [8]


def test_one_size_pads_every_call_to_the_chunk():
    assert call_sizes(128, one_size=True) == [128]
    assert padded_rows(3, 96, one_size=True) == 96
    calls = []
    z = torch.randn(200, 3, dtype=torch.float64)
    out = rowwise(lambda x: calls.append(len(x)) or x * 2, z, chunk=96, one_size=True)
    assert calls == [96, 96, 96] and torch.equal(out, z * 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("widths", [(6, 32, 64), (3, 5, 7), (20, 150, 784), (10, 10)])
def test_padded_mlp_computes_the_module(widths, dtype):
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.Softplus()]
    module = torch.nn.Sequential(*layers[:-1]).to(dtype)
    padded = padded_mlp(module)
    assert isinstance(padded, PaddedMLP)
    z = torch.randn(9, widths[0], dtype=dtype, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, expected = padded(z), module(z)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected)


def test_gradients_reach_the_modules_parameters_through_the_padding():
    module = mlp_decoder(3, 5, hidden=6)
    padded = padded_mlp(module)
    z = torch.randn(4, 3, dtype=torch.float64)
    padded(z).sum().backward()
    through_padding = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    module(z).sum().backward()
    for got, expected in zip(through_padding, module.parameters()):
        torch.testing.assert_close(got, expected.grad)


@pytest.mark.parametrize(
    "module",
    [
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)),
        torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Dropout()),
        torch.nn.Sequential(torch.nn.ELU()),
        torch.nn.Bilinear(2, 2, 2),
    ],
)
def test_other_modules_are_evaluated_as_they_are(module):
    assert padded_mlp(module) is module


@pytest.mark.parametrize(
    "make",
    [
        papers_sized_decoder,
        lambda: mlp_decoder(3, 12, hidden=20, dtype=torch.float32),
        lambda: mlp_decoder(6, 64, hidden=32, dtype=torch.float32),
        lambda: mlp_decoder(5, 7, hidden=10, dtype=torch.float32),
        lambda: mlp_decoder(3, 9, hidden=5, dtype=torch.float64),
    ],
)
def test_padded_mlps_are_evaluated_in_whole_chunks_on_this_platform(make):
    """The fast path: padded to multiples of 16, these decoders (narrow and odd widths
    included, which some math libraries' kernels round by row position) give each row the
    same bits in every position of every call size of one of the checked layouts, so the
    engine never falls back to rows one at a time (alike too, and many times slower)."""
    decoder = make()
    dtype = decoder[0].weight.dtype
    padded = padded_mlp(decoder)

    def outputs_and_input_gradients(z):
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            out = padded(z)
            (grad,) = torch.autograd.grad((out * out).sum(), z)
        return out.detach(), grad

    probe = (probe_codes(decoder[0].in_features, torch.empty(0, dtype=dtype)),)
    layout = checked_row_layout(outputs_and_input_gradients, probe, 128, owner=decoder)
    assert layout.chunk >= ONE_SIZE_FALLBACK
    assert rows_round_alike(outputs_and_input_gradients, probe, *layout)


def test_the_check_finds_a_decoder_that_rounds_rows_by_position():
    decoder = PositionDependent(mlp_decoder(3, 12, hidden=20))
    probe = (probe_codes(3, torch.empty(0, dtype=torch.float64)),)
    assert not rows_round_alike(decoder, probe, 128)
    assert not rows_round_alike(decoder, probe, 128, one_size=True)
    assert checked_row_layout(decoder, probe, 128, owner=decoder) == RowLayout(1)
    plain = checked_row_layout(decoder.decoder, probe, 128, owner=decoder.decoder)
    assert plain.chunk > 1 and rows_round_alike(decoder.decoder, probe, *plain)


@pytest.mark.parametrize(
    "kernels, expected",
    [
        ({}, RowLayout(128)),
        ({"by_size": True}, RowLayout(128, one_size=True)),
        ({"by_size": True, "by_position": (128,)}, RowLayout(ONE_SIZE_FALLBACK, one_size=True)),
        ({"by_size": True, "by_position": (128, ONE_SIZE_FALLBACK)}, RowLayout(1)),
    ],
)
def test_the_check_takes_the_first_layout_that_rounds_rows_alike(kernels, expected):
    # Doubling rounds every row alike on any kernel: only the modelled rounding differs.
    decoder = Kernels(lambda z: z * 2, **kernels)
    probe = (probe_codes(3, torch.empty(0, dtype=torch.float64)),)
    assert checked_row_layout(decoder, probe, 128, owner=decoder) == expected


def test_codes_stay_bit_identical_with_a_decoder_that_rounds_rows_by_call_size():
    decoder = Kernels(mlp_decoder(3, 12, hidden=20), by_size=True)
    sizes = []
    decoder.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    target = binary_targets(40, 12, seed=3)
    whole = encode(decoder, target, 3, solver="lbfgs")
    rows = torch.tensor([33, 1, 6, 17, 24])
    part = encode(decoder, target[rows], 3, solver="lbfgs")
    assert torch.equal(part.z, whole.z[rows])
    assert sizes[-1] >= ONE_SIZE_FALLBACK  # whole chunks after the check, not rows one at a time
    unchecked = encode(decoder, target[rows], 3, solver="lbfgs", row_chunk=None)
    assert not torch.equal(unchecked.z, whole.z[rows])


@pytest.mark.parametrize("solver", ["amd", "lbfgs", "dopri5"])
def test_codes_stay_bit_identical_with_a_decoder_that_rounds_rows_by_position(solver):
    decoder = PositionDependent(mlp_decoder(3, 12, hidden=20))
    target = binary_targets(40, 12, seed=3)
    whole = encode(decoder, target, 3, solver=solver)
    rows = torch.tensor([33, 1, 6, 17, 24])
    part = encode(decoder, target[rows], 3, solver=solver)
    assert torch.equal(part.z, whole.z[rows])
    # Without the check, the position would show in the codes.
    unchecked = encode(decoder, target[rows], 3, solver=solver, row_chunk=None)
    assert not torch.equal(unchecked.z, whole.z[rows])


def test_the_verdict_is_computed_once_per_configuration():
    decoder = mlp_decoder(3, 12, hidden=20)
    calls = []

    def fn(z):
        calls.append(z.shape[0])
        return decoder(z)

    probe = (probe_codes(3, torch.empty(0, dtype=torch.float64)),)

    def added_calls(chunk):
        before = len(calls)
        invariant_rowwise(fn, probe[0], chunk=chunk, owner=decoder, probe=probe, key=("fn",))
        return len(calls) - before

    first, second, third = added_calls(128), added_calls(128), added_calls(128)
    assert first > second == third  # the check ran once, then only the rows' own calls
    assert added_calls(64) > second  # another chunk is another configuration


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "fn",
    [lambda x: x ** (-1 / 5), torch.log, torch.exp, torch.expm1],
    ids=["pow", "log", "exp", "expm1"],
)
def test_per_sample_math_gives_an_entry_the_same_bits_at_any_length(fn, dtype):
    x = torch.rand(300, dtype=dtype, generator=torch.Generator().manual_seed(0)) * 5 + 0.01
    reference = per_sample(fn, x)
    for n in (1, 7, 17, 31, 33, ELEMENTWISE_BLOCK, ELEMENTWISE_BLOCK + 1, 300):
        for start in (0, 3):
            assert torch.equal(per_sample(fn, x[start : start + n]), reference[start : start + n])


def test_the_papers_decoder_codes_do_not_depend_on_the_batch():
    """float32 and the papers' widths, in chunks of 16 to 128 rows."""
    decoder = papers_sized_decoder().eval()
    for p in decoder.parameters():
        p.requires_grad_(False)
    target = torch.rand(150, 784, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole = encode(decoder, target, 20, solver="lbfgs", stop_tol=1e-3)
        rows = torch.tensor([149, 0, 77, 128, 5])
        part = encode(decoder, target[rows], 20, solver="lbfgs", stop_tol=1e-3)
    assert torch.equal(part.z, whole.z[rows])


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_on_cuda_codes_match_across_batches_or_the_layout_warns(dtype):
    decoder = mlp_decoder(6, 64, hidden=32, dtype=dtype).cuda()
    target = binary_targets(300, 64, seed=2, dtype=dtype).cuda()
    rows = torch.tensor([299, 0, 130, 257, 64], device="cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        whole = encode(decoder, target, 6, solver="lbfgs")
        part = encode(decoder, target[rows], 6, solver="lbfgs")
    if any(issubclass(w.category, RowLayoutWarning) for w in caught):
        torch.testing.assert_close(part.z, whole.z[rows])
    else:
        assert torch.equal(part.z, whole.z[rows])


def test_a_narrow_plain_mlp_is_evaluated_in_larger_calls_on_a_cpu():
    narrow = mlp_decoder(10, 64, hidden=32)
    assert widest_layer(narrow) == 64
    assert widest_layer(torch.nn.Linear(3, NARROW_WIDTH + 1)) > NARROW_WIDTH
    assert resolve_row_chunk("auto", "cpu", narrow) == NARROW_ROW_CHUNK > ROW_CHUNK["cpu"]
    # Wide decoders are fastest in the usual chunks; other modules' costs are unknown.
    assert resolve_row_chunk("auto", "cpu", papers_sized_decoder()) == ROW_CHUNK["cpu"]
    assert resolve_row_chunk("auto", "cpu", PositionDependent(narrow)) == ROW_CHUNK["cpu"]
    assert resolve_row_chunk("auto", "cpu") == ROW_CHUNK["cpu"]
    assert resolve_row_chunk("auto", "cuda", narrow) == resolve_row_chunk("auto", "cuda")
    assert resolve_row_chunk(64, "cpu", narrow) == 64


def test_a_larger_chunk_falls_back_to_the_usual_chunk_before_one_call_size():
    usual = ROW_CHUNK["cpu"]
    assert candidate_layouts(NARROW_ROW_CHUNK, "cpu") == [
        RowLayout(NARROW_ROW_CHUNK),
        RowLayout(usual),
        RowLayout(usual, one_size=True),
        RowLayout(ONE_SIZE_FALLBACK, one_size=True),
    ]
    assert candidate_layouts(usual, "cpu") == [
        RowLayout(usual),
        RowLayout(usual, one_size=True),
        RowLayout(ONE_SIZE_FALLBACK, one_size=True),
    ]
    decoder = Kernels(lambda z: z * 2, by_position=(NARROW_ROW_CHUNK,))
    probe = (probe_codes(3, torch.empty(0, dtype=torch.float64)),)
    assert checked_row_layout(decoder, probe, NARROW_ROW_CHUNK, owner=decoder) == RowLayout(usual)


def test_a_narrow_decoders_larger_calls_leave_its_codes_bit_identical(monkeypatch):
    decoder = mlp_decoder(3, 12, hidden=20)
    chunks = []

    def recorded(fn, probe, chunk, owner, key=()):
        chunks.append(chunk)
        return checked_row_layout(fn, probe, chunk, owner, key)

    monkeypatch.setattr(_problem, "checked_row_layout", recorded)
    target = binary_targets(300, 12, seed=3)
    larger = encode(decoder, target, 3, solver="lbfgs")
    # Asked for the larger chunk; where its calls round rows by position or size (MKL's
    # AVX2 kernels), the check falls back, as it does for the usual chunk.
    assert chunks == [NARROW_ROW_CHUNK]
    usual = encode(decoder, target, 3, solver="lbfgs", row_chunk=ROW_CHUNK["cpu"])
    assert torch.equal(larger.z, usual.z)
