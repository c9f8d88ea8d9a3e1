import os
import tempfile

import pytest
import torch
import yaml

from srlib.data.synth import generate

# CPU results are bitwise repeatable only at a fixed thread count; tests pin it.
torch.set_num_threads(1)
# srlib.data.check remembers checked datasets under $XDG_CACHE_HOME: keep the tests' out of the user's cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="srlib-test-cache-")

@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """A tiny generated dataset (32 px; 16 train, 8 val, 8 test images)."""
    root = tmp_path_factory.mktemp("data") / "generated"
    generate(root, seed=0, size=32, n_train=16, n_val=8, n_test=8)
    return root


@pytest.fixture
def config(tmp_path, data_root):
    """A run config file: all-SR DeepLab-v3 ResNet-18, 12 iterations, checkpoints every 4, losses
    logged every 2, tracked in tmp_path/mlflow.db (experiment "test")."""
    cfg = {
        "threads": 1,
        "data": {"root": str(data_root), "crop_size": 32, "batch_size": 4, "eval_batch_size": 8},
        "model": {"preset": "deeplabv3_resnet18", "exit": "light"},
        "loss": {"mea": True, "srf": True, "srl": True},
        "optim": {"iters": 12, "lr": 0.01},
        "run": {"ckpt_every": 4, "log_every": 2, "val_every": 0, "pictures": 2},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "test"},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
