"""Cost of the Locally Adaptive Loss against plain cross-entropy, forward + backward.

    python benchmarks/lal_cost.py --threads 1          # 4 x 21 x 256 x 256 logits, w = 5, k = 3
    python benchmarks/lal_cost.py --device cuda        # also: --repeats 30, --naive-size 128, --labels voc

Three losses on the same random logits (requires_grad) and labels: ``ce`` (torch cross-entropy,
ignore 255), ``lal`` (srlib's LAL: convolution plus a sparse correction at label boundaries) and
``lal-naive`` (unfold every w x w window, the textbook version, for contrast; run on the first
case only). The cost of ``lal`` grows with the share of pixels near a label boundary, so it runs
on two label kinds: ``voc``: VOC-like masks (background, one to three ellipses of random
classes, a 3 px void band around each object, as VOC draws it); ``random``: i.i.d. random
labels with 5 % void, where every pixel is a boundary pixel (the worst case). And on two logit
layouts: ``channels-last`` (what srlib's segmentor returns on CPU, so what the training loop's
losses see there) and ``channels-first`` (plain contiguous NCHW; LAL then pays a transposition
each way).

Time: median wall time of one ``loss(logits, target).backward()`` over ``--repeats`` rounds,
the losses interleaved within each round (so machine load hits them alike), after two warm-up
calls each; the ratio is median(loss) / median(ce). On a shared machine use ``--threads 1``:
with more threads than free cores every parallel op waits for a descheduled thread, which
punishes a loss made of many small ops (LAL) far more than a two-kernel one (CE).

Peak memory: bytes above what was live before the call (logits and labels), reached during the
call; the logits' gradient counts. CUDA: ``torch.cuda.max_memory_allocated`` (tensors only).
CPU: peak resident set size of a fresh child process per loss, after one warm-up call: the
child resets the kernel's high-water mark (``/proc/self/clear_refs``), runs one call and reports
VmHWM - VmRSS(before). glibc is told to serve every allocation of 64 KiB or more by mmap
(``MALLOC_MMAP_THRESHOLD_``), so a freed tensor leaves the resident set at once and the figure
tracks live tensors rather than allocator caching; library buffers from the warm-up are in the
baseline. Linux only.
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

LOSSES = ("ce", "lal", "lal-naive")
LAYOUTS = {"channels-last": torch.channels_last, "channels-first": torch.contiguous_format}


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


def make_inputs(args, device, case):
    size, labels, layout = case
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


def median_times(names, args, device, case):
    logits, target = make_inputs(args, device, case)
    fns = {name: loss_fn(name, args) for name in names}
    for _ in range(2):
        for fn in fns.values():
            step(fn, logits, target)
    times = {name: [] for name in names}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            step(fn, logits, target)
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _status_kb(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def child_peak_rss(name, args, case):
    """In a fresh process: resident bytes above the pre-call level at the peak of one call."""
    logits, target = make_inputs(args, torch.device("cpu"), case)
    fn = loss_fn(name, args)
    step(fn, logits, target)
    logits.grad = None
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident set
    before = _status_kb("VmRSS")
    step(fn, logits, target)
    return (_status_kb("VmHWM") - before) * 1024


def cpu_peaks(names, args, case):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    size, labels, layout = case
    flags = ["--size", str(size), "--labels", labels, "--layout", layout, "--batch", str(args.batch),
             "--classes", str(args.classes), "--window", str(args.window), "--k", str(args.k)]
    flags += ["--threads", str(args.threads)] if args.threads else []
    peaks = {}
    for name in names:
        command = [sys.executable, __file__, "--child-rss", name] + flags
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        peaks[name] = json.loads(result.stdout)["peak_bytes"]
    return peaks


def cuda_peaks(names, args, device, case):
    logits, target = make_inputs(args, device, case)
    peaks = {}
    for name in names:
        fn = loss_fn(name, args)
        step(fn, logits, target)
        logits.grad = None
        sync(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step(fn, logits, target)
        sync(device)
        peaks[name] = torch.cuda.max_memory_allocated(device) - before
    return peaks


def report(device, args, case, names):
    times = median_times(names, args, device, case)
    peaks = cpu_peaks(names, args, case) if device.type == "cpu" else cuda_peaks(names, args, device, case)
    size, labels, layout = case
    boundary = boundary_share(make_inputs(args, torch.device("cpu"), case)[1], args.window)
    print(f"\n{device.type}: logits {args.batch} x {args.classes} x {size} x {size} {layout}, {labels} labels "
          f"({boundary:.1%} of valid pixels near a label boundary), w = {args.window}, k = {args.k}, "
          f"forward + backward, threads = {torch.get_num_threads()}, repeats = {args.repeats}")
    print(f"{'loss':<10} {'median ms':>10} {'time / ce':>10} {'peak MiB':>10} {'mem / ce':>10}")
    for name in names:
        print(f"{name:<10} {times[name] * 1e3:>10.2f} {times[name] / times['ce']:>10.2f} "
              f"{peaks[name] / 2**20:>10.1f} {peaks[name] / peaks['ce']:>10.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CPU, then CUDA when available")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--k", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--labels", choices=("voc", "random", "both"), default="both")
    parser.add_argument("--layout", choices=(*LAYOUTS, "both"), default="both")
    parser.add_argument("--naive-size", type=int, default=0,
                        help="image size for lal-naive (0: same as --size; it needs ~w^2 times the memory)")
    parser.add_argument("--child-rss", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_rss:
        case = (args.size, args.labels, args.layout)
        print(json.dumps({"peak_bytes": child_peak_rss(args.child_rss, args, case)}))
        return
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])}
    layouts = tuple(LAYOUTS) if args.layout == "both" else (args.layout,)
    kinds = ("voc", "random") if args.labels == "both" else (args.labels,)
    cases = [(args.size, labels, layout) for layout in layouts for labels in kinds]
    naive_size = args.naive_size or args.size
    for device in map(torch.device, devices[args.device]):
        for case in cases:
            report(device, args, case, LOSSES if case == cases[0] and naive_size == args.size else LOSSES[:2])
        if naive_size != args.size:
            report(device, args, (naive_size,) + cases[0][1:], LOSSES)


if __name__ == "__main__":
    main()
