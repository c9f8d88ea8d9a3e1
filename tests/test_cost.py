"""Parameter and FLOP counts against hand-computed values; timing and memory helpers."""

import pytest
import torch
from torch import nn

from srlib.cost import (
    count_flops,
    count_parameters,
    interleaved_step_times,
    peak_memory_so_far,
    step_tensor_memory,
)


def test_count_parameters_counts_shared_weights_once():
    linear = nn.Linear(3, 4)  # 3 * 4 weights + 4 biases
    assert count_parameters(linear) == 16
    assert count_parameters(nn.Sequential(linear, linear)) == 16


def test_count_flops_convention():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    macs = 8 * 8 * 8 * 3 * 9  # output pixels x out channels x in channels x kernel taps
    assert count_flops(conv, (1, 3, 8, 8)) == {"flops": 2 * macs, "macs": macs}
    assert count_flops(nn.Linear(10, 5), (2, 10))["macs"] == 2 * 10 * 5


def test_count_flops_restores_the_mode_and_ignores_batchnorm_batch_size():
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    model.train()
    assert count_flops(model, (1, 3, 4, 4))["macs"] == 12  # batch 1, 1 x 1 map: fine in eval mode
    assert model.training


def test_interleaved_step_times_alternates():
    calls = []
    times = interleaved_step_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                   warmup=1, repeats=3)
    assert calls == ["a", "b"] * 4
    assert [len(t) for t in times.values()] == [3, 3] and all(s >= 0 for t in times.values() for s in t)
    with pytest.raises(ValueError, match="repeats=0"):
        interleaved_step_times({"a": lambda: None}, repeats=0)


def test_peak_memory_on_cpu_covers_the_step():
    size = 64 * 2**20
    torch.ones(size, dtype=torch.uint8)
    peak = peak_memory_so_far()
    assert peak["kind"] == "cpu_peak_rss" and peak["peak_bytes"] >= size


def test_step_tensor_memory_is_the_peak_of_what_the_step_allocates():
    live = torch.ones(4 * 2**20, dtype=torch.uint8)  # held before the step: not counted

    def step():
        first = torch.zeros(2 * 2**20, dtype=torch.uint8)
        second = torch.zeros(3 * 2**20, dtype=torch.uint8)  # peak: both alive, 5 MiB
        del first, second
        return torch.zeros(2**20, dtype=torch.uint8)  # 1 MiB, after the peak

    memory = step_tensor_memory(step)
    assert memory["kind"] == "cpu_step_allocated"
    assert 5 * 2**20 <= memory["peak_bytes"] < 5 * 2**20 + 2**16
    assert live.sum() == live.numel()
