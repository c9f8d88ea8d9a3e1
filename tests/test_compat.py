"""srlib.compat makes timm importable where torchvision's C extension does not load, and is inert elsewhere.

Each case runs in a fresh interpreter: import state is process-wide.
"""

import os
import subprocess
import sys


def run_python(code: str, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_timm_imports_in_this_environment():
    plain = run_python("import torchvision")
    shimmed = run_python(
        "from srlib.compat import ensure_torchvision\n"
        "defined = ensure_torchvision()\n"
        "import timm, torch\n"
        "timm.create_model('test_resnet', features_only=True)\n"
        "print(sorted(defined))"
    )
    assert shimmed.returncode == 0, shimmed.stderr
    defined = eval(shimmed.stdout.strip().splitlines()[-1])
    if plain.returncode == 0:
        assert defined == []
    else:  # the CPU torch + CUDA torchvision pairing this shim exists for
        assert "torchvision::" in plain.stderr
        assert defined == ["nms", "qnms"]


def test_does_nothing_where_torchvision_imports(tmp_path):
    fake = tmp_path / "torchvision"
    fake.mkdir()
    (fake / "__init__.py").write_text("FAKE = True\n")
    result = run_python(
        "import torch\n"
        "from srlib.compat import _has_op, ensure_torchvision\n"
        "defined = ensure_torchvision()\n"
        "import torchvision\n"
        "print(defined, torchvision.FAKE, _has_op('nms'), _has_op('qnms'))",
        pythonpath=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "True", "False", "False"]


def test_unrelated_import_errors_propagate(tmp_path):
    fake = tmp_path / "torchvision"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise RuntimeError('some other failure')\n")
    result = run_python("from srlib.compat import ensure_torchvision; ensure_torchvision()", pythonpath=str(tmp_path))
    assert result.returncode != 0 and "some other failure" in result.stderr
