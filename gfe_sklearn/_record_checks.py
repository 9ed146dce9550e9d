"""Checks of a model file's fitted record, made before anything is built from it.

A model file states its model twice: as settings (JSON) and as a tensor table (each weight's
dtype and shape). ``load`` checks each setting's type and range here, then compares the
modules that the settings describe, built on the meta device (shapes without memory), with
the tensor table: a small file that claims a huge model is refused before anything is
allocated, and every refusal names the file and the field.
"""

import math

import torch

from ._model_file import ModelFileError
from .flow import LOSSES
from .nn import ACTIVATIONS

# Widths (features, components, hidden units) above this are not a model anyone saved; the
# bound keeps every shape, and products of two, inside torch's int64 sizes.
MAX_WIDTH = 2**31 - 1

ARCHITECTURE_FIELDS = ("n_components", "hidden_layer_sizes", "activation", "loss")


def is_count(value, low=0, high=None):
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )


def is_numbers(value):
    return isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    )


def is_device(value):
    if not isinstance(value, str):
        return False
    try:
        return torch.device(value).type in ("cpu", "cuda", "mps")
    except (RuntimeError, TypeError, ValueError):
        return False


def checked_fitted(fitted, fields, source):
    """``fitted`` (the record's JSON) when every field has the type and range it must have.

    ``fields`` are the estimator's ``FittedField``s; one recorded ``since`` a version may be
    missing (a file from before it), any other must be there, and no other key may be.
    """
    if not isinstance(fitted, dict):
        raise ModelFileError(f"{source} holds no record of the fitted model.")
    unknown = sorted(set(fitted) - {f.key for f in fields})
    if unknown:
        raise ModelFileError(
            f"{source} records fitted attributes {unknown[:5]} that this version does not "
            "know: it was saved by a newer gfe-sklearn; upgrade to load it."
        )
    if any(f.key not in fitted for f in fields if f.since is None):
        raise ModelFileError(f"{source} holds an incomplete record of the fitted model.")
    for field in fields:
        if field.key in fitted and not field.valid(fitted[field.key]):
            raise ModelFileError(
                f"{source}: fitted attribute {field.key} is invalid ({fitted[field.key]!r:.80})."
            )
    # math.prod, not np.prod: int64 products wrap, and a wrapped one could match.
    if math.prod(fitted["sample_shape"]) != fitted["n_features_in_"]:
        raise ModelFileError(f"{source}: sample_shape does not match n_features_in_.")
    names = fitted["feature_names_in_"]
    if names is not None and len(names) != fitted["n_features_in_"]:
        raise ModelFileError(f"{source}: feature_names_in_ does not match n_features_in_.")
    return fitted


def check_architecture(architecture, n_latent, n_tensors, source, optional=None):
    """Refuse an architecture whose fields are not those a fit records, or out of range.

    ``optional`` maps fields that later versions record (files from before lack them) to
    their valid values.

    ``n_tensors`` (the tensors in the file) bounds the number of layers, which the meta
    build below takes time for: each default layer has two tensors in the file. A
    user-supplied module may ignore the sizes, so a short list passes whatever the file holds.
    """
    optional = optional or {}
    required = set(ARCHITECTURE_FIELDS)
    if not (
        isinstance(architecture, dict) and required <= set(architecture) <= required | set(optional)
    ):
        raise ModelFileError(
            f"{source}: fitted attribute architecture must have the fields "
            f"{list(ARCHITECTURE_FIELDS)} (and may have {sorted(optional)}); it is "
            f"{architecture!r:.120}."
        )
    for name, values in optional.items():
        if name in architecture and not (
            isinstance(architecture[name], str) and architecture[name] in values
        ):
            raise ModelFileError(
                f"{source}: architecture field {name} is invalid ({architecture[name]!r:.80})."
            )
    hidden = architecture["hidden_layer_sizes"]
    valid = {
        "n_components": is_count(architecture["n_components"], 1, MAX_WIDTH),
        "hidden_layer_sizes": isinstance(hidden, tuple)
        and len(hidden) <= max(n_tensors, 100)
        and all(is_count(size, 1, MAX_WIDTH) for size in hidden),
        "activation": isinstance(architecture["activation"], str)
        and architecture["activation"] in ACTIVATIONS,
        "loss": isinstance(architecture["loss"], str) and architecture["loss"] in LOSSES,
    }
    for name, ok in valid.items():
        if not ok:
            raise ModelFileError(
                f"{source}: architecture field {name} is invalid ({architecture[name]!r:.80})."
            )
    if architecture["n_components"] != n_latent:
        raise ModelFileError(
            f"{source}: fitted attribute n_latent={n_latent} differs from the architecture's "
            f"n_components={architecture['n_components']}."
        )


def check_loss(loss, fitted_loss, architecture, source):
    """Refuse a fitted ``loss_`` that is not the architecture's, or missing where it must be.

    ``loss`` is the file's parameter and ``fitted_loss`` its fitted ``loss_`` (None in a file
    from before 0.10.0, whose models had no ``loss='auto'``); both are checked for range
    before. The architecture records the loss the decoder was trained with, so ``loss_``
    must be that one.
    """
    if fitted_loss is None:
        if loss == "auto":
            raise ModelFileError(
                f"{source} holds a model of loss='auto' but not the loss it chose (fitted "
                "attribute loss_, 'bce' or 'mse'): the file is damaged or was edited."
            )
        return
    if fitted_loss != architecture["loss"]:
        raise ModelFileError(
            f"{source}: fitted attribute loss_={fitted_loss!r} differs from the architecture's "
            f"loss={architecture['loss']!r}, which the decoder was trained with: the file is "
            "damaged or was edited."
        )


def check_tensor_table(expected, tensors, source):
    """Refuse a file whose module tensors are not exactly ``expected`` (name -> meta tensor).

    The message says which settings disagree with the table: the architecture and
    ``n_features_in_``, or the user-supplied module passed to ``load``.
    """
    fix = (
        "the file is damaged or was edited (for a user-supplied module, pass one built as "
        "before fitting)."
    )
    for name, meta in expected.items():
        actual = tensors.get(name)
        if actual is None:
            raise ModelFileError(
                f"{source}: its weights do not fit its architecture and n_features_in_, which "
                f"call for a tensor {name!r} that the tensor table lacks: {fix}"
            )
        if actual.shape != meta.shape or actual.dtype != meta.dtype:
            raise ModelFileError(
                f"{source}: its weights do not fit its architecture and n_features_in_, which "
                f"call for {name} of shape {list(meta.shape)} ({meta.dtype}); the tensor table "
                f"gives {list(actual.shape)} ({actual.dtype}): {fix}"
            )
    extra = sorted(
        name for name in tensors if not name.startswith("optimizer_.") and name not in expected
    )
    if extra:
        raise ModelFileError(
            f"{source}: its tensor table holds {extra[:3]}, which its architecture has no "
            f"place for: {fix}"
        )


def optimizer_state(saved, fresh, tensors, source):
    """The state dict to load into ``fresh`` (a new optimizer of the saved class), checked.

    Each param group field must be ``fresh``'s (``lr`` any positive number), and each state
    tensor have the shape of its parameter (or be a scalar, as ``step`` is) and finite
    values: a malformed state is refused here instead of failing at a later ``partial_fit``.
    """

    def refuse(problem):
        raise ModelFileError(f"{source}: fitted attribute optimizer {problem}.")

    if set(saved) != {"class", "param_groups", "state"}:
        refuse(f"must have the fields class, param_groups and state; it has {sorted(saved)}")
    groups, state = saved["param_groups"], saved["state"]
    defaults = fresh.state_dict()["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(defaults):
        refuse(f"must have {len(defaults)} param group(s)")
    for group, default in zip(groups, defaults):
        if not isinstance(group, dict) or group.get("params") != default["params"]:
            refuse("has param_groups that do not list the model's parameters")
        for key, value in group.items():
            if key != "params" and not _fits_group(key, value, default.get(key, _UNKNOWN)):
                refuse(f"has an invalid param_groups field {key}={value!r:.40}")
    if not isinstance(state, dict):
        refuse("has a state that is not a mapping")
    params = [p for group in fresh.param_groups for p in group["params"]]
    loaded, listed = {}, set()
    for index, keys in state.items():
        if not (index.isdigit() and int(index) < len(params)) or not (
            isinstance(keys, list) and all(isinstance(key, str) for key in keys)
        ):
            refuse(f"has an invalid state entry {index!r:.40}")
        param, entry = params[int(index)], {}
        for key in keys:
            name = f"optimizer_.{index}.{key}"
            tensor = tensors.get(name)
            if (
                tensor is None
                or tensor.shape not in (param.shape, torch.Size([]))
                or tensor.dtype in (torch.bool, torch.uint8)
                or not bool(torch.isfinite(tensor).all())
            ):
                refuse(f"state {index}.{key} is missing, not finite, or does not fit its parameter")
            entry[key] = tensor
            listed.add(name)
        loaded[int(index)] = entry
    extra = sorted(
        name for name in tensors if name.startswith("optimizer_.") and name not in listed
    )
    if extra:
        refuse(f"has tensors {extra[:3]} that its state does not list")
    return {"state": loaded, "param_groups": groups}


def _fits_group(key, value, default):
    """Whether a saved param group value may stand where a new optimizer has ``default``.

    gfe-sklearn builds its optimizers with ``lr=learning_rate`` and fixed settings, so every
    other field of a saved group equals a new optimizer's: another value (``centered=True``,
    ``momentum=0.9``) would need state the file does not hold. A field this torch version
    does not know, from a newer one, may be any plain value.
    """
    if key == "lr":
        return _is_number(value) and value > 0
    if default is _UNKNOWN:
        return value is None or isinstance(value, (bool, str)) or _is_number(value)
    if isinstance(default, tuple):  # Adam's betas, a list in JSON
        default = list(default)
    if _is_number(default):  # 0 and 0.0 alike: JSON keeps whichever torch stored
        return _is_number(value) and value == default
    return type(value) is type(default) and value == default


_UNKNOWN = object()


def _is_number(value):
    # Integers beyond int64 do not convert to torch's C types.
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value < 2**63
    )
