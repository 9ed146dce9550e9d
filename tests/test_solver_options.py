"""The solvers' options as the estimator exposes them, ``solver_options``, and ``solver_``:
the solver resolved once per fit, and the solvers' capabilities as class attributes."""

import ast
import inspect
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from gfe_sklearn import GradientFlowEncoder, _gradient_flow
from gfe_sklearn._gradient_flow import SOLVER_OPTIONS, SOLVER_PARAMETERS
from gfe_sklearn._model_file import ModelFileError
from gfe_sklearn.flow import SOLVERS, solver_options

from .test_persistence import _rewrite

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# The options that are deliberately not parameters of their own: they tune a solver's
# internals, which few will change, and solver_options reaches them. Every other option of
# every solver is a flat parameter.
NOT_FLAT = {
    "amd": set(),
    "euler": set(),
    "rk4": set(),
    "dopri5": {"safety", "min_factor", "max_factor"},
    "lbfgs": {"history", "first_step", "armijo", "shrink", "min_decrease", "max_evals"},
}


def _documented_defaults():
    """Each parameter's default as ``GradientFlowEncoder``'s docstring states it."""
    section = GradientFlowEncoder.__doc__.split("Parameters\n    ----------\n")[1]
    section = section.split("Attributes\n")[0].replace("\\\n", "")
    stated = {}
    for names, defaults in re.findall(r"^    (\w[\w, ]*) : .*?default=(.+)$", section, re.M):
        names = names.split(", ")
        values = [v.strip() for v in defaults.split(", ")] if len(names) > 1 else [defaults]
        stated.update(zip(names, values))
    return stated


def test_every_solver_option_is_exposed_once_with_the_solvers_default():
    assert set(NOT_FLAT) == set(SOLVERS)
    signature = inspect.signature(GradientFlowEncoder).parameters
    for solver in SOLVERS:
        options = solver_options(solver)
        assert set(options) - set(SOLVER_PARAMETERS) == NOT_FLAT[solver], solver
        for name in set(options) & set(SOLVER_PARAMETERS):
            assert signature[name].default == options[name], f"{solver}: {name}"
    assert set(SOLVER_OPTIONS) == set().union(*NOT_FLAT.values())


def test_the_docstring_states_the_defaults_the_estimator_and_solvers_have():
    stated = _documented_defaults()
    signature = inspect.signature(GradientFlowEncoder).parameters
    for name in SOLVER_PARAMETERS:
        assert ast.literal_eval(stated[name]) == signature[name].default, name
    described = GradientFlowEncoder.__doc__.split("solver_options :")[1].split("optimizer :")[0]
    stated = dict(re.findall(r"``(\w+)=([^`]+)``", described))
    for solver, names in NOT_FLAT.items():
        for name in names:
            assert ast.literal_eval(stated[name]) == solver_options(solver)[name], name


def test_the_docstring_parser_reads_single_and_grouped_defaults():
    stated = _documented_defaults()
    assert stated["beta"] == "0.75" and stated["max_backtracks"] == "30"
    assert stated["rtol"] == "1e-5" and stated["atol"] == "1e-6"
    assert stated["n_steps"] == "100" and stated["grid"] == "'log'"


def _seen_options(monkeypatch):
    seen = []
    real = _gradient_flow.encode
    monkeypatch.setattr(
        _gradient_flow, "encode", lambda *a, **kw: seen.append(kw) or real(*a, **kw)
    )
    return seen


@pytest.mark.parametrize("solver", ["lbfgs", "dopri5", "amd"])
def test_solver_options_reach_the_solver_that_takes_them(solver, X, small, monkeypatch):
    given = {"history": 3, "armijo": 0.01, "safety": 0.8, "max_factor": 4.0}
    seen = _seen_options(monkeypatch)
    tau = "auto" if solver == "lbfgs" else 5.0
    GradientFlowEncoder(**small, solver=solver, tau=tau, max_steps=40, solver_options=given).fit(
        X[:16]
    ).transform(X[:4])
    takes = set(solver_options(solver))
    expected = {k: v for k, v in given.items() if k in takes}
    assert seen and all({k: kw["options"].get(k) for k in expected} == expected for kw in seen)
    assert all(not set(kw["options"]) & (set(given) - takes) for kw in seen)


def test_an_lbfgs_history_of_one_changes_the_codes(X, small):
    est = GradientFlowEncoder(**small, solver="lbfgs").fit(X)
    codes = est.transform(X)
    est.set_params(solver_options={"history": 1})
    assert not np.array_equal(est.transform(X), codes)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"histroy": 5}, r"unknown key\(s\) \['histroy'\]; it takes \['armijo', 'first_step'"),
        ({"beta": 0.5}, r"parameters of their own.*GradientFlowEncoder\(beta=0.5\)"),
        ({"history": 0}, r"solver_options\['history'\]=0 is invalid: it must be an int"),
        ({"history": True}, r"solver_options\['history'\]=True is invalid"),
        ({"armijo": 1.5}, r"solver_options\['armijo'\]=1.5 is invalid"),
        ({"max_factor": float("inf")}, r"solver_options\['max_factor'\]=inf is invalid"),
        ({"first_step": float("nan")}, r"solver_options\['first_step'\]=nan is invalid"),
        ({"safety": "high"}, r"solver_options\['safety'\]='high' is invalid"),
    ],
)
def test_invalid_solver_options_are_refused_naming_the_fix(options, match, X, small):
    est = GradientFlowEncoder(**small, solver_options=options)
    with pytest.raises(ValueError, match=match):
        est.fit(X)
    assert not hasattr(est, "decoder_")


def test_solver_options_must_be_a_dict(X, small):
    with pytest.raises(ValueError, match="solver_options"):
        GradientFlowEncoder(**small, solver_options=[("history", 3)]).fit(X)


def test_solver_options_work_in_clone_get_params_and_a_grid_search(X, small):
    est = GradientFlowEncoder(**small, solver_options={"history": 4})
    assert est.get_params()["solver_options"] == {"history": 4}
    assert clone(est).get_params()["solver_options"] == {"history": 4}
    grid = {"solver_options": [None, {"history": 2}, {"history": 5, "shrink": 0.7}]}
    search = GridSearchCV(GradientFlowEncoder(**small), grid, cv=2).fit(X)
    assert [p["solver_options"] for p in search.cv_results_["params"]] == grid["solver_options"]


def test_solver_options_survive_save_and_load(X, small, tmp_path):
    est = GradientFlowEncoder(**small, solver_options={"history": 4, "armijo": 1e-3}).fit(X)
    est.save(tmp_path / "model.safetensors")
    loaded = GradientFlowEncoder.load(tmp_path / "model.safetensors")
    assert loaded.solver_options == {"history": 4, "armijo": 1e-3}
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))


def test_a_file_with_invalid_solver_options_is_refused(X, small, tmp_path):
    path = tmp_path / "model.safetensors"
    GradientFlowEncoder(**small).fit(X).save(path)
    _rewrite(path, edit_content=lambda c: c["params"].update(solver_options={"dict": {"a": 1}}))
    with pytest.raises(ModelFileError, match="invalid parameters.*unknown key"):
        GradientFlowEncoder.load(path)


# -- solver_: 'auto' resolved once per fit ---------------------------------------------------


@pytest.mark.parametrize("settings, solver", [({}, "lbfgs"), ({"flow": "nesterov"}, "amd")])
def test_solver_is_resolved_once_per_fit(settings, solver, X, small, monkeypatch):
    calls = []
    real = GradientFlowEncoder._resolve_solver
    monkeypatch.setattr(
        GradientFlowEncoder, "_resolve_solver", lambda self: calls.append(1) or real(self)
    )
    seen = _seen_options(monkeypatch)
    # 2 epochs of 4 batches; from z = 0, so that no distillation encodes the rows once more.
    est = GradientFlowEncoder(**small, **settings, code_init="zeros").fit(X)
    assert est.solver_ == solver and est.solver == "auto"
    assert len(seen) == 8 and {kw["solver"] for kw in seen} == {solver}
    assert len(calls) == 2  # the parameter check and the fitted attribute


def test_transform_resolves_the_settings_of_its_call(X, small, monkeypatch):
    est = GradientFlowEncoder(**small).fit(X)
    seen = _seen_options(monkeypatch)
    est.set_params(flow="nesterov").transform(X)
    assert [kw["solver"] for kw in seen] == ["amd"]
    assert est.solver_ == "lbfgs"  # what training used


def test_a_file_from_before_solver_was_recorded_resolves_it(X, small, tmp_path):
    path = tmp_path / "model.safetensors"
    est = GradientFlowEncoder(**small, flow="nesterov").fit(X)
    est.save(path)
    _rewrite(path, edit_content=lambda c: c["fitted"].pop("solver"))
    loaded = GradientFlowEncoder.load(path)
    assert loaded.solver_ == "amd"
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))


def test_an_invalid_recorded_solver_is_refused(X, small, tmp_path):
    path = tmp_path / "model.safetensors"
    GradientFlowEncoder(**small).fit(X).save(path)
    _rewrite(path, edit_content=lambda c: c["fitted"].update(solver="os.system"))
    with pytest.raises(ModelFileError, match="fitted attribute solver is invalid"):
        GradientFlowEncoder.load(path)


# -- capabilities ----------------------------------------------------------------------------


def test_the_training_step_cap_follows_the_endpoint_capability(X, small, monkeypatch):
    # fit_max_steps caps a solver that goes straight to the endpoint, whatever its name.
    monkeypatch.setattr(SOLVERS["amd"], "goes_to_endpoint", True)
    est = GradientFlowEncoder(**small, solver="amd", fit_max_steps=3)
    assert "fit_max_steps" not in est._unread_parameters()
    monkeypatch.setattr(SOLVERS["amd"], "goes_to_endpoint", False)
    assert "fit_max_steps" in est._unread_parameters()
    assert "fit_max_steps" not in GradientFlowEncoder(solver="lbfgs")._unread_parameters()


def test_solver_options_are_unread_unless_the_solver_takes_a_key():
    assert "solver_options" in GradientFlowEncoder()._unread_parameters()
    est = GradientFlowEncoder(solver="lbfgs", solver_options={"safety": 0.5})
    assert "solver_options" in est._unread_parameters()
    est.set_params(solver_options={"history": 3})
    assert "solver_options" not in est._unread_parameters()
