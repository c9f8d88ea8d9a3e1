"""Training overhead of Self-Regulation: all SR terms on versus the plain baseline.

For each preset, times one training step (forward, loss, backward, SGD step) of
  baseline:       the preset without exits, pixel CE on the head;
  sr-light:       light exits + classifiers, MEA + SR-F + SR-L, variant official;
  sr-official:    official exits + classifiers, same loss,
round-robin (baseline, sr-light, sr-official, baseline, ...) after warm-up rounds, so every
configuration sees the same drift in machine load. Prints the median step time of each, the
median of the per-round ratios to the baseline, and training-time parameters / FLOPs over the
test-time model's (forward FLOPs at 1 x 3 x size x size; FLOPs = 2 x multiply-adds).

    python benchmarks/sr_overhead.py --preset deeplabv3_resnet18 --preset fcn_mobilenetv2_100
"""

import argparse
import statistics

import torch

from srlib.cost import count_flops, count_parameters, interleaved_step_times
from srlib.losses.self_regulation import self_regulation_loss
from srlib.models import PRESETS, build_preset

CONFIGS = {  # name -> (exit type, SR terms on)
    "baseline": (None, False),
    "sr-light": ("light", True),
    "sr-official": ("official", True),
}
TARGET_LIGHT = 1.15  # issue 2: all-SR with light exits at most 1.15 x the baseline step


def training_step(preset: str, exit_type: str | None, sr: bool, images, masks, num_classes: int):
    """A closure running one SGD step of ``preset`` with that exit type, plus the model it trains (on the
    images' device)."""
    torch.manual_seed(0)
    model = build_preset(preset, num_classes, exit_type=exit_type, classify=sr).train().to(images.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = self_regulation_loss(model(images), masks, mea=sr, srf=sr, srl=sr, variant="official",
                                    num_classes=num_classes)["total"]
        loss.backward()
        optimizer.step()

    return step, model


def measure(preset: str, args) -> dict:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
    masks = torch.randint(0, args.classes, (args.batch, args.size, args.size), generator=generator)
    images, masks = images.to(args.device), masks.to(args.device)
    steps, models = {}, {}
    for name, (exit_type, sr) in CONFIGS.items():
        steps[name], models[name] = training_step(preset, exit_type, sr, images, masks, args.classes)
    times = interleaved_step_times(steps, warmup=args.warmup, repeats=args.repeats, device=args.device)
    shape = (1, 3, args.size, args.size)
    test = models["baseline"].inference_model()
    result = {}
    for name, model in models.items():
        result[name] = {
            "step_ms": 1000 * statistics.median(times[name]),
            "step_ratio": statistics.median(t / b for t, b in zip(times[name], times["baseline"])),
            "params_ratio": count_parameters(model) / count_parameters(test),
            "flops_ratio": count_flops(model, shape)["flops"] / count_flops(test, shape)["flops"],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS),
                        help="repeatable; default deeplabv3_resnet18 and fcn_mobilenetv2_100")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="square input side, pixels")
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; 1 by default: on a shared machine contention swamps multi-thread timings")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (fp32, NCHW)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.device}, batch {args.batch}, {args.size}x{args.size} px, {args.classes} classes, "
          f"{torch.get_num_threads()} threads, {args.repeats} interleaved rounds after {args.warmup} warm-up; SR = MEA + SR-F + SR-L, "
          f"variant official; FLOPs: forward, 2 x multiply-adds, at 1x3x{args.size}x{args.size}")
    print(f"{'preset':<22} {'config':<12} {'step ms':>8} {'step x':>7} {'params x':>9} {'FLOPs x':>8}")
    for preset in args.preset or ["deeplabv3_resnet18", "fcn_mobilenetv2_100"]:
        result = measure(preset, args)
        for name, row in result.items():
            print(f"{preset:<22} {name:<12} {row['step_ms']:8.1f} {row['step_ratio']:7.3f} "
                  f"{row['params_ratio']:9.3f} {row['flops_ratio']:8.3f}")
        light = result["sr-light"]["step_ratio"]
        verdict = "meets" if light <= TARGET_LIGHT else "MISSES"
        print(f"{preset}: all-SR light-exit step {light:.3f}x baseline {verdict} the {TARGET_LIGHT}x target")


if __name__ == "__main__":
    main()
