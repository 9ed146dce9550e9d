"""Saving and loading fitted estimators without running code: ``save``/``load`` and pickling.

An estimator becomes a record: its parameters and fitted attributes as JSON, its modules'
weights, its optimizer's state and nothing else as tensors (``_model_file``). ``load`` rebuilds
the modules from the record's architecture and copies the weights in; a pickle carries the
same record as bytes, so unpickling a model runs no torch unpickler either. User-supplied
modules (``decoder=``, ``encoder=``) are code: a file records only their class name, and
``load`` takes the rebuilt module from the caller.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import io
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from ._device import device_available, resolve_device
from ._distributed import writes_files
from ._model_file import (
    FORMAT_VERSION,
    ModelFileError,
    model_bytes,
    read_model_bytes,
    read_model_file,
    write_model_file,
)
from ._record_checks import (
    check_architecture,
    check_loss,
    check_tensor_table,
    checked_fitted,
    optimizer_state,
)

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._typing import Device, FilePath

DTYPES = {"float32": torch.float32, "float64": torch.float64}

# The integer arrays a parameter may hold in a file (numpy's names, which np.dtype reads).
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")

_trust_legacy = contextvars.ContextVar("trust_legacy_pickles", default=False)


@contextlib.contextmanager
def trust_legacy_pickles() -> Iterator[None]:
    """Let pickles written by gfe-sklearn 0.2.0 or earlier load, for files you trust.

    Those pickles hold torch objects that only torch's full unpickler reads, which can run
    code from the file. Load such a model inside this context, then ``save`` it: the saved
    file loads anywhere without it.

    Examples
    --------
    >>> import joblib  # doctest: +SKIP
    >>> with trust_legacy_pickles():  # doctest: +SKIP
    ...     model = joblib.load("model-0.2.0.joblib")
    >>> model.save("model.safetensors")  # doctest: +SKIP
    """
    token = _trust_legacy.set(True)
    try:
        yield
    finally:
        _trust_legacy.reset(token)


class PersistenceMixin:
    """``save``, ``load`` and pickling through one safe record of the estimator."""

    # Fitted module attribute -> the parameter that may hold a user-supplied module for it.
    _module_parameters = {"decoder_": "decoder"}

    # Fields of the fitted architecture that later versions record, with their valid values.
    _recorded_since = {}

    # The fitted attributes and their places in the record (_fitted_state.FITTED_FIELDS).
    _fitted_fields = ()

    def save(self, path: FilePath) -> None:
        """Write the estimator to ``path`` in a file that loading cannot make run code.

        Parameters and fitted attributes are stored as JSON, the weights and the optimizer's
        state as raw tensors: a safetensors file, written by the ``safetensors`` package, whose
        metadata holds the JSON. Load it with ``load``; a model with a
        user-supplied module (``decoder=``) stores that module's weights and class name, and
        ``load`` needs the rebuilt module. The file is written whole or not at all.

        Parameters
        ----------
        path : str or path-like
            The file to write (``.safetensors`` is a fitting suffix). An existing file is
            replaced and keeps its mode, unless it is read-only (then ``PermissionError``);
            a new one gets the mode the umask allows; a symbolic link is written through to
            the file it points to.

        Notes
        -----
        In a ``torch.distributed`` process group where the estimator trains data-parallel
        (``distributed`` not False), rank 0 alone writes: the ranks hold the same model, and
        the others return at once without waiting, so calling ``save`` on rank 0 only works
        as well. A rank that reads the file must wait for it, e.g. with
        ``torch.distributed.barrier()`` after ``save`` on every rank.
        """
        if writes_files(self):
            write_model_file(path, *self._record())

    @classmethod
    def load(
        cls, path: FilePath, *, device: Device | None = None, **modules: torch.nn.Module
    ) -> Self:
        """An estimator saved by ``save``, read without running anything from the file.

        Parameters
        ----------
        path : str or path-like
        device : str, default=None
            Where the loaded model runs (``'cpu'``, ``'cuda'``, ...). By default the device
            it was fitted on, or the CPU with a warning when this machine lacks it.
        **modules : torch.nn.Module
            For a model fitted with a user-supplied module (``decoder=``, and ``encoder=``
            for the autoencoder): that module, built as it was before fitting; the saved
            weights are copied into a copy of it.

        Returns
        -------
        estimator : instance of this class

        Raises
        ------
        ModelFileError
            The file is not a model file of this class, or holds invalid settings or
            weights; nothing from it has run, and nothing its settings describe was
            allocated before they were checked against its tensors. Only regular files of
            at most 4 GiB are read: a FIFO, a device or a directory is refused unread.
        """
        unknown = sorted(set(modules) - set(cls._module_parameters.values()))
        if unknown:
            raise TypeError(
                f"{cls.__name__}.load got unexpected arguments {unknown}; it "
                f"takes modules for {sorted(cls._module_parameters.values())}."
            )
        content, tensors = read_model_file(path)
        estimator = cls.__new__(cls)
        estimator._apply_record(content, tensors, path, modules, device)
        return estimator

    def __getstate__(self):
        content, tensors = self._record()
        modules = {name: self.__dict__.get(name) for name in self._module_parameters.values()}
        return {
            "gfe_sklearn_model": model_bytes(content, tensors),
            "modules": {name: module for name, module in modules.items() if module is not None},
        }

    def __setstate__(self, state):
        if "gfe_sklearn_model" not in state:
            self._set_legacy_state(dict(state))
            return
        content, tensors = read_model_bytes(state["gfe_sklearn_model"], "the pickled model")
        self._apply_record(content, tensors, "the pickled model", state.get("modules", {}), None)

    # -- the record -------------------------------------------------------------------------

    def _record(self):
        names = [name for name in self._get_param_names() if name in self.__dict__]
        content = {
            "format_version": FORMAT_VERSION,
            "estimator": type(self).__name__,
            "params": {name: self._param_to_json(name, self.__dict__[name]) for name in names},
            "fitted": None,
        }
        tensors = {}
        if "decoder_" in self.__dict__:
            content["fitted"] = self._fitted_to_json(tensors)
        return content, tensors

    def _param_to_json(self, name, value):
        if name in self._module_parameters.values():
            return None if value is None else {"module": _class_name(value)}
        try:
            return _to_json(value)
        except TypeError:
            raise TypeError(
                f"{name}={value!r} cannot be stored in a model file; set it to a number, "
                "string or None (or pickle the estimator instead)."
            ) from None

    def _fitted_to_json(self, tensors):
        for attribute, module in self._fitted_modules().items():
            for key, value in module.state_dict().items():
                tensors[f"{attribute}.{key}"] = value
        return {
            field.key: field.write(getattr(self, field.attribute, None), tensors)
            for field in self._fitted_fields
        }

    def _apply_record(self, content, tensors, source, modules, device):
        if content.get("estimator") != type(self).__name__:
            raise ModelFileError(
                f"{source} holds a {content.get('estimator')!r}, not a {type(self).__name__}: "
                f"load it with {content.get('estimator')}.load."
            )
        params = self._params_from_json(content.get("params"), source, modules)
        self.__dict__.update(params)
        try:
            self._validate_params()
            self._check_params()
        except ValueError as error:
            raise ModelFileError(f"{source} holds invalid parameters: {error}") from error
        fitted = content.get("fitted")
        if fitted is not None:
            checked = checked_fitted(fitted, self._fitted_fields, source)
            self._restore_fitted(checked, tensors, source, device)
        else:
            if tensors:
                raise ModelFileError(f"{source} holds weights but no fitted model.")
            if device is not None:
                self.device = device

    def _params_from_json(self, saved, source, modules):
        if not isinstance(saved, dict):
            raise ModelFileError(f"{source} holds no parameters.")
        names = self._get_param_names()
        unknown = sorted(set(saved) - set(names))
        if unknown:
            raise ModelFileError(
                f"{source} holds parameters {unknown} that {type(self).__name__} does not "
                "have: it was saved by a newer gfe-sklearn; upgrade to load it."
            )
        params = {}
        for name in names:
            if name in self._module_parameters.values():
                params[name] = self._module_from_json(name, saved.get(name), source, modules)
            elif name in saved:
                params[name] = _from_json(saved[name], f"{source}: parameter {name!r}")
            else:
                params[name] = self.value_before_parameter(name)
        return params

    @classmethod
    def value_before_parameter(cls, name):
        """The value of parameter ``name`` that reproduces models made before it existed.

        ``load`` gives it to a model file that lacks the parameter, so that the model
        behaves as it did when it was saved. It is the parameter's default unless the
        default changes behaviour: ``GradientFlowEncoder``'s ``stop_rule`` defaults to
        ``'code'``, while models saved before it stopped their flows by the loss.

        Parameters
        ----------
        name : str
            A parameter of this class (a key of ``get_params()``).

        Returns
        -------
        value : object

        Examples
        --------
        >>> from gfe_sklearn import GradientFlowEncoder
        >>> GradientFlowEncoder().stop_rule, GradientFlowEncoder.value_before_parameter("stop_rule")
        ('code', 'loss')
        """
        if name not in cls._get_param_names():
            raise ValueError(
                f"{name!r} is not a parameter of {cls.__name__}; use one of "
                f"{cls._get_param_names()}."
            )
        return cls._values_before_parameter.get(
            name, inspect.signature(cls).parameters[name].default
        )

    def _module_from_json(self, name, saved, source, modules):
        given = modules.get(name)
        if not (saved is None or _is_module_record(saved)):
            raise ModelFileError(f"{source}: parameter {name} is invalid ({saved!r:.80}).")
        if saved is None:
            if given is not None:
                raise ValueError(
                    f"{source} was fitted without a user-supplied {name}; load it without {name}=."
                )
            return None
        if given is None:
            raise ValueError(
                f"{source} was fitted with a user-supplied {name} ({saved['module']!r}), which a "
                f"model file does not store as code: build that module as before fitting and "
                f"pass it, load(path, {name}=module); the saved weights are copied into it."
            )
        if not isinstance(given, torch.nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module; got {type(given).__name__}.")
        return given

    def _restore_fitted(self, fitted, tensors, source, device):
        # What describes the modules is read first: the modules are built from it.
        described = {
            field.attribute: field.read(fitted[field.key], self, tensors, source)
            for field in self._fitted_fields
            if field.kind in ("data", "model") and field.key in fitted
        }
        architecture, dtype = described["_fitted_architecture"], described["_model_dtype"]
        n_features = described["n_features_in_"]
        check_architecture(
            architecture,
            described["_n_latent"],
            len(tensors),
            source,
            optional=self._recorded_since,
        )
        check_loss(self.loss, fitted.get("loss_"), architecture, source)
        # Everything the file's settings describe is compared with its tensors first, on the
        # meta device: a crafted file claiming a huge model is refused before it is built.
        expected = self._checked_build(n_features, architecture, dtype, "meta", source)
        check_tensor_table(
            {f"{attr}.{k}": v for attr, m in expected.items() for k, v in m.state_dict().items()},
            tensors,
            source,
        )
        if device is not None:
            self.device = device
            device = resolve_device(device)
        else:
            device = self._loadable_device(described["device_"])
        described["device_"] = device
        modules = self._checked_build(n_features, architecture, dtype, device, source)
        for attribute, module in modules.items():
            _load_weights(module, attribute, tensors, dtype, source)
            module.eval()
        _check_decoder_output(modules["decoder_"], fitted, dtype, device, source)
        self.__dict__.update(modules)
        self._set_fitted(described)
        # Fields a file from before they were recorded lacks, from those it holds.
        self._set_fitted(
            {
                field.attribute: field.start(self)
                for field in self._fitted_fields
                if field.kind in ("data", "model") and field.key not in fitted
            }
        )
        # The training record last: the optimizer is rebuilt on the modules' parameters.
        self._set_fitted(
            {
                field.attribute: field.read(fitted[field.key], self, tensors, source)
                if field.key in fitted
                else field.start(self)  # a file from before the field was recorded
                for field in self._fitted_fields
                if field.kind in ("training", "fit")
            }
        )

    def _set_fitted(self, values):
        """Set fitted attributes; None removes one that a file records as absent."""
        absent = {f.attribute for f in self._fitted_fields if f.none_is_absent}
        for name, value in values.items():
            if value is None and name in absent:
                self.__dict__.pop(name, None)
            else:
                setattr(self, name, value)

    def _checked_build(self, n_features, architecture, dtype, device, source):
        try:
            return self._build_modules(
                n_features, architecture, torch.Generator().manual_seed(0), dtype, device
            )
        except (TypeError, ValueError, RuntimeError, OverflowError) as error:
            raise ModelFileError(f"{source} holds an invalid architecture: {error}") from error

    def _loadable_device(self, saved):
        if device_available(saved):
            return saved
        warnings.warn(
            f"This {type(self).__name__} was fitted on device {saved!r}, which this machine "
            "does not have; it is loaded on the CPU (device_='cpu').",
            UserWarning,
            stacklevel=4,
        )
        return "cpu"

    def _optimizer_from_json(self, saved, tensors, source):
        if saved is None:
            if any(name.startswith("optimizer_.") for name in tensors):
                raise ModelFileError(f"{source} holds optimizer tensors but no optimizer.")
            return None
        kinds = {cls.__name__: (cls, fixed) for cls, fixed in self._optimizers.values()}
        # A name, looked up by value: a crafted list or dict there cannot even be hashed.
        if not isinstance(saved.get("class"), str) or saved["class"] not in kinds:
            raise ModelFileError(f"{source} holds an unknown optimizer state.")
        cls, fixed = kinds[saved["class"]]
        params = [p for module in self._modules() for p in module.parameters()]
        optimizer = cls(params, lr=self.learning_rate, **fixed)
        state = optimizer_state(saved, optimizer, tensors, source)
        for values in state["state"].values():
            for key, value in values.items():
                values[key] = value.to(self.device_)
        try:
            optimizer.load_state_dict(state)
        except (KeyError, ValueError, TypeError) as error:
            raise ModelFileError(f"{source} holds an invalid optimizer state: {error}") from error
        return optimizer

    # -- pickles from gfe-sklearn 0.2.0 and earlier ----------------------------------------

    def _set_legacy_state(self, state):
        blob = state.pop("_torch_blob", None)
        if blob is not None:
            if not _trust_legacy.get():
                raise ModelFileError(
                    f"This {type(self).__name__} was pickled by gfe-sklearn 0.2.0 or earlier; "
                    "such pickles hold torch objects whose loading can run code from the file. "
                    "If you trust the file, load it inside `with gfe_sklearn."
                    "trust_legacy_pickles():` and save() it; the saved file loads safely."
                )
            device = state.get("device_")
            map_location = None
            if device is not None and not device_available(device):
                map_location, state["device_"] = "cpu", self._loadable_device(device)
            elif device is None and not torch.cuda.is_available():
                map_location = "cpu"
            state.update(
                torch.load(io.BytesIO(blob), map_location=map_location, weights_only=False)
            )
        for name in self._get_param_names():
            if name not in state:
                state[name] = self.value_before_parameter(name)
        self.__dict__.update(state)
        if "decoder_" in state:  # fitted before the fields recorded since were set by fit
            for field in self._fitted_fields:
                if field.since is not None and field.attribute not in state:
                    setattr(self, field.attribute, field.start(self))


def _class_name(value):
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _to_json(value):
    """JSON for parameter values; tuples and random states are tagged to come back as such."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, tuple):
        return {"tuple": [_to_json(item) for item in value]}
    if isinstance(value, list):
        return [_to_json(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"dict": {key: _to_json(item) for key, item in value.items()}}
    if isinstance(value, np.random.RandomState):
        return {"RandomState": _rng_to_json(value)}
    # Array-like sizes (hidden_layer_sizes=np.array([8, 8]) or range(...)) come back as given.
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu":
        return {"ndarray": {"dtype": value.dtype.name, "values": value.tolist()}}
    if isinstance(value, range):
        return {"range": [value.start, value.stop, value.step]}
    raise TypeError(f"{type(value).__name__} is not storable")


def _from_json(value, where):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_from_json(item, where) for item in value]
    if isinstance(value, dict) and len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "tuple" and isinstance(inner, list):
            return tuple(_from_json(item, where) for item in inner)
        if tag == "dict" and isinstance(inner, dict):
            return {key: _from_json(item, where) for key, item in inner.items()}
        if tag == "RandomState":
            return _rng_from_json(inner, where)
        if tag == "ndarray" and _is_int_array(inner):
            return np.asarray(inner["values"], dtype=inner["dtype"])
        if tag == "range" and _is_ints(inner, length=3) and inner[2] != 0:
            return range(*inner)
    raise ModelFileError(f"{where} holds a value this version cannot read: {value!r:.80}")


def _is_module_record(saved):
    return isinstance(saved, dict) and set(saved) == {"module"} and isinstance(saved["module"], str)


def _is_ints(value, length=None):
    return (
        isinstance(value, list)
        and (length is None or len(value) == length)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def _is_int_array(value):
    if not isinstance(value, dict) or set(value) != {"dtype", "values"}:
        return False
    if value["dtype"] not in INT_DTYPES or not _is_ints(value["values"]):
        return False
    info = np.iinfo(value["dtype"])
    return all(info.min <= v <= info.max for v in value["values"])


def _rng_to_json(rng):
    if rng is None:
        return None
    name, keys, position, has_gauss, gauss = rng.get_state()
    return [name, [int(k) for k in keys], int(position), int(has_gauss), float(gauss)]


def _rng_from_json(saved, where):
    if saved is None:
        return None
    rng = np.random.RandomState()
    try:
        name, keys, position, has_gauss, gauss = saved
        rng.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    except (TypeError, ValueError, IndexError, OverflowError):
        raise ModelFileError(f"{where} holds an invalid random state.") from None
    return rng


def _optimizer_to_json(optimizer, tensors):
    if optimizer is None:
        return None
    state_dict = optimizer.state_dict()
    keys = {}
    for index, values in state_dict["state"].items():
        keys[str(index)] = sorted(values)
        for key, value in values.items():
            tensors[f"optimizer_.{index}.{key}"] = torch.as_tensor(value)
    groups = [_plain(group) for group in state_dict["param_groups"]]
    return {"class": type(optimizer).__name__, "param_groups": groups, "state": keys}


def _plain(group):
    """An optimizer's param group as JSON (its tuples, e.g. Adam's betas, become lists)."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in group.items()}


def _load_weights(module, attribute, tensors, dtype, source):
    prefix = f"{attribute}."
    state = {
        name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)
    }
    expected = module.state_dict()
    wrong = [
        name
        for name, value in state.items()
        if name in expected and value.dtype != expected[name].dtype
    ]
    if wrong:
        raise ModelFileError(f"{source}: {attribute} weights {wrong} have the wrong dtype.")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelFileError(
            f"{source}: the saved {attribute} weights do not fit the module built for them "
            f"(for a user-supplied module, pass one built as before fitting): {error}"
        ) from error


def _check_decoder_output(decoder, fitted, dtype, device, source):
    """Refuse a file whose n_latent or sample_shape the decoder's output contradicts."""
    code = torch.zeros(1, fitted["n_latent"], dtype=dtype, device=device)
    try:
        with torch.no_grad():
            shape = list(decoder(code).shape)
    except RuntimeError as error:
        raise ModelFileError(
            f"{source}: fitted attribute n_latent={fitted['n_latent']} does not fit the "
            f"decoder: {error}"
        ) from error
    if shape != [1, *fitted["sample_shape"]]:
        raise ModelFileError(
            f"{source}: fitted attribute sample_shape={fitted['sample_shape']} does not fit "
            f"the decoder, whose output for one code has shape {shape}."
        )
