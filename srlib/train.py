"""One run: train one resolved config, evaluate it and write ``metrics.json`` last; and ``srlib cost``.

The run directory (its files, the ``metrics.json`` record, its checkpoint, lock and MLflow run) is
``srlib.rundir``'s. Running the same config on the same data in the same directory again resumes from the
checkpoint, or only completes what a killed process left undone once ``metrics.json`` exists.
"""

import logging
import math
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Subset

from srlib import __version__
from srlib.config import CONFIG_HASH, DATA_FINGERPRINT, ConfigError
from srlib.cost import count_flops, count_parameters, peak_memory_mib, ratio_spread, step_tensor_memory
from srlib.data import build_dataset, dataset_info
from srlib.data.check import check_items, fingerprint
from srlib.data.stream import TrainStream
from srlib.data.transforms import eval_transform, train_transform
from srlib.data.weak import build_train_set
from srlib.evaluate import evaluate, evaluation_model, write_artifacts
from srlib.files import kill_point, replace_durably, write_json_atomic
from srlib.identity import config_hash
from srlib.losses import RunLoss
from srlib.losses.self_regulation import check_labels
from srlib.models import PRESETS, build_segmentor
from srlib.rundir import checkpoint
from srlib.rundir.layout import CONFIG_FILE, METRICS_FILE
from srlib.rundir.lock import lock
from srlib.rundir.record import read_history, run_record, truncate_history, write_outcome
from srlib.sweep.cells import config_axes, run_axes, sr_flags, sr_from_flags
from srlib.tracking.provenance import run_tags

log = logging.getLogger("srlib.train")

TIMING_WARMUP_STEPS = 5  # steps left out of the median step time
# Scores of the val_subset curve (``Run.validate_subset``): the head's mIoU and, with exits, the SR-F mechanism
VAL_SUBSET_KEYS = ("miou", "exit1_miou", "teacher_agreement", "head_accuracy_teacher_wrong")


class NonFiniteLoss(RuntimeError):
    """A loss term became NaN or infinite; the message names the iteration and the term."""


def select_device(cfg: dict) -> torch.device:
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'device' is 'cuda' but no CUDA device is available")
    return torch.device(cfg["device"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(cfg: dict, num_classes: int, needs: dict) -> torch.nn.Module:
    """The training segmentor with the parts the loss ``needs`` (``RunLoss.needs``): exits, class logits,
    feature projections."""
    model_cfg = cfg["model"]
    kwargs = dict(PRESETS[model_cfg["preset"]]) if model_cfg["preset"] else {}
    for key in ("backbone", "head", "output_stride"):
        if model_cfg[key] is not None:
            kwargs[key] = model_cfg[key]
    if model_cfg["backbone_kwargs"]:
        kwargs["backbone_kwargs"] = {**kwargs.get("backbone_kwargs", {}), **model_cfg["backbone_kwargs"]}
    return build_segmentor(
        **kwargs,
        num_classes=num_classes,
        exit_type=model_cfg["exit"] if needs["exits"] else None,
        exit_width=model_cfg["exit_width"],
        classify=needs["classify"],
        feature_proj_dim=cfg["loss"]["feature_dim"] if needs["feature_proj"] else None,
        pretrained=model_cfg["pretrained"],
        min_exit_stride=model_cfg["min_exit_stride"],
        frozen_bn=model_cfg["frozen_bn"],
        srf_reaches_decoder=cfg["loss"]["srf_reaches_decoder"],
        srl_reaches_encoder=cfg["loss"]["srl_reaches_encoder"],
    )


def build_optimizer(cfg: dict, model) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD or AdamW with the head's lr multiplied; poly decay ``(1 - i / iters) ** power`` per iteration."""
    optim = cfg["optim"]
    groups = model.param_groups()
    params = [
        {"params": groups["backbone"], "lr": optim["lr"]},
        {"params": groups["head"], "lr": optim["lr"] * optim["head_lr_mult"]},
    ]
    if optim["name"] == "sgd":
        optimizer = torch.optim.SGD(params, momentum=optim["momentum"], weight_decay=optim["weight_decay"])
    else:
        optimizer = torch.optim.AdamW(params, weight_decay=optim["weight_decay"])
    iters, power = optim["iters"], optim["poly_power"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: max(0.0, 1 - i / iters) ** power)
    return optimizer, scheduler


class Run:
    """Everything one run holds while it trains; ``execute`` drives it."""

    def __init__(self, cfg: dict, out_dir: str | Path | None):
        """Build the data, model and optimizer; nothing touches ``out_dir`` (bad input fails before the run
        directory exists). With ``out_dir`` every data item is read once (``srlib.data.check``); ``None``
        builds the run without a directory (cost measurement only)."""
        self.cfg = cfg
        self.hash = config_hash(cfg)
        torch.set_num_threads(cfg["threads"])
        self.device = select_device(cfg)
        self.resume_state = None  # the checkpoint's content (srlib.rundir.completion.saved_record)
        data = cfg["data"]
        self.info = dataset_info(data["name"])
        self.num_classes = self.info["num_classes"]
        self.train_set = build_train_set(  # the labels data.supervision asks for
            data, transform=train_transform(data["crop_size"], tuple(data["scale_range"]), data["flip"]))
        self.eval_set = build_dataset(data["name"], data["root"], data["eval_split"], transform=eval_transform())
        self.data_fingerprint = fingerprint(data["name"], [self.train_set, self.eval_set])
        if out_dir is not None:
            self.out_dir = Path(out_dir)
            self.ckpt_path = checkpoint.path(self.out_dir)
            check_items(self.train_set, f"{self.data_fingerprint}-train")
            check_items(self.eval_set, f"{self.data_fingerprint}-{data['eval_split']}")
        seed_everything(cfg["seed"])
        self.loss = RunLoss(cfg["loss"], self.info)
        self.model = build_model(cfg, self.num_classes, self.loss.needs).to(self.device)
        self.channels_last = cfg["optim"]["channels_last"]
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.amp = cfg["optim"]["amp"]
        self.optimizer, self.scheduler = build_optimizer(cfg, self.model)
        self.iteration = 0
        # Kept in the checkpoint, so a resumed run reports what an uninterrupted one does:
        self.step_times: list[tuple[int, float]] = []  # (iteration, seconds) of the steps run so far
        self.last_terms: dict | None = None  # the loss terms last logged
        self.earlier_peak_bytes = 0  # peak memory of the processes before a resume
        self.history_length = 0  # points of history.jsonl that the checkpoint covers
        self.pending: list[dict] = []  # metric points measured since the last checkpoint

    # -- training ------------------------------------------------------------------------------------
    def train_step(self, batch: dict) -> dict:
        """One optimisation step; returns the detached loss terms. Raises NonFiniteLoss before updating."""
        mask = batch["mask"]
        check_labels(mask, self.num_classes)  # on the CPU batch: no device sync
        images = batch["image"].to(self.device, non_blocking=True)
        target = mask.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(images)
        terms = self.loss(out, target, sr_on=self.iteration >= self.cfg["optim"]["sr_warmup_iters"], images=images)
        values = torch.stack([value.detach().float() for value in terms.values()])
        if not bool(torch.isfinite(values).all()):  # one device sync per step
            name, value = next((n, v.item()) for n, v in terms.items() if not torch.isfinite(v))
            raise NonFiniteLoss(f"loss term {name!r} is {value} at iteration {self.iteration + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.optimizer.step()
        self.scheduler.step()
        return {name: value.detach() for name, value in terms.items()}

    def timed_step(self, batch: dict) -> dict:
        """``train_step``, its wall time appended to ``step_times``, and the iteration counted."""
        tick = time.perf_counter()
        terms = self.train_step(batch)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.step_times.append((self.iteration, time.perf_counter() - tick))
        self.iteration += 1
        return terms

    def loader(self) -> DataLoader:
        data = self.cfg["data"]
        batch, iters = data["batch_size"], self.cfg["optim"]["iters"]
        return DataLoader(
            TrainStream(self.train_set, self.cfg["seed"]),
            batch_size=batch,
            sampler=range(self.iteration * batch, iters * batch),
            num_workers=data["workers"],
            # Its own generator: creating the iterator must not draw from the global RNG (dropout), or a
            # resumed run's random stream would be shifted by one draw.
            generator=torch.Generator().manual_seed(self.cfg["seed"]),
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    def evaluate(self, dataset, keep: int) -> tuple[dict, dict]:
        """``srlib.evaluate.evaluate`` of the test-time model on ``dataset``, with every exit's mIoU and the
        head-teacher agreement when the model has exits (one pass: the head's scores are the test-time model's)."""
        model, exits = evaluation_model(self.model)
        return evaluate(model, dataset, self.info, device=self.device, batch_size=self.cfg["data"]["eval_batch_size"],
                        window=self.cfg["data"]["eval_window"], keep=keep, exits=exits)

    def validate_subset(self) -> dict:
        """The ``val_subset/`` points: mIoU in % of the test-time model on the first ``run.val_images``
        evaluation images and, with exits, exit 1's mIoU, the head-teacher agreement and the head's accuracy
        where exit 1 is wrong (``VAL_SUBSET_KEYS``, in %). Leaves the training untouched: same weights, modes
        and random streams (a run validated at any cadence computes what an unvalidated one does)."""
        subset = Subset(self.eval_set, range(min(self.cfg["run"]["val_images"], len(self.eval_set))))
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            metrics, _ = self.evaluate(subset, keep=0)
        return {f"val_subset/{key}_pct": 100 * metrics[key] for key in VAL_SUBSET_KEYS
                if metrics.get(key) is not None}

    def train(self, tracker) -> dict:
        """Train to ``optim.iters``. Metric points go to history.jsonl and MLflow only once a checkpoint covers
        them, so a run killed between checkpoints and resumed logs each step once."""
        iters, run_cfg = self.cfg["optim"]["iters"], self.cfg["run"]
        self.model.train()
        progress = _progress(iters, self.iteration)
        start = time.perf_counter()
        for batch in self.loader():
            terms = self.timed_step(batch)
            kill_point(f"step:{self.iteration}")
            point, last = {}, self.iteration == iters
            if self.iteration % run_cfg["log_every"] == 0 or last:
                self.last_terms = {name: value.item() for name, value in terms.items()}
                point = {**{f"loss_unweighted/{k}": v for k, v in self.last_terms.items() if k != "total"},
                         "loss_weighted/total": self.last_terms["total"], "lr": self.scheduler.get_last_lr()[0]}
                progress(self.iteration, self.last_terms)
            if run_cfg["val_every"] and (self.iteration % run_cfg["val_every"] == 0 or last):
                point.update(self.validate_subset())
            if point:
                self.pending.append({"step": self.iteration, "time_ms": int(time.time() * 1000), "metrics": point})
            if self.iteration % run_cfg["ckpt_every"] == 0 or last:
                checkpoint.save(self)  # also at the end, so a failed evaluation never costs training
                tracker.log_history(self.pending)
                self.pending = []
                kill_point(f"checkpoint:{self.iteration}")
        progress.close()
        final = (self.last_terms or {}).get("total")
        return {"iters": iters, "wall_time_s": time.perf_counter() - start, "final_loss": final,
                "final_terms": self.last_terms}

    # -- cost ----------------------------------------------------------------------------------------
    def cost(self) -> dict:
        crop = self.cfg["data"]["crop_size"]
        shape = (1, 3, crop, crop)
        inference = self.model.inference_model()
        test_flops, train_flops = count_flops(inference, shape), count_flops(self.model, shape)
        # Steps with every configured term on (after the SR warm-up), less the first few of each process.
        sr_on = [t for i, t in self.step_times if i >= self.cfg["optim"]["sr_warmup_iters"]]
        times = sr_on[TIMING_WARMUP_STEPS:] or sr_on
        return {
            "params_test": count_parameters(inference),
            "params_train": count_parameters(self.model),
            "macs_test": test_flops["macs"],
            "macs_train": train_flops["macs"],
            "flops_test": test_flops["flops"],
            "flops_train": train_flops["flops"],
            "flop_input_shape": list(shape),
            "step_time_s": statistics.median(times) if times else None,
            "step_time_batch": self.cfg["data"]["batch_size"],
            **peak_memory_mib(self.device, self.earlier_peak_bytes),
        }


class _progress:
    """tqdm bar on a terminal; plain periodic log lines otherwise (cluster logs)."""

    def __init__(self, total: int, start: int):
        self.total, self.start_iter, self.t0 = total, start, time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="it", dynamic_ncols=True)

    def __call__(self, iteration: int, terms: dict) -> None:
        text = " ".join(f"{k}={v:.4f}" for k, v in terms.items())
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(iteration - self.bar.n)
            return
        done = iteration - self.start_iter
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        eta = (self.total - iteration) / rate if rate > 0 else math.inf
        print(f"iter {iteration}/{self.total} {text} {rate:.2f} it/s eta {eta:.0f}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def execute(cfg: dict, out_dir: str | Path, outcome: str | Path | None = None) -> dict:
    """Train (or resume), evaluate and write ``metrics.json``; return its content. With ``outcome``, write that
    outcome file too (``srlib.rundir.record.write_outcome``): FINISHED, or FAILED on a non-finite loss (still
    raised).

    Holds the run directory's lock throughout (``srlib.rundir.lock``), the outcome's write included. Once
    ``metrics.json`` is written the rest (MLflow summary, artifacts and status, checkpoint removal) is
    ``srlib.rundir.completion.complete``, which a rerun of a finished run repeats safely: a run killed at any
    instant is finished by its rerun, never retrained or logged twice.
    """
    out_dir = Path(out_dir)
    run = Run(cfg, out_dir)  # validates config and data before the run directory is touched
    with lock(out_dir):
        try:
            result = _run_to_record(run, cfg, out_dir)
        except NonFiniteLoss as error:
            if outcome is not None:
                write_outcome(outcome, "FAILED", run.hash, f"{type(error).__name__}: {error}")
            raise
        if outcome is not None:
            write_outcome(outcome, result["status"], result[CONFIG_HASH])
        return result


def _run_to_record(run: Run, cfg: dict, out_dir: Path) -> dict:
    """``execute``'s work under the lock: a finished record completed (``complete``), else the run trained
    (resumed from its checkpoint), evaluated and recorded."""
    # MLflow is imported by runs that log, not by `srlib cost` (its peak memory is the process's)
    from srlib.rundir.completion import complete, saved_record
    from srlib.rundir.mlflow_run import open_tracker

    done = saved_record(run)
    if done is not None:
        complete(cfg, out_dir, done)
        return done
    resumed = checkpoint.restore(run)
    if resumed:
        log.info("resuming %s from iteration %d", out_dir, run.iteration)
    else:  # points a process killed before its first checkpoint wrote are not covered by any
        truncate_history(out_dir, 0)
    replace_durably(out_dir / CONFIG_FILE, lambda tmp: tmp.write_text(yaml.safe_dump(cfg, sort_keys=False)))
    tags = {**run_tags(run.hash, str(run.device), cfg["threads"], torch.backends.cpu.get_cpu_capability()),
            DATA_FINGERPRINT: run.data_fingerprint}
    tracker = open_tracker(cfg, out_dir, tags)
    if resumed:  # points sent before the kill are sent again with their own timestamps: MLflow keeps one
        tracker.log_history(read_history(out_dir))
    started = time.perf_counter()
    try:
        train_summary = run.train(tracker)
        cost = run.cost()  # before evaluation, so peak memory is the training's
        eval_started = time.perf_counter()
        metrics, pictures = run.evaluate(run.eval_set, keep=cfg["run"]["pictures"])
        train_summary["eval_time_s"] = time.perf_counter() - eval_started
        write_artifacts(out_dir, metrics, pictures, run.info)
    except BaseException:
        tracker.finish("FAILED")
        raise
    train_summary["total_time_s"] = time.perf_counter() - started
    train_summary["finished_at_ms"] = int(time.time() * 1000)
    result = run_record(cfg=cfg, config_hash=run.hash, data_fingerprint=run.data_fingerprint,
                        axes=run_axes(out_dir, config_axes(cfg)), version=__version__, tags=tags,
                        device=str(run.device), info=run.info, metrics=metrics, cost=cost, train=train_summary)
    write_json_atomic(out_dir / METRICS_FILE, result)
    kill_point("metrics-written")
    complete(cfg, out_dir, result, tracker)
    return result


def measure_cost(cfg: dict) -> dict:
    """``srlib cost``: parameters and FLOPs of the test-time and training models, the median step time and
    peak memory over ``run.cost_steps`` real training steps (after warm-up steps), and the tensor memory of
    one more step on the last batch (``srlib.cost.step_tensor_memory``, in MiB).

    A config with any SR term on is then timed again against its baseline (the same config with MEA, SR-F
    and SR-L off, so no exits): ``run.cost_steps`` interleaved rounds on the same batches, one step of each
    per round, so machine load hits both alike. ``step_time_ratio`` = {"median", "q1", "q3", "n"} of the
    per-round ratios (``srlib.cost.ratio_spread``); absent for a baseline config."""
    run = Run(cfg, out_dir=None)
    run.model.train()
    run.iteration = cfg["optim"]["sr_warmup_iters"]  # time the steps with SR switched on
    steps = TIMING_WARMUP_STEPS + cfg["run"]["cost_steps"]
    batches = [batch for _, batch in zip(range(steps), run.loader())]
    for batch in batches:
        run.timed_step(batch)
    cost = run.cost()  # before the profiled step: its time and memory are the plain steps'
    memory = step_tensor_memory(lambda: run.train_step(batches[-1]), run.device)
    record = {"config_hash": run.hash, "config": cfg, "threads": cfg["threads"], "device": str(run.device), **cost,
              "step_tensor_memory_mib": memory["peak_bytes"] / 2**20, "step_tensor_memory_kind": memory["kind"]}
    if sr_from_flags(cfg["loss"]) != "baseline":
        record["step_time_ratio"] = _interleaved_ratio(run, batches)
    return record


def _interleaved_ratio(run: "Run", batches: list[dict]) -> dict:
    """Per-round step-time ratios of ``run`` to its baseline over ``batches`` (the first TIMING_WARMUP_STEPS
    rounds untimed, unless that leaves none: a config with fewer iterations); see ``measure_cost``."""
    base_cfg = {**run.cfg, "loss": {**run.cfg["loss"], **sr_flags("baseline")}}
    base = Run(base_cfg, out_dir=None)
    base.model.train()
    base.iteration = run.iteration = run.cfg["optim"]["sr_warmup_iters"]
    base.step_times, run.step_times = [], []
    for batch in batches:
        base.timed_step(batch)
        run.timed_step(batch)
    timed = slice(TIMING_WARMUP_STEPS if len(batches) > TIMING_WARMUP_STEPS else 0, None)  # a short run: all
    return ratio_spread([t for _, t in run.step_times[timed]], [t for _, t in base.step_times[timed]])