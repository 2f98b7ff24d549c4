"""Bytes alive while code runs on fake tensors: the memory account's instrument.

Under ``torch._subclasses.FakeTensorMode`` every op computes shapes only and allocates nothing.
``StorageAccount``, a dispatch mode entered inside it, sees every storage an op creates and
counts its bytes while it is alive (a weak reference per storage), so it knows the bytes alive
after every op and their peak, which storages autograd saved for a backward, and which module's
forward created each. ``cvg.plan`` runs a training step under it. No imports from the rest of
cvg: ``benchmarks/memory_calibration.py`` loads this file beside older versions of the package.

Calibrated against CUDA's ``torch.cuda.max_memory_allocated`` in ``docs/memory.md``: CUDA's
caching allocator rounds every block up and cuDNN takes workspace of its own, so a GPU peak is
stated as the count times ``1 + CUDA_MARGIN``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

GIB = 2**30
# what CUDA holds beyond the tensors themselves, as a share of the counted peak: block rounding and
# cuDNN workspaces (docs/memory.md, "Calibration")
CUDA_MARGIN = 0.01


@dataclasses.dataclass
class _Storage:
    serial: int
    nbytes: int
    module: str
    phase: str


class StorageAccount(TorchDispatchMode):
    """Bytes of every live storage created by an op, their running total and its peak.

    At each new peak the live set is kept (serials), so that the peak can be broken down by
    category and module once the step is over."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, _Storage] = {}
        self.current = 0
        self.peak = 0
        self.peak_live: dict[int, _Storage] = {}
        self.peak_phase = ""
        self.module_stack: list[str] = []
        self.phase = "setup"
        self.saved: set[int] = set()  # serials of storages some autograd node keeps for its backward
        self._serial = 0
        self._dirty = False

    # -- storages ------------------------------------------------------------------------------
    def _key(self, t: torch.Tensor) -> int | None:
        try:
            return t.untyped_storage()._cdata
        except (NotImplementedError, RuntimeError):
            return None

    def track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self.live:
            return
        self._serial += 1
        record = _Storage(self._serial, storage.nbytes(), self.module_stack[-1] if self.module_stack else "", self.phase)
        self.live[key] = record
        self.current += record.nbytes
        weakref.finalize(storage, self._free, key, record.serial)
        if self.current > self.peak:
            self.peak, self._dirty = self.current, True

    def _free(self, key: int, serial: int) -> None:
        record = self.live.get(key)
        if record is not None and record.serial == serial:
            if self._dirty:  # the total is about to fall: keep the set that made the peak
                self.peak_live, self.peak_phase, self._dirty = dict(self.live), self.phase, False
            del self.live[key]
            self.current -= record.nbytes

    def serial_of(self, t: torch.Tensor) -> int | None:
        key = self._key(t)
        record = self.live.get(key) if key is not None else None
        return None if record is None else record.serial

    def start(self) -> None:
        """Measure from here: the peak restarts at what is alive now (the weights, the batch)."""
        self.peak, self._dirty = self.current, True

    def finish(self) -> None:
        if self._dirty:
            self.peak_live, self.peak_phase, self._dirty = dict(self.live), self.phase, False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.track(t)
        return out

    # -- attribution ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def modules(self, named: dict[str, nn.Module]):
        """Attribute what each module's forward creates to its qualified name."""
        names = {id(m): f"{prefix}.{name}" if name else prefix for prefix, root in named.items() for name, m in root.named_modules()}

        def pre(module, _inputs):
            name = names.get(id(module))
            if name is not None:
                self.module_stack.append(name)

        def post(module, _inputs, _output):
            if id(module) in names and self.module_stack:
                self.module_stack.pop()

        handles = [nn.modules.module.register_module_forward_pre_hook(pre), nn.modules.module.register_module_forward_hook(post)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    @contextlib.contextmanager
    def saved_tensors(self):
        """Record which storages autograd keeps for a backward."""

        def pack(t):
            serial = self.serial_of(t)
            if serial is not None:
                self.saved.add(serial)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield

    @contextlib.contextmanager
    def during(self, phase: str):
        previous, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = previous


def serials(account: StorageAccount, tensors) -> set[int]:
    """The account's serial numbers of the storages of ``tensors`` (None entries skipped)."""
    out = set()
    for t in tensors:
        if isinstance(t, torch.Tensor):
            serial = account.serial_of(t)
            if serial is not None:
                out.add(serial)
    return out
