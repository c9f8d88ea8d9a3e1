"""Training overhead of Self-Regulation: all SR terms on versus the plain baseline.

For each preset, times one training step (forward, loss, backward, SGD step) of
  baseline:       the preset without exits, pixel CE on the head;
  sr-light:       light exits + classifiers, MEA + SR-F + SR-L, variant official;
  sr-official:    official exits + classifiers, same loss,
round-robin (baseline, sr-light, sr-official, baseline, ...) after warm-up rounds, so every
configuration sees the same drift in machine load. Prints the median step time of each, the
median and interquartile range of the per-round ratios to the baseline, and training-time
parameters / FLOPs over the test-time model's (forward FLOPs at 1 x 3 x size x size; FLOPs = 2 x
multiply-adds). Cases: the CPU presets at 64 px, 21 classes, output stride 8, and ``default``, the
default benchmark's model (``benchmarks/default.yaml``: MobileNetV2-1.0 FCN at output stride 16,
exits on every stage from the stride-2 stem, 128 px crops, 10 classes; ImageNet weights do not
change the step time and are not loaded).

    python benchmarks/perf/sr_overhead.py                                  # every case, one thread
    python benchmarks/perf/sr_overhead.py --case default --repeats 30
    python benchmarks/perf/sr_overhead.py --device cuda --size 321 --batch 10 --preset deeplabv2_resnet101
"""

import argparse
import statistics

import torch

from srlib.cost import count_flops, count_parameters, interleaved_step_times, ratio_spread
from srlib.losses.self_regulation import self_regulation_loss
from srlib.models import PRESETS, build_preset
from srlib.report.format import console_spread

CONFIGS = {  # name -> (exit type, SR terms on)
    "baseline": (None, False),
    "sr-light": ("light", True),
    "sr-official": ("official", True),
}
TARGET_LIGHT = 1.10  # all-SR with light exits at most 1.10 x the baseline step
CASES = {  # name -> (preset, build_preset overrides, image side in px, classes)
    "deeplabv3_resnet18": ("deeplabv3_resnet18", {}, 64, 21),
    "fcn_mobilenetv2_050": ("fcn_mobilenetv2_050", {}, 64, 21),
    "fcn_mobilenetv2_100": ("fcn_mobilenetv2_100", {}, 64, 21),
    "default": ("fcn_mobilenetv2_100", {"output_stride": 16}, 128, 10),
}


def training_step(preset: str, overrides: dict, exit_type: str | None, sr: bool, images, masks, num_classes: int):
    """A closure running one SGD step of ``preset`` (``build_preset`` ``overrides``) with that exit type, plus
    the model it trains (on the images' device)."""
    torch.manual_seed(0)
    model = build_preset(preset, num_classes, exit_type=exit_type, classify=sr, **overrides).train().to(images.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = self_regulation_loss(model(images), masks, mea=sr, srf=sr, srl=sr, variant="official",
                                    num_classes=num_classes)["total"]
        loss.backward()
        optimizer.step()

    return step, model


def measure(case: str, args) -> dict:
    preset, overrides, size, classes = CASES.get(case, (case, {}, 64, 21))
    size = args.size or size
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, size, size, generator=generator)
    masks = torch.randint(0, classes, (args.batch, size, size), generator=generator)
    images, masks = images.to(args.device), masks.to(args.device)
    steps, models = {}, {}
    for name, (exit_type, sr) in CONFIGS.items():
        steps[name], models[name] = training_step(preset, overrides, exit_type, sr, images, masks, classes)
    times = interleaved_step_times(steps, warmup=args.warmup, repeats=args.repeats, device=args.device)
    shape = (1, 3, size, size)
    test = models["baseline"].inference_model()
    result = {}
    for name, model in models.items():
        result[name] = {
            "step_ms": 1000 * statistics.median(times[name]),
            "step_ratio": ratio_spread(times[name], times["baseline"]),
            "params_ratio": count_parameters(model) / count_parameters(test),
            "flops_ratio": count_flops(model, shape)["flops"] / count_flops(test, shape)["flops"],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="repeatable; default: every case")
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS),
                        help="repeatable: also (or, without --case, only) this preset at 64 px, 21 classes")
    parser.add_argument("--size", type=int, help="square input side in px for every case (default: the case's)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; 1 by default: on a shared machine contention swamps "
                             "multi-thread timings")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (fp32, NCHW)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.device}, batch {args.batch}, {torch.get_num_threads()} threads, {args.repeats} interleaved rounds "
          f"after {args.warmup} warm-up; SR = MEA + SR-F + SR-L, variant official; step x = median [IQR] of per-round "
          f"ratios to the baseline; FLOPs: forward, 2 x multiply-adds, at 1 x 3 x size x size")
    print(f"{'case':<20} {'config':<12} {'step ms':>8} {'step x':>22} {'params x':>9} {'FLOPs x':>8}")
    for case in (args.case or ([] if args.preset else list(CASES))) + (args.preset or []):
        result = measure(case, args)
        for name, row in result.items():
            ratio = row["step_ratio"]
            print(f"{case:<20} {name:<12} {row['step_ms']:8.1f} "
                  f"{ratio['median']:8.3f} [{ratio['q1']:.3f}-{ratio['q3']:.3f}] "
                  f"{row['params_ratio']:9.3f} {row['flops_ratio']:8.3f}")
        light = result["sr-light"]["step_ratio"]
        verdict = "meets" if light["median"] <= TARGET_LIGHT else "MISSES"
        print(f"{case}: all-SR light-exit step {console_spread(light)} of the baseline: {verdict} the "
              f"{TARGET_LIGHT:.2f}x target")


if __name__ == "__main__":
    main()
