"""Cost of the Locally Adaptive Loss against plain cross-entropy, forward + backward.

    python benchmarks/lal_cost.py --threads 1          # 4 x 21 x 256 x 256 logits, w = 5, k = 3
    python benchmarks/lal_cost.py --device cuda        # also: --rounds 30, --labels voc, --clock cpu, --naive

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

Reference: cross-entropy at its fastest layout (lowest median time) for that label kind; every
ratio is to it, time and memory alike.

Time: ``--rounds`` rounds after two warm-up calls of each; in every round each (loss, layout)
runs one ``loss(logits, target).backward()``, in turn, so machine load hits them alike. Each
ratio is computed per round (loss time / reference time of the same round) and reported as its
median and interquartile range over the rounds: a ratio whose range straddles a threshold is not
distinguishable from it on that machine. ``--clock wall`` (default) times wall-clock seconds;
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
from srlib.stats import ratio_spread

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


def cpu_peaks(runs, args, size, labels):
    """{(loss, layout): [peak bytes per round]}, one child process per run."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    flags = ["--size", str(size), "--labels", labels, "--batch", str(args.batch), "--classes", str(args.classes),
             "--window", str(args.window), "--k", str(args.k), "--rounds", str(args.rounds)]
    flags += ["--threads", str(args.threads)] if args.threads else []
    peaks = {}
    for name, layout in runs:
        command = [sys.executable, __file__, "--child-rss", name, "--layout", layout] + flags
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        peaks[name, layout] = json.loads(result.stdout)["peak_bytes"]
    return peaks


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
    times = round_times(runs, args, device, size, labels)
    peaks = cpu_peaks(runs, args, size, labels) if device.type == "cpu" else cuda_peaks(runs, args, device, size, labels)
    reference = min((run for run in runs if run[0] == "ce"), key=lambda run: statistics.median(times[run]))
    boundary = boundary_share(make_inputs(args, torch.device("cpu"), size, labels, "channels-first")[1], args.window)
    print(f"\n{device.type}: logits {args.batch} x {args.classes} x {size} x {size}, {labels} labels "
          f"({boundary:.1%} of valid pixels near a label boundary), w = {args.window}, k = {args.k}, "
          f"forward + backward, threads = {torch.get_num_threads()}, {args.rounds} interleaved rounds, "
          f"{args.clock} clock; ratios to ce {reference[1]} (median [interquartile range] of per-round ratios)")
    print(f"{'loss':<10} {'layout':<15} {'median ms':>10} {'time / ref':>20} {'peak MiB':>9} {'mem / ref':>20}")
    for run in runs:
        time_ratio = ratio_spread(times[run], times[reference])
        mem_ratio = ratio_spread(peaks[run], peaks[reference])
        print(f"{run[0]:<10} {run[1]:<15} {statistics.median(times[run]) * 1e3:>10.2f} "
              f"{_ratio_text(time_ratio):>20} {statistics.median(peaks[run]) / 2**20:>9.1f} {_ratio_text(mem_ratio):>20}")


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
    parser.add_argument("--naive", action="store_true", help="also time lal-naive, on voc labels at --naive-size")
    parser.add_argument("--naive-size", type=int, default=0, help="image size for lal-naive (0: same as --size)")
    parser.add_argument("--child-rss", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.layouts = tuple(LAYOUTS) if args.layout == "both" else (args.layout,)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_rss:
        peaks = child_peak_rss(args.child_rss, args, args.size, args.labels, args.layout)
        print(json.dumps({"peak_bytes": peaks}))
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
