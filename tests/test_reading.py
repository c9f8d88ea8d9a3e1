"""What a run reads: two configs that ``srlib.identity.reading_hash`` calls the same train bitwise the same, so a
settings sweep may train them once; and configs it tells apart do differ."""

import copy

import pytest
import torch

from srlib.identity import reading_hash
from srlib.registries import resolve_config
from srlib.train import Run

CELLS = {
    "baseline": {"mea": False, "srf": False, "srl": False},
    "mea": {"mea": True, "srf": False, "srl": False},
    "mea+srl": {"mea": True, "srf": False, "srl": True},
    "mea+srf": {"mea": True, "srf": True, "srl": False},
}
# (cell, change that cell does not read)
UNREAD = [
    ("baseline", {"model": {"exit": "official", "exit_width": 8, "min_exit_stride": 4}}),
    ("baseline", {"loss": {"variant": "paper", "w_seg": 0.1, "w_cls": 0.3, "w_srf": 0.5, "w_srl": 2.0, "tau": 3.0}}),
    ("baseline", {"optim": {"sr_warmup_iters": 1}, "loss": {"feature_dim": 8, "feature_norm": "power"}}),
    ("mea", {"loss": {"w_srf": 0.5, "w_srl": 2.0, "tau": 3.0, "feature_norm": "power"},
             "optim": {"sr_warmup_iters": 1}}),
    ("mea", {"model": {"exit_width": 8}}),  # a light exit has no hidden width
    ("mea+srl", {"loss": {"variant": "paper-features", "w_srf": 0.5, "feature_dim": 8}}),
    ("mea+srf", {"loss": {"w_srl": 2.0, "focal": {"gamma": 1.0}, "lal": {"window": 3}, "center_alpha": 0.1}}),
]
READ = [
    ("baseline", {"optim": {"lr": 0.02}}),
    ("mea", {"loss": {"variant": "official"}}),
    ("mea", {"loss": {"w_seg": 0.5}}),
    ("mea+srl", {"loss": {"tau": 2.0}}),
    ("mea+srf", {"loss": {"variant": "paper-features"}}),
    ("mea+srf", {"optim": {"sr_warmup_iters": 1}}),
]


def _config(data_root, cell: str, change: dict | None = None) -> dict:
    cfg = {"threads": 1, "device": "cpu", "data": {"root": str(data_root), "crop_size": 32, "batch_size": 2},
           "model": {"preset": "fcn_mobilenetv2_050", "exit": "light"},
           "loss": {"variant": "paper", **CELLS[cell]}, "optim": {"iters": 2}, "tracking": {"enabled": False}}
    for section, values in (change or {}).items():
        cfg[section] = {**cfg[section], **copy.deepcopy(values)}
    return resolve_config(cfg)


def _train(cfg: dict) -> tuple[list[dict], dict]:
    run = Run(cfg, out_dir=None)
    run.model.train()
    terms = [{k: v.item() for k, v in run.train_step(batch).items()} for batch in run.loader()]
    return terms, {name: p.detach().clone() for name, p in run.model.named_parameters()}


@pytest.mark.parametrize("cell, change", UNREAD)
def test_a_change_the_cell_does_not_read_keeps_its_reading_and_its_training(data_root, cell, change):
    plain, changed = _config(data_root, cell), _config(data_root, cell, change)
    assert reading_hash(plain) == reading_hash(changed)
    (terms_a, params_a), (terms_b, params_b) = _train(plain), _train(changed)
    assert terms_a == terms_b
    assert params_a.keys() == params_b.keys() and all(torch.equal(params_a[k], params_b[k]) for k in params_a)


@pytest.mark.parametrize("cell, change", READ)
def test_a_change_the_cell_reads_is_another_reading(data_root, cell, change):
    assert reading_hash(_config(data_root, cell)) != reading_hash(_config(data_root, cell, change))
