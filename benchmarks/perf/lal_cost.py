"""Cost of the Locally Adaptive Loss against plain cross-entropy, forward + backward.

    python benchmarks/perf/lal_cost.py --threads 1          # 4 x 21 x 256 x 256 logits, w = 5, k = 3
    python benchmarks/perf/lal_cost.py --device cuda        # also: --rounds 30, --labels voc, --clock cpu, --naive
    python benchmarks/perf/lal_cost.py --allocator system   # only glibc's default allocator behaviour (faster)

Losses on the same random logits (requires_grad) and labels: ``ce`` (torch cross-entropy,
ignore 255), ``lal`` (srlib's LAL: convolution plus a sparse correction at label boundaries) and,
with ``--naive``, ``lal-naive`` (unfold every w x w window, the textbook version, for contrast;
``--naive-size`` shrinks its images, it needs ~w^2 times the memory). The cost of ``lal`` grows
with the share of pixels near a label boundary, so it runs on two label kinds: ``voc``: VOC-like
masks (background, one to three ellipses of random classes, a 3 px void band around each object,
as VOC draws it); ``random``: i.i.d. random labels with 5 % void, where every pixel is a boundary
pixel (the worst case). Each loss runs on both logit layouts: ``channels-first`` (plain
contiguous NCHW, what GPUs and most models produce) and ``channels-last`` (what srlib's segmentor
returns on CPU).

Reference: cross-entropy at its fastest layout (lowest median time) for that label kind and
allocator; time ratios are to it, memory ratios to the reference of the first time column.

Time: ``--rounds`` rounds after two warm-up calls of each; in every round each (loss, layout)
runs one ``loss(logits, target).backward()``, in turn, so machine load hits them alike. Each
ratio is computed per round (loss time / reference time of the same round) and reported as its
median and interquartile range over the rounds: a ratio whose range straddles a threshold is not
distinguishable from it on that machine. On the CPU the rounds run twice (``--allocator both``, the
default): ``system``, in this process with glibc's defaults, which hand a freed block of this size back
to the kernel (unmapped, or trimmed off the heap) often enough that a later call page-faults fresh
zeroed pages in, a cost that lands on whichever loss allocates next, in bursts (a loss's time is
bimodal across rounds); and ``retain``, in a child process where glibc keeps freed memory for reuse
(``MALLOC_MMAP_THRESHOLD_`` at its 32 MiB ceiling, ``MALLOC_TRIM_THRESHOLD_`` out of reach), so every
round after the warm-up times the kernels alone, as with an allocator that reuses its memory (PyTorch's
CUDA caching allocator always does). Maps over 32 MiB still page-fault under ``retain``.
``--clock wall`` (default) times wall-clock seconds;
``--clock cpu`` times the calling thread's CPU seconds, which a descheduled thread does not
accrue (use it on a shared machine, with ``--threads 1``: with more threads than free cores
every parallel op waits for a descheduled thread, which punishes a loss made of many small ops
far more than a two-kernel one).

Peak memory: bytes above what was live before the call (logits and labels), reached during the
call; the logits' gradient counts. CUDA: ``torch.cuda.max_memory_allocated`` (tensors only),
per round. CPU: peak resident set size, measured in one fresh child process per (loss, layout)
after one warm-up call, then per round: the child resets the kernel's high-water mark
(``/proc/self/clear_refs``), runs one call and reports VmHWM - VmRSS(before). glibc is told to
serve every allocation of 64 KiB or more by mmap (``MALLOC_MMAP_THRESHOLD_``), so a freed tensor
leaves the resident set at once and the figure tracks live tensors rather than allocator caching;
library buffers from the warm-up are in the baseline. Linux only. Memory ratios pair rounds by
index, as time ratios do.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from srlib.losses.locally_adaptive import locally_adaptive_loss, window_weights
from srlib.cost import ratio_spread

LAYOUTS = {"channels-first": torch.contiguous_format, "channels-last": torch.channels_last}


def naive_lal(logits, target, window, k, ignore_index=255, eps=1e-5):
    """LAL by unfolding the normalised map into every window: w^2 copies of B x C x H x W."""
    batch, channels, height, width = logits.shape
    r = window // 2
    var, mean = torch.var_mean(logits, 1, correction=0, keepdim=True)
    normed = (logits - mean) / torch.sqrt(var + eps)
    windows = F.unfold(normed, window, padding=r).view(batch, channels, window * window, height * width)
    labels = torch.where(target == ignore_index, -2, target).to(logits.dtype)[:, None]
    neighbours = F.unfold(F.pad(labels, (r, r, r, r), value=-3), window).view(batch, window * window, -1)
    valid = (target != ignore_index).view(batch, 1, -1)
    same = (neighbours == target.view(batch, 1, -1)) & valid
    weights = window_weights(window).to(logits).view(1, -1, 1)
    pooled = (windows * (same * weights)[:, None]).sum(2) / same.sum(1, keepdim=True).clamp_min(1)
    losses = F.cross_entropy(
        pooled.view(batch, channels, height, width), torch.where(valid.view_as(target), target, 0), reduction="none"
    )
    return losses[valid.view_as(target)].pow(k).mean().pow(1.0 / k)


def make_inputs(args, device, size, labels, layout):
    """Random logits (requires_grad, in ``layout``) and labels of kind ``labels``, seeded."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(args.batch, args.classes, size, size, generator=generator)
    logits = logits.to(device).contiguous(memory_format=LAYOUTS[layout]).requires_grad_()
    if labels == "random":
        target = torch.randint(0, args.classes, (args.batch, size, size), generator=generator)
        target[torch.rand(target.shape, generator=generator) < 0.05] = 255
    else:
        target = voc_like_masks(args.batch, size, args.classes, generator)
    return logits, target.to(device)


def voc_like_masks(batch, size, classes, generator):
    """Background plus 1-3 filled ellipses of random classes, with a 3 px void band on every edge."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.zeros(batch, size, size, dtype=torch.long)
    for mask in masks:
        for _ in range(int(torch.randint(1, 4, (), generator=generator))):
            cy, cx = (torch.rand(2, generator=generator) * size).tolist()
            ry, rx = (size * (0.08 + 0.25 * torch.rand(2, generator=generator))).tolist()
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            mask[inside] = int(torch.randint(1, classes, (), generator=generator))
    labels = masks[:, None].float()
    edge = F.max_pool2d(labels, 3, 1, 1) != -F.max_pool2d(-labels, 3, 1, 1)
    return masks.masked_fill(edge[:, 0], 255)


def boundary_share(target, window):
    """Share of valid pixels with a differently labelled pixel (void included) in their window."""
    labels = target[:, None].float()
    r = window // 2
    low = -F.max_pool2d(-F.pad(labels, (r, r, r, r), value=float(1 << 20)), window, 1)
    high = F.max_pool2d(F.pad(labels, (r, r, r, r), value=-1.0), window, 1)
    valid = target[:, None] != 255
    return float((((low != labels) | (high != labels)) & valid).sum() / valid.sum())


def loss_fn(name, args):
    if name == "ce":
        return lambda logits, target: F.cross_entropy(logits, target, ignore_index=255)
    if name == "lal":
        return lambda logits, target: locally_adaptive_loss(logits, target, args.window, args.k)
    return lambda logits, target: naive_lal(logits, target, args.window, args.k)


def step(fn, logits, target):
    logits.grad = None
    fn(logits, target).backward()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# glibc keeps what is freed for reuse: allocations up to 32 MiB (its ceiling) come from the heap, never trimmed.
RETAIN_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


def round_times(runs, args, device, size, labels):
    """{(loss, layout): [seconds per round]}, the runs interleaved within every round."""
    inputs = {layout: make_inputs(args, device, size, labels, layout) for _, layout in runs}
    fns = {run: loss_fn(run[0], args) for run in runs}
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    for _ in range(2):
        for run, fn in fns.items():
            step(fn, *inputs[run[1]])
    times = {run: [] for run in runs}
    for _ in range(args.rounds):
        for run, fn in fns.items():
            sync(device)
            start = clock()
            step(fn, *inputs[run[1]])
            sync(device)
            times[run].append(clock() - start)
    return times


def _status_kb(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def child_peak_rss(name, args, size, labels, layout):
    """In a fresh process: per round, resident bytes above the pre-call level at the peak of one call."""
    logits, target = make_inputs(args, torch.device("cpu"), size, labels, layout)
    fn = loss_fn(name, args)
    step(fn, logits, target)
    peaks = []
    for _ in range(args.rounds):
        logits.grad = None
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current resident set
        before = _status_kb("VmRSS")
        step(fn, logits, target)
        peaks.append((_status_kb("VmHWM") - before) * 1024)
    return peaks


def run_child(args, size, labels, env, *flags):
    """The JSON this script prints when run as a child with ``flags`` and this run's settings, under ``env``."""
    command = [sys.executable, __file__, *flags, "--size", str(size), "--labels", labels, "--batch", str(args.batch),
               "--classes", str(args.classes), "--window", str(args.window), "--k", str(args.k),
               "--rounds", str(args.rounds), "--clock", args.clock, "--threads", str(args.threads)]
    result = subprocess.run(command, env=dict(os.environ, **env), capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def retained_times(runs, args, size, labels):
    """round_times on the CPU in a child process whose allocator retains freed memory (RETAIN_ENV)."""
    names = ",".join(f"{name}:{layout}" for name, layout in runs)
    times = run_child(args, size, labels, RETAIN_ENV, "--child-times", names)["seconds"]
    return {tuple(run.split(":")): seconds for run, seconds in times.items()}


def cpu_peaks(runs, args, size, labels):
    """{(loss, layout): [peak bytes per round]}, one child process per run."""
    env = {"MALLOC_MMAP_THRESHOLD_": "65536"}
    return {(name, layout): run_child(args, size, labels, env, "--child-rss", name, "--layout", layout)["peak_bytes"]
            for name, layout in runs}


def cuda_peaks(runs, args, device, size, labels):
    """{(loss, layout): [peak bytes per round]} from the CUDA allocator's statistics."""
    peaks = {}
    for name, layout in runs:
        logits, target = make_inputs(args, device, size, labels, layout)
        fn = loss_fn(name, args)
        step(fn, logits, target)
        peaks[name, layout] = []
        for _ in range(args.rounds):
            logits.grad = None
            sync(device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            step(fn, logits, target)
            sync(device)
            peaks[name, layout].append(torch.cuda.max_memory_allocated(device) - before)
    return peaks


def report(device, args, size, labels, names):
    """Measure every (loss, layout) of one label kind and print the table."""
    runs = [(name, layout) for name in names for layout in args.layouts]
    allocators = ("system", "retain") if args.allocator == "both" else (args.allocator,)
    if device.type == "cuda":
        allocators = ("cuda",)
    times = {allocator: retained_times(runs, args, size, labels) if allocator == "retain"
             else round_times(runs, args, device, size, labels) for allocator in allocators}
    peaks = (cpu_peaks(runs, args, size, labels) if device.type == "cpu"
             else cuda_peaks(runs, args, device, size, labels))
    references = {allocator: min((run for run in runs if run[0] == "ce"),
                                 key=lambda run: statistics.median(runs_times[run]))
                  for allocator, runs_times in times.items()}
    memory_reference = references[allocators[0]]
    boundary = boundary_share(make_inputs(args, torch.device("cpu"), size, labels, "channels-first")[1], args.window)
    print(f"\n{device.type}: logits {args.batch} x {args.classes} x {size} x {size}, {labels} labels "
          f"({boundary:.1%} of valid pixels near a label boundary), w = {args.window}, k = {args.k}, "
          f"forward + backward, threads = {torch.get_num_threads()}, {args.rounds} interleaved rounds, "
          f"{args.clock} clock; ratios (median [interquartile range] of per-round ratios) to ce at its fastest layout "
          f"under the same allocator; memory to ce {memory_reference[1]}")
    header = "".join(f" {allocator + ' ms':>11} {'time / ref':>20}" for allocator in allocators)
    print(f"{'loss':<10} {'layout':<15}{header} {'peak MiB':>9} {'mem / ref':>20}")
    for run in runs:
        columns = "".join(
            f" {statistics.median(times[allocator][run]) * 1e3:>11.2f} "
            f"{_ratio_text(ratio_spread(times[allocator][run], times[allocator][references[allocator]])):>20}"
            for allocator in allocators)
        mem_ratio = ratio_spread(peaks[run], peaks[memory_reference])
        print(f"{run[0]:<10} {run[1]:<15}{columns} {statistics.median(peaks[run]) / 2**20:>9.1f} "
              f"{_ratio_text(mem_ratio):>20}")


def _ratio_text(ratio):
    return f"{ratio['median']:.2f} [{ratio['q1']:.2f}-{ratio['q3']:.2f}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CPU, then CUDA when available")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--k", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall-clock time, or the calling thread's CPU time (for shared machines)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--labels", choices=("voc", "random", "both"), default="both")
    parser.add_argument("--layout", choices=(*LAYOUTS, "both"), default="both")
    parser.add_argument("--allocator", choices=("system", "retain", "both"), default="both",
                        help="CPU timing with glibc's default allocator behaviour, with freed memory retained, or both")
    parser.add_argument("--naive", action="store_true", help="also time lal-naive, on voc labels at --naive-size")
    parser.add_argument("--naive-size", type=int, default=0, help="image size for lal-naive (0: same as --size)")
    parser.add_argument("--child-rss", help=argparse.SUPPRESS)
    parser.add_argument("--child-times", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.layouts = tuple(LAYOUTS) if args.layout == "both" else (args.layout,)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_rss:
        peaks = child_peak_rss(args.child_rss, args, args.size, args.labels, args.layout)
        print(json.dumps({"peak_bytes": peaks}))
        return
    if args.child_times:
        runs = [tuple(run.split(":")) for run in args.child_times.split(",")]
        times = round_times(runs, args, torch.device("cpu"), args.size, args.labels)
        print(json.dumps({"seconds": {":".join(run): seconds for run, seconds in times.items()}}))
        return
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])}
    kinds = ("voc", "random") if args.labels == "both" else (args.labels,)
    for device in map(torch.device, devices[args.device]):
        for labels in kinds:
            report(device, args, args.size, labels, ("ce", "lal"))
        if args.naive:
            report(device, args, args.naive_size or args.size, "voc", ("ce", "lal", "lal-naive"))


if __name__ == "__main__":
    main()
