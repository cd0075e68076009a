"""Performance policy: intra-op threads, bf16 capability and autocast, channels-last for convolutions.

Why a module of its own: these are decisions about the machine, not about the experiment, and they are
easy to get wrong in ways that cost 2x without changing a single number (see docs/speed.md for the
measurements behind each default).

- **Threads.** Small SGD steps are dominated by per-operation overhead; two 1-thread processes side by side
  match or beat one 2-thread process, and multi-threaded OpenMP collapses when another job takes a core.
  :func:`configure_threads` gives each of ``workers`` concurrent trainings ``cores // workers`` intra-op
  threads (at least 1); :func:`worker_initializer` is the same for process-pool / Dask workers, and
  :func:`thread_env` the environment variables for subprocesses.
- **bf16.** Opt-in. :func:`bf16_support` says whether the device runs bf16 natively (CPU: AVX512-BF16 or
  AMX; CUDA: ``torch.cuda.is_bf16_supported``); :func:`check_precision` raises a :class:`ConfigError`
  naming the CPU's capability where it does not, because emulated bf16 is slower than fp32
  (``NINR_ALLOW_EMULATED_BF16=1`` runs it anyway, for tests and accuracy comparisons).
  :func:`autocast` is the context the fit loops wrap around forward and loss.
- **Channels-last.** :func:`use_channels_last` is the policy for convolutions (on for CPU and CUDA).
- **Stacking convolutions.** :func:`stack_convolutions` says whether runs of a convolutional model should
  share a stack (``ninr.train.stacking``): not on CPU, where one by one (channels-last) is faster.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from functools import lru_cache

import torch

from ninr.errors import ConfigError, check_choice, check_positive_int

PRECISIONS = ("fp32", "bf16", "auto")
"""Training precisions: ``fp32`` (default, the reference for every published number), ``bf16`` autocast, or
``auto``: bf16 where the device computes it natively, fp32 elsewhere (:func:`resolve_precision`)."""

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Variables a child process's math libraries read at start-up."""

EMULATED_BF16_ENV = "NINR_ALLOW_EMULATED_BF16"
"""Set to ``1`` to allow bf16 on a device without native support (slow; for tests and accuracy checks)."""

_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
"""``/proc/cpuinfo`` flags meaning native bf16 arithmetic (x86 AMX, x86 AVX512-BF16, aarch64 BF16)."""


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def idle_cores() -> int:
    """Cores not already busy, judged by the 1-minute load average (at least 1).

    On a shared machine multi-threaded OpenMP collapses when another job takes a core (a tiny
    training step measured 25x slower with 2 threads than with 1 at load 10 on 2 cores), so a
    trainer should not count on cores that others are using.
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return available_cores()
    return max(1, min(available_cores(), available_cores() - round(load)))


def threads_per_worker(workers: int = 1, cores: int | None = None) -> int:
    """Intra-op threads for each of ``workers`` concurrent trainings on ``cores`` cores (at least 1).

    Example:
        >>> threads_per_worker(2, cores=8), threads_per_worker(16, cores=8)
        (4, 1)
    """
    check_positive_int("workers", workers)
    total = available_cores() if cores is None else check_positive_int("cores", cores)
    return max(1, total // workers)


def configure_threads(workers: int = 1, cores: int | None = None, *, load_aware: bool = False) -> int:
    """Set this process's intra-op threads for ``workers`` concurrent trainings; returns the count set.

    ``cores`` defaults to the cores this process may use, or with ``load_aware`` to :func:`idle_cores`
    (for a shared machine).

    Call it once at an entry point (CLI, benchmark, pool worker). Inter-op threads are set to 1 when
    torch still allows it (it refuses after the first parallel op): a training step has no
    independent ops worth running side by side, and idle inter-op threads only add contention.
    """
    if cores is None and load_aware:
        cores = idle_cores()
    threads = threads_per_worker(workers, cores)
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    return threads


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that pin a child process's math libraries to ``threads`` threads."""
    check_positive_int("threads", threads)
    return dict.fromkeys(THREAD_ENV_VARS, str(threads))


def worker_initializer(threads: int = 1) -> None:
    """Initializer for ``ProcessPoolExecutor(initializer=...)`` / Dask worker setup: pin threads.

    Sets the environment (for anything the worker spawns) and torch's own thread count.
    """
    os.environ.update(thread_env(threads))
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


@lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


MACHINE_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
"""The CPU flags a measurement depends on (vector width, native bf16), the ones :func:`machine` names."""


@lru_cache(maxsize=1)
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine(device: str | torch.device = "cpu") -> str:
    """The machine a run or a timing came from, in one line: the CPU model, its usable cores, torch's vector
    instruction set and the flags of :data:`MACHINE_FLAGS` it has, e.g. ``"AMD EPYC 9B14, 2 cores, AVX512 (avx2
    avx512f avx512_vnni avx512_bf16)"``; on a CUDA device also the GPU's name."""
    flags = [f for f in MACHINE_FLAGS if f in _cpu_flags()]
    text = f"{_cpu_model()}, {available_cores()} cores, {cpu_capability()}" + (f" ({' '.join(flags)})" if flags else "")
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        text += f"; GPU {torch.cuda.get_device_name(torch.device(device))}"
    return text


def cpu_capability() -> str:
    """torch's name for the CPU's vector instruction set (``"AVX2"``, ``"AVX512"``, ...)."""
    return str(torch.backends.cpu.get_cpu_capability())


def bf16_support(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes in bf16 natively (emulated bf16 is slower than fp32, so it does not count)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type == "cpu":
        flags = _cpu_flags()
        if flags:
            return any(f in flags for f in _CPU_BF16_FLAGS)
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """The precision a run computes in: ``precision`` itself, or for ``"auto"`` ``"bf16"`` where ``device``
    has native bf16 (:func:`bf16_support`) and ``"fp32"`` elsewhere.

    Example:
        >>> resolve_precision("fp32")
        'fp32'
    """
    check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    return "bf16" if bf16_support(device) else "fp32"


def check_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """Validate ``precision`` for ``device`` and return what it resolves to (:func:`resolve_precision`);
    bf16 where the device lacks it is a :class:`ConfigError` (``"auto"`` never is: it falls back to fp32)."""
    precision = resolve_precision(precision, device)
    if precision == "bf16" and not bf16_support(device) and os.environ.get(EMULATED_BF16_ENV) != "1":
        dev = torch.device(device)
        what = f"this CPU ({cpu_capability()}) has neither AVX512-BF16 nor AMX" if dev.type == "cpu" else ""
        what = what or f"device {str(device)!r} does not support bf16"
        raise ConfigError(
            f"`precision` 'bf16' needs a device with native bf16 arithmetic, but {what}; "
            f"emulated bf16 would be slower than fp32: use precision 'fp32' (the default), or set "
            f"{EMULATED_BF16_ENV}=1 to run it emulated anyway"
        )
    return precision


def autocast(precision: str, device: str | torch.device = "cpu") -> contextlib.AbstractContextManager[None]:
    """The context for forward and loss: bf16 autocast for ``"bf16"``, nothing for ``"fp32"``.

    Parameters, gradients and optimizer updates stay fp32 (autocast casts only the inputs of
    matrix products and convolutions), so bf16 runs keep fp32 master weights.
    """
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def use_channels_last(device: str | torch.device = "cpu", model: torch.nn.Module | None = None) -> bool:
    """Whether convolutions should run channels-last on ``device`` (measured faster on CPU; see docs/speed.md).

    Given ``model``: not on the CPU when it has a strided 1x1 convolution (ResNet shortcuts). oneDNN's nhwc
    path for those ("reduce to unit stride") writes past its workspace when a group has fewer input
    channels than its block (uxlfoundation/oneDNN#6035). Reproduced with torch 2.13 on an AVX2 CPU:
    ``Conv2d(4, 8, 1, stride=2)`` channels-last crashed the process on one thread and, on two, returned a
    weight gradient 52% off, silently. Contiguous convolutions are not affected.
    """
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        return False
    if kind == "cpu" and model is not None:
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1):
                return False
    return True


def stack_convolutions(device: str | torch.device = "cpu") -> bool:
    """Whether runs of a model with convolutions should be trained as one stack on ``device``.

    Not on CPU: a grouped convolution is no faster than K plain ones there and the stack's activations fall
    out of cache, so 4 quick-preset CNN runs took 35 s stacked against 22 s one by one channels-last (1 thread;
    docs/speed.md). On CUDA, yes: there a small convolution's time is launch overhead, which a stack shares
    (not measured).
    """
    return torch.device(device).type == "cuda"


def channels_last(x: torch.Tensor, enabled: bool = True) -> torch.Tensor:
    """``x`` in channels-last memory format when ``enabled`` and 4-d (a no-op if it already is)."""
    if enabled and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


@contextlib.contextmanager
def num_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads, then restore the previous count."""
    saved = torch.get_num_threads()
    torch.set_num_threads(check_positive_int("threads", threads))
    try:
        yield
    finally:
        torch.set_num_threads(saved)
