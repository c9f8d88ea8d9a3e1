"""Cost of the DenseCRF loss (and its DFR variant) against cross-entropy, forward + backward.

    python benchmarks/perf/rloss_cost.py --threads 1              # the weak benchmark's setting (128 px, 8 x 8 logits)
    python benchmarks/perf/rloss_cost.py --setting voc --device cuda   # the published setting at 321 px

Each loss starts from the same head logits (B x C x h x w, requires_grad, at the network's output stride) as
training does: ``ce`` upsamples them bilinearly to the label size and takes cross-entropy (ignore 255);
``densecrf`` and ``dfr`` take them with the un-normalised image (and, for ``dfr``, detached head features
B x 320 x h x w, the width of the MobileNetV2 FCN head) and evaluate ``srlib.losses.dense_crf`` on its
downsampled grid with the setting's kernel. Settings: ``generated`` = benchmarks/weak.yaml (batch 8, 10
classes, 128 px, output stride 16, sigma_xy 20, scale 0.25, stride 2); ``voc`` = the published setting on
a VOC-sized crop (batch 4, 21 classes, 321 px, output stride 8, sigma_xy 80, scale 0.5, stride 4).

Time: ``--rounds`` rounds after two warm-up calls of each; in every round each loss runs once, in turn, so
machine load hits them alike; each ratio is per round (loss / ce of the same round), reported as median and
interquartile range. Peak memory: bytes above what was live before the call, reached during it (the
gradient counts): CUDA ``max_memory_allocated``; CPU the resident set's high-water mark in one fresh child
process per loss (as ``benchmarks/perf/lal_cost.py`` measures it, glibc told to mmap every block of 64 KiB or
more so freed tensors leave the resident set). Linux only on CPU.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lal_cost import _ratio_text, _status_kb, sync, voc_like_masks  # noqa: E402

from srlib.losses.dense_crf import densecrf_loss  # noqa: E402
from srlib.cost import ratio_spread  # noqa: E402

SETTINGS = {
    "generated": {"batch": 8, "classes": 10, "size": 128, "stride_out": 16,
                  "kernel": {"sigma_rgb": 15.0, "sigma_xy": 20.0, "scale": 0.25, "stride": 2}},
    "voc": {"batch": 4, "classes": 21, "size": 321, "stride_out": 8,
            "kernel": {"sigma_rgb": 15.0, "sigma_xy": 80.0, "scale": 0.5, "stride": 4}},
}
LOSSES = ("ce", "densecrf", "dfr")
FEATURE_WIDTH = 320


def make_inputs(setting: dict, device):
    """Head logits (requires_grad), labels, a smooth random 0..255 image and head features, seeded."""
    generator = torch.Generator().manual_seed(0)
    b, c, size = setting["batch"], setting["classes"], setting["size"]
    h = -(-size // setting["stride_out"])
    logits = torch.randn(b, c, h, h, generator=generator).to(device).requires_grad_()
    target = voc_like_masks(b, size, c, generator).to(device)
    rgb = F.interpolate(torch.rand(b, 3, size // 8, size // 8, generator=generator), size=(size, size),
                        mode="bilinear") * 255
    feats = torch.randn(b, FEATURE_WIDTH, h, h, generator=generator)
    return logits, target, rgb.to(device), feats.to(device)


def loss_fn(name: str, setting: dict):
    kernel = setting["kernel"]
    if name == "ce":
        def ce(logits, target, rgb, feats):
            up = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
            return F.cross_entropy(up, target, ignore_index=255)
        return ce
    use_feats = name == "dfr"
    return lambda logits, target, rgb, feats: densecrf_loss(logits, rgb, feats=feats if use_feats else None, **kernel)


def step(fn, inputs):
    inputs[0].grad = None
    fn(*inputs).backward()


def round_times(setting, args, device):
    inputs = make_inputs(setting, device)
    fns = {name: loss_fn(name, setting) for name in LOSSES}
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    for _ in range(2):
        for fn in fns.values():
            step(fn, inputs)
    times = {name: [] for name in LOSSES}
    for _ in range(args.rounds):
        for name, fn in fns.items():
            sync(device)
            start = clock()
            step(fn, inputs)
            sync(device)
            times[name].append(clock() - start)
    return times


def peaks_here(name, setting, args, device):
    """Per round, bytes above the pre-call level at the peak of one call (CUDA, or CPU in this process)."""
    inputs, fn = make_inputs(setting, device), loss_fn(name, setting)
    step(fn, inputs)
    peaks = []
    for _ in range(args.rounds):
        inputs[0].grad = None
        if device.type == "cuda":
            sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            step(fn, inputs)
            sync(device)
            peaks.append(torch.cuda.max_memory_allocated(device) - before)
            continue
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current resident set
        before = _status_kb("VmRSS")
        step(fn, inputs)
        peaks.append((_status_kb("VmHWM") - before) * 1024)
    return peaks


def cpu_peaks(args):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    peaks = {}
    for name in LOSSES:
        command = [sys.executable, __file__, "--child-rss", name, "--setting", args.setting,
                   "--rounds", str(args.rounds), "--threads", str(args.threads)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        peaks[name] = json.loads(result.stdout)
    return peaks


def report(args, device):
    setting = SETTINGS[args.setting]
    times = round_times(setting, args, device)
    peaks = cpu_peaks(args) if device.type == "cpu" else {n: peaks_here(n, setting, args, device) for n in LOSSES}
    grid = round(setting["size"] * setting["kernel"]["scale"])
    print(f"\n{device.type}, setting {args.setting}: batch {setting['batch']}, {setting['classes']} classes, "
          f"{setting['size']} px, logits at output stride {setting['stride_out']}, kernel {setting['kernel']} "
          f"({grid} x {grid} grid), forward + backward, threads = {torch.get_num_threads()}, {args.rounds} "
          f"interleaved rounds, {args.clock} clock; ratios to ce (median [interquartile range] of per-round ratios)")
    print(f"{'loss':<10} {'median ms':>10} {'time / ce':>20} {'peak MiB':>9} {'mem / ce':>20}")
    for name in LOSSES:
        time_ratio = ratio_spread(times[name], times["ce"])
        mem_ratio = ratio_spread(peaks[name], [max(r, 1) for r in peaks["ce"]])
        print(f"{name:<10} {statistics.median(times[name]) * 1e3:>10.2f} {_ratio_text(time_ratio):>20} "
              f"{statistics.median(peaks[name]) / 2**20:>9.2f} {_ratio_text(mem_ratio):>20}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CPU, then CUDA when available")
    parser.add_argument("--setting", choices=tuple(SETTINGS), default="generated")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall-clock time, or the calling thread's CPU time (for shared machines)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--child-rss", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child_rss:
        print(json.dumps(peaks_here(args.child_rss, SETTINGS[args.setting], args, torch.device("cpu"))))
        return
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])}
    for device in map(torch.device, devices[args.device]):
        report(args, device)


if __name__ == "__main__":
    main()
