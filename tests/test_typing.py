"""Type hints of the public API: every argument and return annotated, every hint valid."""

import inspect
import typing

import numpy as np
import pytest
import torch
import typing_extensions

import gfe_sklearn._typing
from gfe_sklearn import (
    AutoEncoderBaseline,
    GradientFlowEncoder,
    GradientFlowImputer,
    datasets,
    make_hidden_entry_scorer,
    nn,
    trust_legacy_pickles,
)

ESTIMATOR_METHODS = {
    GradientFlowEncoder: (
        "__init__",
        "fit",
        "partial_fit",
        "transform",
        "inverse_transform",
        "score",
        "score_samples",
        "save",
        "load",
        "from_autoencoder",
        "flow_diagnostics",
    ),
    AutoEncoderBaseline: (
        "__init__",
        "fit",
        "partial_fit",
        "transform",
        "inverse_transform",
        "score",
        "save",
        "load",
    ),
    GradientFlowImputer: ("__init__", "fit", "transform"),
}
FUNCTIONS = [
    make_hidden_entry_scorer,
    trust_legacy_pickles,
    *(getattr(nn, name) for name in nn.__all__ if callable(getattr(nn, name))),
    *(getattr(datasets, name) for name in datasets.__all__),
]
PUBLIC = [
    *(getattr(cls, name) for cls, names in ESTIMATOR_METHODS.items() for name in names),
    *FUNCTIONS,
]


def _hints(function):
    function = inspect.unwrap(function)
    # The aliases are imported for type checkers only (under TYPE_CHECKING).
    names = {**vars(gfe_sklearn._typing), "Self": typing_extensions.Self, "np": np, "torch": torch}
    return typing.get_type_hints(function, globalns={**function.__globals__, **names})


@pytest.mark.parametrize("function", PUBLIC, ids=lambda f: f.__qualname__)
def test_every_argument_and_return_is_annotated_with_a_valid_hint(function):
    hints = _hints(function)
    parameters = inspect.signature(inspect.unwrap(function)).parameters
    expected = {name for name in parameters if name not in ("self", "cls")}
    assert expected | {"return"} == set(hints)


def test_nn_exports_its_builders_among_the_annotated():
    assert {f.__name__ for f in FUNCTIONS} >= {"make_decoder", "make_encoder", "make_mlp"}
