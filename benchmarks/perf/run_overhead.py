"""How much the suite's training loop costs over a bare PyTorch loop, and where a run's time goes.

Prints
1. the suite's training step (``Run.timed_step`` over ``Run.loader()``: seeded data stream, label check,
   one finiteness check, loss terms) divided by a bare loop over the same model, batch size and loss
   (plain DataLoader, forward, ``self_regulation_loss``, backward, step). Blocks of steps alternate
   (suite, bare, suite, ...) on the same model so machine noise hits both; medians of per-step times,
   data loading included in both. Target <= 1.05.
2. the time shares of evaluation and of MLflow logging in one whole run (``srlib.train.execute`` with
   a SQLite store), logging timed by wrapping the tracker's methods.

    python benchmarks/perf/run_overhead.py [--data-root DIR] [--preset fcn_mobilenetv2_100] [--iters 60]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import srlib.rundir.mlflow_run
import srlib.tracking.tracker
import srlib.train
from srlib.data.synth import generate
from srlib.registries import resolve_config
from srlib.losses.self_regulation import self_regulation_loss


def bare_steps(run, n: int) -> list[float]:
    """Per-step seconds of a plain PyTorch loop on ``run``'s model, optimizer and training set."""
    loss = run.cfg["loss"]
    loader = DataLoader(run.train_set, batch_size=run.cfg["data"]["batch_size"], shuffle=True, drop_last=True)
    times, batches = [], iter(loader)
    for _ in range(n):
        tick = time.perf_counter()
        batch = next(batches)
        out = run.model(batch["image"])
        terms = self_regulation_loss(out, batch["mask"], mea=loss["mea"], srf=loss["srf"], srl=loss["srl"],
                                     variant=loss["variant"], num_classes=run.num_classes)
        run.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        run.optimizer.step()
        times.append(time.perf_counter() - tick)
    return times


def suite_steps(run, n: int) -> list[float]:
    """Per-step seconds of the suite's own loop, data fetch included."""
    times, batches = [], iter(run.loader())
    for _ in range(n):
        tick = time.perf_counter()
        run.timed_step(next(batches))
        times.append(time.perf_counter() - tick)
    return times


def step_ratio(cfg: dict, blocks: int, block: int) -> tuple[float, float]:
    run = srlib.train.Run(cfg, out_dir=None)
    run.model.train()
    suite_steps(run, 3), bare_steps(run, 3)  # warm-up
    suite, bare = [], []
    for _ in range(blocks):
        suite += suite_steps(run, block)
        bare += bare_steps(run, block)
    return statistics.median(suite), statistics.median(bare)


def run_shares(cfg: dict, workdir: Path) -> dict:
    """Wall-time shares of evaluation and MLflow logging in one whole run."""
    spent = {"tracking": 0.0}

    def timed(function):
        def wrapper(*args, **kwargs):
            tick = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent["tracking"] += time.perf_counter() - tick
        return wrapper

    for name in ("log_metrics", "log_artifact", "log_dict", "log_summary", "finish"):
        setattr(srlib.tracking.tracker.Tracker, name, timed(getattr(srlib.tracking.tracker.Tracker, name)))
    srlib.rundir.mlflow_run.open_run = timed(srlib.rundir.mlflow_run.open_run)  # where open_tracker finds it
    cfg = {**cfg, "tracking": {**cfg["tracking"], "enabled": True, "uri": f"sqlite:///{workdir / 'mlflow.db'}"}}
    tick = time.perf_counter()
    result = srlib.train.execute(cfg, workdir / "run")
    total = time.perf_counter() - tick
    return {"total_s": total, "eval_s": result["train"]["eval_time_s"], "tracking_s": spent["tracking"],
            "train_s": result["train"]["wall_time_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", help="generated dataset root (default: generate 2000/500 images in a temp dir)")
    parser.add_argument("--preset", default="fcn_mobilenetv2_100")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--block", type=int, default=5, help="steps per block")
    parser.add_argument("--iters", type=int, default=100, help="iterations of the whole run for the time shares")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root or str(Path(tmp) / "generated")
        if not args.data_root:
            generate(root, seed=0, n_train=2000, n_val=500, n_test=500, workers=2)
        cfg = resolve_config({
            "threads": args.threads, "device": "cpu",
            "data": {"root": root, "crop_size": 64, "batch_size": 8},
            "model": {"preset": args.preset, "exit": "light"},
            "loss": {"mea": True, "srf": True, "srl": True},
            "optim": {"iters": args.iters}, "run": {"log_every": 25, "ckpt_every": 50},
        })
        torch.set_num_threads(args.threads)
        suite, bare = step_ratio(cfg, args.blocks, args.block)
        print(f"{args.preset}, batch 8, 64x64, MEA+SR-F+SR-L light exits, {args.threads} thread(s), "
              f"{args.blocks} blocks x {args.block} steps each, alternating")
        print(f"suite step {suite * 1e3:.1f} ms / bare PyTorch step {bare * 1e3:.1f} ms = {suite / bare:.3f}x "
              f"(target <= 1.05)")
        shares = run_shares(cfg, Path(tmp))
        print(f"whole run of {args.iters} iterations + evaluation on 500 val images: {shares['total_s']:.1f} s; "
              f"training {shares['train_s'] / shares['total_s']:.1%}, "
              f"evaluation {shares['eval_s'] / shares['total_s']:.1%}, "
              f"MLflow logging {shares['tracking_s'] / shares['total_s']:.1%} (every 25 iterations, SQLite store)")


if __name__ == "__main__":
    main()
