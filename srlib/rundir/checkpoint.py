"""The checkpoint ``RUN_DIR/checkpoint/last.pt``: what a run keeps to resume, saved durably and restored.

It holds the model, optimizer, scheduler, center-loss and RNG states, the iteration, the step times, the last
losses and the peak memory so far (so a resumed run reports what an uninterrupted one does), how much of
history.jsonl it covers, and the config hash, data fingerprint and config it belongs to (a checkpoint of another
config or data is refused, naming what differs: ``srlib.rundir.completion.saved_record``). The functions take the
training run (``srlib.train.Run``) whose state they save or restore.
"""

import random
from pathlib import Path

import numpy as np
import torch

from srlib.config import CONFIG_HASH, DATA_FINGERPRINT, ConfigError
from srlib.cost import peak_memory_so_far
from srlib.files import kill_point, replace_durably
from srlib.rundir.layout import CHECKPOINT_DIR, CHECKPOINT_FILE
from srlib.rundir.record import append_history, truncate_history


def path(run_dir: Path) -> Path:
    """The checkpoint file of a run directory."""
    return Path(run_dir) / CHECKPOINT_DIR / CHECKPOINT_FILE


def read(checkpoint: Path) -> dict:
    """A checkpoint's content; ConfigError naming the file when it cannot be read (delete it to start over)."""
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ConfigError(f"checkpoint {checkpoint} cannot be read ({error}); delete it to start over") from None


def save(run) -> None:
    """Append ``run``'s pending metric points to history.jsonl, then write the checkpoint that covers them
    (``run``: a ``srlib.train.Run``)."""
    append_history(run.out_dir, run.pending)
    kill_point(f"history-written:{run.iteration}")
    run.history_length += len(run.pending)
    state = {
        CONFIG_HASH: run.hash,
        DATA_FINGERPRINT: run.data_fingerprint,
        "config": run.cfg,  # named in the refusal of another config's rerun
        "iteration": run.iteration,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "center": run.loss.state_dict(),
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
        "step_times": run.step_times,
        "last_terms": run.last_terms,
        "peak_bytes": max(run.earlier_peak_bytes, peak_memory_so_far(run.device)["peak_bytes"]),
        "history_length": run.history_length,
    }
    replace_durably(run.ckpt_path, lambda tmp: torch.save(state, tmp))


def restore(run) -> bool:
    """Restore into ``run`` the checkpoint ``srlib.rundir.completion.saved_record`` found (history.jsonl cut back to
    the points it covers); False when there was none."""
    state, run.resume_state = run.resume_state, None
    if state is None:
        return False
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.loss.load_state_dict(state["center"], run.device)
    rng = state["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    run.iteration = state["iteration"]
    run.step_times = state.get("step_times", [])
    run.last_terms = state.get("last_terms")
    run.earlier_peak_bytes = state.get("peak_bytes", 0)
    run.history_length = state.get("history_length", 0)
    truncate_history(run.out_dir, run.history_length)
    return True
