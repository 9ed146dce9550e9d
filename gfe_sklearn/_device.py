"""Devices: resolving the ``device`` parameter, what this machine has, and CPU threads."""

from contextlib import contextmanager

import joblib
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


def thread_count(n_threads):
    """The torch threads ``n_threads`` asks for: None keeps torch's setting; -1 all CPUs,
    -2 all but one (joblib's convention, which respects CPU affinity and container limits)."""
    if n_threads is None:
        return torch.get_num_threads()
    if n_threads < 0:
        return max(1, joblib.cpu_count() + 1 + n_threads)
    return n_threads


@contextmanager
def torch_threads(n_threads):
    """Run the enclosed torch work with ``thread_count(n_threads)`` intra-op threads.

    torch's setting is process-wide, so it is restored afterwards: the caller's other torch
    work keeps its own.
    """
    before = torch.get_num_threads()
    wanted = thread_count(n_threads)
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
