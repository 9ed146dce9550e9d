"""Devices: resolving the ``device`` parameter, and what this machine has."""

import torch

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def _mps_available():
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def device_available(device):
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
    if not device_available(resolved):
        raise ValueError(
            f"device={device!r} is not available on this machine; use device='auto' (CUDA, "
            "then MPS, then the CPU) or device='cpu'."
        )
    return str(resolved)
