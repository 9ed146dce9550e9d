"""Devices: resolving the ``device`` parameter, and pickles that move from a GPU to a CPU."""

import io
import warnings

import torch

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def _mps_available():
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _device_available(device):
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    if device.type == "mps":
        return _mps_available()
    return device.type == "cpu"


def resolve_device(device):
    """The device a fit runs on: ``'auto'`` is CUDA, else MPS, else the CPU.

    Raises a ``ValueError`` naming the valid forms for an unknown name, and for a device
    this machine does not have.
    """
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={device!r} is not valid; use one of {list(DEVICES)}.")
    if not _device_available(resolved):
        raise ValueError(
            f"device={device!r} is not available on this machine; use device='auto' (CUDA, "
            "then MPS, then the CPU) or device='cpu'."
        )
    return str(resolved)


def _is_torch(value):
    return isinstance(value, (torch.nn.Module, torch.optim.Optimizer, torch.Tensor))


class PortableTorchStateMixin:
    """Pickling that survives a missing GPU (as skorch's ``__getstate__/__setstate__``).

    Every torch object in the instance ``__dict__`` (modules, optimizers, tensors) travels
    in one ``torch.save`` blob; on loading, a model whose ``device_`` this machine lacks is
    mapped onto the CPU with a warning instead of failing.
    """

    def __getstate__(self):
        state = dict(super().__getstate__())
        tensors = {key: value for key, value in state.items() if _is_torch(value)}
        if tensors:
            buffer = io.BytesIO()
            torch.save(tensors, buffer)
            state = {key: value for key, value in state.items() if key not in tensors}
            state["_torch_blob"] = buffer.getvalue()
        return state

    def __setstate__(self, state):
        state = dict(state)
        blob = state.pop("_torch_blob", None)
        if blob is not None:
            device = state.get("device_")
            map_location = None
            if device is not None and not _device_available(device):
                warnings.warn(
                    f"This {type(self).__name__} was fitted on device {device!r}, which this "
                    "machine does not have; it is loaded on the CPU (device_='cpu').",
                    UserWarning, stacklevel=2,
                )
                map_location, state["device_"] = "cpu", "cpu"
            elif device is None and not torch.cuda.is_available():
                map_location = "cpu"
            state.update(torch.load(io.BytesIO(blob), map_location=map_location,
                                    weights_only=False))
        super().__setstate__(state)
