"""The table of model kinds: what each kind builds, with which options."""

import pytest

from experiments import EXPERIMENTS, build_parser
from experiments._cli import resolve_options
from experiments._models import (
    ESTIMATORS,
    TRAINED,
    encoder_of,
    make_model,
    scored_with,
    titles,
)
from experiments._training import load_dataset
from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder


@pytest.fixture
def args():
    argv = ["data-efficiency", "--smoke", "--threads", "2", "--tau", "7", "--solver", "rk4"]
    return resolve_options(build_parser().parse_args(argv), EXPERIMENTS["data-efficiency"])


def test_gfe_trains_first_and_mixed_is_scored_with_the_ae():
    assert TRAINED == ("gfe", "ae")
    assert ESTIMATORS == {
        "GradientFlowEncoder": GradientFlowEncoder,
        "AutoEncoderBaseline": AutoEncoderBaseline,
    }
    assert scored_with("ae") == ["ae", "mixed"] and scored_with("gfe") == ["gfe"]


def test_each_kind_takes_its_options_and_the_runs_threads(args):
    gfe, ae = make_model("gfe", args, 3), make_model("ae", args, 3)
    assert isinstance(gfe, GradientFlowEncoder) and isinstance(ae, AutoEncoderBaseline)
    assert (gfe.solver, gfe.tau, gfe.fit_stop_tol) == ("rk4", 7.0, 1e-3)
    assert gfe.n_threads == ae.n_threads == 2 and gfe.random_state == ae.random_state == 3
    assert gfe.compute_dtype is None and gfe.hidden_layer_sizes == (16,)
    # The papers' loss, pinned: the package's default ('auto') cannot refuse a resumption.
    assert gfe.loss == ae.loss == "bce"
    with pytest.raises(ValueError, match="built from trained 'ae' models"):
        make_model("mixed", args, 3)


def test_mixed_encodes_by_the_runs_flow_through_the_trained_aes_decoder(args):
    data = load_dataset("digits")
    ae = make_model("ae", args, 0).partial_fit(data.X_train[:20])
    mixed = encoder_of("mixed", ae, args)
    assert isinstance(mixed, GradientFlowEncoder)
    assert (mixed.solver, mixed.tau, mixed.n_threads) == ("rk4", 7.0, 2)
    assert encoder_of("ae", ae, args) is ae


def test_the_gfe_is_titled_by_its_solver_unless_it_is_the_papers_amd(args):
    assert titles(args) == {"ae": "AE", "gfe": "GFE (rk4)", "mixed": "Mixed"}
    args.solver = "amd"
    assert titles(args)["gfe"] == "GFE-amd"
