"""Overhead measurements: parameters, FLOPs, step time, peak memory, tensor memory of one step.

A timing ratio is the median of per-round ratios with their interquartile range (``ratio_spread``): two
configurations timed in the same interleaved rounds see the same machine load.

FLOP convention: ``torch.utils.flop_counter.FlopCounterMode`` counts FLOPs = 2 x multiply-adds of
convolutions and matrix products (forward pass only; normalisation, activations, pooling and
interpolation are not counted). ``count_flops`` returns both keys, "flops" and "macs" (= flops / 2),
so a table can state which one it shows.
"""

import resource
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements (shared parameters counted once, frozen ones included)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Forward-pass cost of ``model`` on a zero tensor of ``input_shape`` (e.g. (1, 3, 512, 512)).

    Runs in eval mode under no_grad (the mode is restored), on the model's device.
    Returns {"flops": FLOPs (2 x multiply-adds), "macs": multiply-adds}.
    """
    param = next(model.parameters())
    images = torch.zeros(input_shape, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(images)
    finally:
        model.train(was_training)
    flops = int(counter.get_total_flops())
    return {"flops": flops, "macs": flops // 2}


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step: Callable[[], object], device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    step()
    _synchronize(device)
    return time.perf_counter() - start


def interleaved_step_times(
    steps: dict[str, Callable[[], object]], warmup: int = 2, repeats: int = 10, device="cpu"
) -> dict[str, list[float]]:
    """Seconds per call of each step, measured round-robin (A, B, A, B, ...) after ``warmup`` rounds.

    Interleaving exposes every configuration to the same drift in machine load, so ratios of the
    medians are fair on a shared machine. Returns {name: ``repeats`` timings}.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats!r}, warmup={warmup!r}")
    times = {name: [] for name in steps}
    for round_ in range(warmup + repeats):
        for name, step in steps.items():
            elapsed = _timed(step, device)
            if round_ >= warmup:
                times[name].append(elapsed)
    return times


def ratio_spread(numerators, denominators) -> dict:
    """Ratios of paired measurements, e.g. two configurations timed in the same interleaved round:
    {"median", "q1", "q3", "n"} of ``numerators[i] / denominators[i]`` (quartiles by linear interpolation
    between the ratios, the inclusive method; q1 = q3 = median for one round)."""
    ratios = sorted(a / b for a, b in zip(numerators, denominators, strict=True))
    if not ratios:
        raise ValueError("ratio_spread needs at least one pair")
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    return {"median": median, "q1": q1, "q3": q3, "n": len(ratios)}


def peak_memory_so_far(device="cpu") -> dict[str, object]:
    """Peak memory in bytes since the last reset (CUDA) or since the process started (CPU).

    CUDA: ``torch.cuda.max_memory_allocated`` ({"kind": "cuda_max_allocated"}). CPU: the process's peak
    resident set size from ``resource.getrusage`` (``ru_maxrss``, KiB on Linux, bytes on macOS), which
    covers the whole process lifetime and never resets: compare configurations in separate processes
    ({"kind": "cpu_peak_rss"}).
    """
    if torch.device(device).type == "cuda":
        return {"peak_bytes": int(torch.cuda.max_memory_allocated(device)), "kind": "cuda_max_allocated"}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_bytes": int(rss if sys.platform == "darwin" else rss * 1024), "kind": "cpu_peak_rss"}


def peak_memory_mib(device: torch.device, earlier_bytes: int = 0) -> dict:
    """Peak memory of the training so far in MiB (CUDA peak allocated, or the process's peak RSS on CPU),
    at least ``earlier_bytes`` (the peak of the processes a resumed run ran in before)."""
    peak = peak_memory_so_far(device)
    return {"peak_memory_mib": max(peak["peak_bytes"], earlier_bytes) / 2**20, "memory_kind": peak["kind"]}


def step_tensor_memory(step: Callable[[], object], device="cpu") -> dict[str, object]:
    """Run ``step`` once; the peak bytes of the tensors it allocates and holds at once.

    What one training step needs on top of the weights, optimizer state and batch that exist before it
    (activations, gradients, temporaries): what the method shapes, whatever else the process holds. CUDA: the
    caching allocator's ``max_memory_allocated`` after a reset, minus ``memory_allocated`` before ({"kind":
    "cuda_step_allocated"}). CPU: the allocation and free events the PyTorch profiler (``profile_memory``)
    records for the tensors the step allocates, summed in time order ({"kind": "cpu_step_allocated"}; frees of
    older tensors, e.g. last step's gradients, are not credited, so this can exceed the CUDA figure by up to the
    gradients' size). The profiler slows the step: time steps apart. Returns {"peak_bytes", "kind"}.
    """
    if torch.device(device).type == "cuda":
        _synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        _synchronize(device)
        return {"peak_bytes": int(torch.cuda.max_memory_allocated(device) - before), "kind": "cuda_step_allocated"}
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    events = [e for e in profiler.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return {"peak_bytes": int(peak), "kind": "cpu_step_allocated"}
