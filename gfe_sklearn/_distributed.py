"""Data-parallel training on ``torch.distributed``: each rank encodes its share of a batch.

When a default process group is initialised (as under ``torchrun``), ``fit`` and
``partial_fit`` train data-parallel. Every rank calls them with the same data and parameters
and draws the same shuffles; each global batch of ``batch_size`` rows is cut into one
contiguous share per rank, and each rank encodes its share (a sample's flow needs no other
sample). One ``all_reduce`` per batch then sums the ranks' loss sums and gradients, each
already divided by the global batch's row count, so every rank steps its optimizer with the
gradient of the whole batch's mean loss: the one-process update, to float rounding, and the
same weights on every rank.

Why not ``DistributedDataParallel``: it averages gradients over ranks, which weighs unequal
shares (the last batch of an epoch) wrongly, and it expects one forward call through its
wrapper per backward pass, while a GFE batch calls the decoder many times (the flow, then the
update; with ``adjoint='full'`` or ``'unrolled'`` the gradient flows through the flow's calls
too). The ranks must also agree on more than gradients: the shuffling generator, the checks
of the call, the epoch's record, an interrupt. That is what this module keeps in one place;
``_base`` calls it where the one-process loop would act alone.
"""

import contextlib
import hashlib
import math
import os
import signal
import threading
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist

from ._device import resolve_device

# Parameters that may differ between ranks: a rank may keep quiet, name its own GPU, or run
# another number of threads, and still train the same model.
RANK_LOCAL_PARAMETERS = frozenset({"verbose", "device", "n_threads"})


def process_group_active():
    """Whether this process is a rank of an initialised default process group."""
    return dist.is_available() and dist.is_initialized()


def data_parallel(estimator):
    """The ``DataParallel`` that a fit of ``estimator`` trains through, or None to train alone.

    ``distributed='auto'`` trains data-parallel in a process group of two ranks or more;
    ``True`` insists on it; ``False`` trains in this process alone, in a group or not.
    """
    setting = estimator.distributed
    if setting is False:
        return None
    if not process_group_active():
        if setting is True:
            raise ValueError(
                "distributed=True, but no torch.distributed process group is initialised. "
                "Launch the script with torchrun (e.g. torchrun --nproc-per-node 2 script.py) "
                "and call torch.distributed.init_process_group() before fit, or set "
                "distributed='auto' to train in this process when there is no group."
            )
        return None
    if dist.get_world_size() == 1:
        return None
    return DataParallel()


def writes_files(estimator):
    """Whether ``save`` writes here: in a data-parallel process group, rank 0 alone does."""
    if getattr(estimator, "distributed", "auto") is False or not process_group_active():
        return True
    return dist.get_rank() == 0


def local_gpu(rank):
    """The index of this rank's GPU on its machine: ``LOCAL_RANK`` (torchrun sets it), else
    the global rank (one machine, ranks started by ``torch.multiprocessing.spawn``)."""
    local = int(os.environ.get("LOCAL_RANK", rank))
    count = torch.cuda.device_count()
    if local >= count:
        raise ValueError(
            f"This rank's local GPU would be cuda:{local} (LOCAL_RANK), but this machine has "
            f"{count} GPU(s): start one rank per GPU (torchrun --nproc-per-node {count}), or "
            "set device='cuda:N' (or device='cpu') explicitly on each rank."
        )
    return local


@dataclass(frozen=True)
class BatchShare:
    """This rank's rows ``start:stop`` of a global batch of ``size`` rows.

    What a training loss needs beyond its own rows: where they sit in the batch (random draws
    are made for the whole batch, so that every rank's generator moves as one process's),
    and statistics over the whole batch.
    """

    start: int
    stop: int
    size: int
    group: object = None

    @property
    def rows(self):
        return slice(self.start, self.stop)

    def mean_std(self, values):
        """The columns' mean and standard deviation (divisor n - 1) over the whole batch."""
        wide = values.detach().to(torch.float64)
        sums = torch.cat([wide.sum(dim=0), (wide * wide).sum(dim=0)])
        dist.all_reduce(sums, group=self.group)
        k = values.shape[1]
        mean = sums[:k] / self.size
        variance = (sums[k:] - self.size * mean * mean) / (self.size - 1)
        return mean.to(values.dtype), variance.clamp_min(0).sqrt().to(values.dtype)


class DataParallel:
    """One data-parallel call of ``fit`` or ``partial_fit`` on the default process group.

    Used as a context manager around the call: Ctrl-C (SIGINT, and SIGTERM, which is how
    ``torchrun`` passes Ctrl-C on to its ranks) then only marks the call interrupted, and
    every rank raises ``KeyboardInterrupt`` at the next point where the ranks agree (after
    a batch's reduction, or an epoch's record), so that all stop at the same update.
    A second signal interrupts at once.
    """

    def __init__(self):
        self.group = None  # the default group
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.backend = str(dist.get_backend())
        # Where the small tensors of the collectives live: nccl reduces CUDA tensors only.
        self.device = "cpu"
        if self.backend == "nccl" and torch.cuda.is_available():
            self.device = f"cuda:{local_gpu(self.rank)}"
        self._interrupted = False
        self._handlers = {}

    # -- interrupts --------------------------------------------------------------------------

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            # Only where Python's own behaviour would act: a handler the user set is theirs.
            for signum, default in (
                (signal.SIGINT, signal.default_int_handler),
                (signal.SIGTERM, signal.SIG_DFL),
            ):
                if signal.getsignal(signum) is default:
                    self._handlers[signum] = default
                    signal.signal(signum, self._defer)
        return self

    def __exit__(self, kind, value, traceback):
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers.clear()
        if kind is None and self._interrupted:
            # The signal came after the last point of agreement: the call has finished on
            # every rank, and the interrupt still propagates, as in one process.
            raise KeyboardInterrupt
        return False

    def _defer(self, signum, frame):
        if self._interrupted:  # asked twice: stop now, whatever the other ranks do
            for number, handler in self._handlers.items():
                signal.signal(number, handler)
            raise KeyboardInterrupt
        self._interrupted = True

    # -- collectives -------------------------------------------------------------------------

    def _device_context(self):
        # nccl's object collectives run on the current CUDA device, which must be the rank's.
        if torch.device(self.device).type == "cuda":
            return torch.cuda.device(torch.device(self.device))
        return contextlib.nullcontext()

    def _gather_objects(self, value):
        values = [None] * self.world_size
        with self._device_context():
            dist.all_gather_object(values, value, group=self.group)
        return values

    def _broadcast_object(self, value):
        box = [value if self.rank == 0 else None]
        with self._device_context():
            dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def _sum(self, values, dtype=torch.float64):
        tensor = torch.tensor(values, dtype=dtype, device=self.device)
        dist.all_reduce(tensor, group=self.group)
        return tensor

    # -- the start of a call -----------------------------------------------------------------

    def resolve_device(self, device):
        """The device of a new model on this rank: ``'auto'`` and ``'cuda'`` are its own GPU."""
        if isinstance(device, str) and device in ("auto", "cuda") and torch.cuda.is_available():
            resolved = f"cuda:{local_gpu(self.rank)}"
        else:
            resolved = resolve_device(device)
        # A group of one backend, nccl, cannot reduce this rank's tensors on the CPU; with
        # "cpu:gloo,cuda:nccl" (init_process_group's default where CUDA is) gloo does.
        if self.backend == "nccl" and torch.device(resolved).type != "cuda":
            raise ValueError(
                f"The process group's backend is {self.backend!r}, which reduces CUDA tensors "
                f"only, but device={device!r} puts this rank's model on {resolved!r}. Use "
                "device='auto' or 'cuda' (each rank takes its LOCAL_RANK's GPU), or initialise "
                "the group with backend='gloo' to train on CPUs."
            )
        return resolved

    def agreed_rng(self, rng, own):
        """``rng`` in rank 0's state on every rank, so that all draw the same shuffles.

        ``own``: the estimator's own generator (continued training), set in place; any other
        (the global one of ``random_state=None``, a user's instance) is left alone on the
        other ranks, which continue with a copy.
        """
        state = self._broadcast_object(rng.get_state() if self.rank == 0 else None)
        if self.rank == 0:
            return rng
        if not own:
            rng = np.random.RandomState()
        rng.set_state(state)
        return rng

    def prepare(self, estimator, X, incremental):
        """``estimator._prepare_fit`` on every rank, and the refusal of a call that differs.

        A rank that fails alone would leave the others waiting at their next collective, so
        every rank reports whether its checks passed and what it was called with, and all
        raise if one failed or if the calls differ (data, parameters, the model continued).
        """
        try:
            prepared, error = estimator._prepare_fit(X, incremental, self), None
        except Exception as caught:  # re-raised below, once the ranks know of it
            prepared, error = None, caught
        if error is None:
            mine = self._describe_call(estimator, prepared[0], prepared[1], incremental)
        else:
            mine = {"error": f"{type(error).__name__}: {error}"}
        gathered = self._gather_objects((mine, self._interrupted))
        if any(interrupted for _, interrupted in gathered):
            raise KeyboardInterrupt
        if error is not None:
            raise error
        device = prepared[2].get("device_", getattr(estimator, "device_", None))
        if self.backend == "nccl" and torch.device(device).type == "cuda":
            self.device = str(device)  # a 'cuda:N' of the user's, where nccl binds this rank
        reports = [report for report, _ in gathered]
        failed = [(r, report["error"]) for r, report in enumerate(reports) if "error" in report]
        if failed:
            rank, message = failed[0]
            raise RuntimeError(
                f"Rank {rank} refused this {'partial_fit' if incremental else 'fit'} call "
                f"({message}); every rank must make the same call, with the same X and "
                "parameters."
            )
        differing = [name for name in mine if any(r[name] != mine[name] for r in reports)]
        if differing:
            what = ", ".join(differing)
            raise ValueError(
                f"The ranks of the process group called {type(estimator).__name__}."
                f"{'partial_fit' if incremental else 'fit'} with different {what}: data-"
                "parallel training needs every rank to pass the same X and parameters and to "
                "continue the same model (each takes its share of every batch). Pass the same "
                "X on every rank, or set distributed=False to train each rank's model alone."
            )
        return prepared

    def _describe_call(self, estimator, X, X_val, incremental):
        params = {
            name: _describe(value)
            for name, value in sorted(estimator.get_params(deep=False).items())
            if name not in RANK_LOCAL_PARAMETERS
        }
        continued = estimator._continues_training(incremental)
        model = None
        if continued:
            model = (estimator.n_iter_, estimator.n_samples_seen_, estimator.n_features_in_)
        return {
            "X": (_fingerprint(X), None if X_val is None else _fingerprint(X_val)),
            "parameters": params,
            "the fitted model": model,
        }

    def map_rows(self, X, fn):
        """``fn`` (rows to an array with a row per row) on every rank's contiguous share of the
        rows of ``X``, the results gathered in row order on every rank."""
        if X.shape[0] < self.world_size:  # a share would be empty
            return fn(X)
        share = self.share(X.shape[0])
        return np.concatenate(self._gather_objects(fn(X[share.rows])))

    def share_weights(self, modules):
        """Rank 0's weights and buffers on every rank (a user's module may differ by rank)."""
        for module in modules:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0, group=self.group)

    # -- training ----------------------------------------------------------------------------

    def share(self, n_rows):
        """This rank's share of a global batch of ``n_rows``: contiguous, sizes within one."""
        base, extra = divmod(n_rows, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return BatchShare(start, start + base + (self.rank < extra), n_rows, self.group)

    def update(self, estimator, X, rows):
        """One optimizer step on the global batch ``X[rows]``; returns its mean loss.

        Each rank's loss sum and gradient is divided by the global row count, so their sum
        is the one-process gradient of the batch's mean loss. A batch with fewer rows than
        ranks is computed whole on every rank (their modules' buffers and generators move
        alike) and only rank 0's gradient counts.
        """
        n_rows = rows.size
        if n_rows < self.world_size:
            mine, batch, counts = rows, None, self.rank == 0
        else:
            batch = self.share(n_rows)
            mine, counts = rows[batch.rows], True
        params = [
            p for module in estimator._modules() for p in module.parameters() if p.requires_grad
        ]
        estimator.optimizer_.zero_grad(set_to_none=True)
        target = estimator._tensor(X[mine])
        loss_sum, error = 0.0, None
        try:
            losses = estimator._training_loss(target, batch)
            if counts:
                local = losses.sum()
                (local / n_rows).backward()
                loss_sum = local.item()
        except Exception as caught:  # re-raised after the reduction, which the others wait in
            error = caught
        dtype, device = estimator._model_dtype, estimator.device_
        head = torch.tensor(
            [loss_sum, float(self._interrupted), float(error is not None)],
            dtype=dtype,
            device=device,
        )
        present = torch.tensor([p.grad is not None for p in params], dtype=dtype, device=device)
        grads = [
            p.grad.reshape(-1).to(dtype)
            if p.grad is not None
            else torch.zeros(p.numel(), dtype=dtype, device=device)
            for p in params
        ]
        buffer = torch.cat([head, present, *grads])
        dist.all_reduce(buffer, group=self.group)
        loss_sum, interrupted, failures = buffer[:3].tolist()
        if error is not None:
            raise error
        if failures:
            raise RuntimeError(
                "Another rank's training failed on this batch (its error is in that rank's "
                "output); every rank stops, and the estimator keeps the state it had before "
                "this call."
            )
        if interrupted:
            raise KeyboardInterrupt
        batch_loss = loss_sum / n_rows
        if not math.isfinite(batch_loss):
            raise ValueError(estimator._non_finite_loss_message(torch.tensor(batch_loss), target))
        offset = 3 + len(params)
        for p, has_grad in zip(params, buffer[3:offset].tolist()):
            size = p.numel()
            p.grad = buffer[offset : offset + size].view_as(p).to(p.dtype) if has_grad else None
            offset += size
        estimator.optimizer_.step()
        return batch_loss

    def validation_score(self, estimator, X_val):
        """The mean validation score, each rank scoring its share of the rows."""
        part = X_val[self.share(X_val.shape[0]).rows]
        scores = estimator._score_batches(part) if part.shape[0] else np.zeros(0)
        total, count = self._sum([float(np.sum(scores, dtype=np.float64)), float(len(scores))])
        return total.item() / count.item()

    def agree_epoch(self, epoch_loss, validation):
        """Rank 0's record of the epoch on every rank (stopping decisions follow from it), or
        ``KeyboardInterrupt`` on every rank if one was interrupted since the last batch."""
        mine = self.rank == 0
        values = self._sum(
            [
                epoch_loss if mine else 0.0,
                (validation or 0.0) if mine else 0.0,
                float(self._interrupted),
            ]
        ).tolist()
        if values[2]:
            raise KeyboardInterrupt
        return values[0], None if validation is None else values[1]


def _describe(value):
    """A parameter's value as ranks can compare it: modules and generators by their kind."""
    if isinstance(value, torch.nn.Module | np.random.RandomState):
        return type(value).__name__
    return repr(value)


def _fingerprint(X):
    """The shape, dtype and a hash of the bytes of validated data (dense or CSR)."""
    digest = hashlib.blake2b(digest_size=16)
    parts = (X.data, X.indices, X.indptr) if sp.issparse(X) else (X,)
    for part in parts:
        digest.update(np.ascontiguousarray(part).view(np.uint8).reshape(-1))
    return tuple(X.shape), str(X.dtype), digest.hexdigest()
