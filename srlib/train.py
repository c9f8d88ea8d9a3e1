"""One run: train one resolved config, evaluate it and write ``metrics.json`` last.

The run directory's files and the ``metrics.json`` record are described in ``srlib.results``; the
checkpoint ``RUN_DIR/checkpoint/last.pt`` holds model, optimizer, scheduler, center-loss and RNG states
and the iteration. Running the same config on the same directory again resumes from the checkpoint,
or does nothing once ``metrics.json`` exists.
"""

import logging
import math
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from srlib import __version__
from srlib.config import ConfigError, config_hash, tracking_uri
from srlib.cost import count_flops, count_parameters, peak_memory_so_far
from srlib.data import build_dataset, dataset_info
from srlib.data.stream import TrainStream
from srlib.data.transforms import eval_transform, train_transform
from srlib.data.weak import build_train_set
from srlib.evaluate import evaluate, write_artifacts
from srlib.losses import RunLoss
from srlib.losses.self_regulation import check_labels
from srlib.models import PRESETS, build_segmentor
from srlib.results import METRICS_FILE, read_json, run_record, write_json_atomic
from srlib.sweep import config_axes, run_axes

log = logging.getLogger("srlib.train")

TIMING_WARMUP_STEPS = 5  # steps left out of the median step time


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
        classify=needs["classify"],
        feature_proj_dim=cfg["loss"]["feature_dim"] if needs["feature_proj"] else None,
        pretrained=model_cfg["pretrained"],
        min_exit_stride=model_cfg["min_exit_stride"],
        frozen_bn=model_cfg["frozen_bn"],
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
        """``out_dir=None`` builds the run without a directory (cost measurement only)."""
        self.cfg = cfg
        self.hash = config_hash(cfg)
        torch.set_num_threads(cfg["threads"])
        self.device = select_device(cfg)
        self.resume_state = None  # the checkpoint's content, read once by _check_run_dir
        if out_dir is not None:
            self.out_dir = Path(out_dir)
            self.ckpt_path = self.out_dir / "checkpoint" / "last.pt"
            self._check_run_dir()
        data = cfg["data"]
        self.info = dataset_info(data["name"])
        self.num_classes = self.info["num_classes"]
        # Everything that can fail on bad input happens before the run directory is touched.
        self.train_set = build_train_set(  # the labels data.supervision asks for
            data, transform=train_transform(data["crop_size"], tuple(data["scale_range"]), data["flip"]))
        self.eval_set = build_dataset(data["name"], data["root"], data["eval_split"], transform=eval_transform())
        seed_everything(cfg["seed"])
        self.loss = RunLoss(cfg["loss"], self.info)
        self.model = build_model(cfg, self.num_classes, self.loss.needs).to(self.device)
        self.channels_last = cfg["optim"]["channels_last"]
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.amp = cfg["optim"]["amp"]
        self.optimizer, self.scheduler = build_optimizer(cfg, self.model)
        self.iteration = 0
        self.step_times: list[tuple[int, float]] = []  # (iteration, seconds) of the steps this process ran

    def _check_run_dir(self) -> None:
        metrics = self.out_dir / METRICS_FILE
        if metrics.exists():
            done = read_json(metrics)
            if done.get("config_hash") != self.hash:
                raise ConfigError(
                    f"{metrics} is a finished run of config hash {done.get('config_hash')}; this config hashes to "
                    f"{self.hash}. Use another --out directory."
                )
        if self.ckpt_path.exists():
            try:
                saved = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
            except Exception as error:  # noqa: BLE001 - any unreadable file is reported the same way
                raise ConfigError(f"checkpoint {self.ckpt_path} cannot be read ({error}); delete it to start over") from None
            if saved.get("config_hash") != self.hash:
                raise ConfigError(
                    f"checkpoint {self.ckpt_path} was written by config hash {saved.get('config_hash')}, "
                    f"this config hashes to {self.hash}; delete the checkpoint or use another --out directory"
                )
            self.resume_state = saved

    # -- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        state = {
            "config_hash": self.hash,
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "center": self.loss.state_dict(),
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }
        self.ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.ckpt_path)

    def load_checkpoint(self) -> bool:
        """Restore the checkpoint found when the run was built; False when there was none."""
        state, self.resume_state = self.resume_state, None
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.loss.load_state_dict(state["center"], self.device)
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.iteration = state["iteration"]
        return True

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

    def train(self, tracker) -> dict:
        iters, every = self.cfg["optim"]["iters"], self.cfg["run"]["log_every"]
        self.model.train()
        progress = _progress(iters, self.iteration)
        terms = {}
        start = time.perf_counter()
        for batch in self.loader():
            terms = self.timed_step(batch)
            lr = self.scheduler.get_last_lr()[0]
            if self.iteration % every == 0 or self.iteration == iters:
                terms = {name: value.item() for name, value in terms.items()}
                tracker.log_metrics({**{f"loss/{k}": v for k, v in terms.items()}, "lr": lr}, step=self.iteration)
                progress(self.iteration, terms)
            if self.iteration % self.cfg["run"]["ckpt_every"] == 0 or self.iteration == iters:
                self.save_checkpoint()  # also at the end, so a failed evaluation never costs training
        progress.close()
        final = terms.get("total")
        return {"iters": iters, "wall_time_s": time.perf_counter() - start,
                "final_loss": None if final is None else float(final)}

    # -- cost ----------------------------------------------------------------------------------------
    def cost(self) -> dict:
        crop = self.cfg["data"]["crop_size"]
        shape = (1, 3, crop, crop)
        inference = self.model.inference_model()
        test_flops, train_flops = count_flops(inference, shape), count_flops(self.model, shape)
        # Steps with every configured term on (after the SR warm-up), less this process's first few.
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
            **_peak_memory_mib(self.device),
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


def execute(cfg: dict, out_dir: str | Path) -> dict:
    """Train (or resume), evaluate and write ``metrics.json``; return its content. No-op if already finished."""
    out_dir = Path(out_dir)
    metrics_path = out_dir / METRICS_FILE
    done = read_json(metrics_path) if metrics_path.exists() else {}
    if done.get("config_hash") == config_hash(cfg):
        log.info("%s already finished (config %s): nothing to do", out_dir, done["config_hash"])
        return done
    run = Run(cfg, out_dir)  # validates everything (a finished run of another config too) before writing
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    resumed = run.load_checkpoint()
    if resumed:
        log.info("resuming %s from iteration %d", out_dir, run.iteration)
    from srlib.tracking import run_tags  # MLflow is imported by runs that log, not by `srlib cost`

    tags = run_tags(run.hash, str(run.device), cfg["threads"])
    tracker = open_tracker(cfg, out_dir, tags)
    started = time.perf_counter()
    try:
        train_summary = run.train(tracker)
        cost = run.cost()  # before evaluation, so peak memory is the training's
        eval_started = time.perf_counter()
        metrics, pictures = evaluate(
            run.model.inference_model(), run.eval_set, run.info, device=run.device,
            batch_size=cfg["data"]["eval_batch_size"], window=cfg["data"]["eval_window"],
            keep=cfg["run"]["pictures"],
        )
        train_summary["eval_time_s"] = time.perf_counter() - eval_started
        artifacts = write_artifacts(out_dir, metrics, pictures, run.info)
        result = run_record(cfg=cfg, config_hash=run.hash, axes=run_axes(out_dir, config_axes(cfg)),
                            version=__version__, tags=tags, device=str(run.device), info=run.info,
                            metrics=metrics, cost=cost, train=train_summary)
        tracker.log_summary(result, step=run.iteration)
        for path in artifacts:
            tracker.log_artifact(path)
    except BaseException:
        tracker.finish("FAILED")
        raise
    result["train"]["total_time_s"] = time.perf_counter() - started
    write_json_atomic(metrics_path, result)
    tracker.log_artifact(metrics_path)
    tracker.finish("FINISHED")
    shutil.rmtree(run.ckpt_path.parent, ignore_errors=True)  # finished: metrics.json is the record
    return result


def measure_cost(cfg: dict) -> dict:
    """``srlib cost``: parameters and FLOPs of the test-time and training models, and the median step time
    and peak memory over ``run.cost_steps`` real training steps (after warm-up steps)."""
    run = Run(cfg, out_dir=None)
    run.model.train()
    run.iteration = cfg["optim"]["sr_warmup_iters"]  # time the steps with SR switched on
    steps = TIMING_WARMUP_STEPS + cfg["run"]["cost_steps"]
    for _, batch in zip(range(steps), run.loader()):
        run.timed_step(batch)
    return {"config_hash": run.hash, "config": cfg, "threads": cfg["threads"], "device": str(run.device), **run.cost()}


def _peak_memory_mib(device: torch.device) -> dict:
    """Peak memory of the training so far in MiB (CUDA peak allocated, or the process's peak RSS on CPU)."""
    peak = peak_memory_so_far(device)
    return {"peak_memory_mib": peak["peak_bytes"] / 2**20, "memory_kind": peak["kind"]}


def open_tracker(cfg: dict, out_dir: Path, tags: dict):
    """The run's MLflow run (``srlib.tracking.Tracker``); a resumed run continues the MLflow run it started
    (id kept beside the checkpoint)."""
    from srlib.tracking import Tracker, open_run

    tracking = cfg["tracking"]
    uri = tracking_uri(tracking["uri"])
    if not tracking["enabled"]:
        return Tracker(None, None, uri)
    id_file = out_dir / "checkpoint" / "mlflow_run_id"
    previous = id_file.read_text().strip() if id_file.exists() else None
    tracker = open_run(uri, tracking["experiment"], _run_name(out_dir), cfg, tags, run_id=previous)
    if tracker.active and tracker.run_id != previous:
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(tracker.run_id)
    return tracker


def _run_name(out_dir: Path) -> str:
    """The run directory relative to the working directory (it spells the sweep parameters)."""
    try:
        return out_dir.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return out_dir.as_posix()
