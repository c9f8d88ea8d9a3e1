"""The shape of srlib (``.ci/architecture.py``): no import cycle, no upward import, small modules and functions,
short lines; config at the bottom; the modules the workflow, the records and the provenance tags need load without
torch or MLflow."""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("architecture", REPO / ".ci" / "architecture.py")
architecture = importlib.util.module_from_spec(spec)
spec.loader.exec_module(architecture)


def test_no_cycle_no_upward_import_no_long_module_function_or_line():
    summary, problems = architecture.report(REPO)
    assert problems == [], "\n".join(problems)
    assert "module cycles: 0" in summary and "upward imports: 0" in summary


def test_config_imports_nothing_from_srlib():
    tree = ast.parse((REPO / "srlib" / "config.py").read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name.split(".")[0] == "srlib"]


@pytest.mark.parametrize("module", [
    "srlib.config", "srlib.identity", "srlib.sweep.benchmark", "srlib.rundir.record", "srlib.tracking.provenance",
    "srlib.report.tables",
])
def test_the_workflow_and_record_modules_load_without_torch_or_mlflow(module):
    code = f"import sys, {module}; print([m for m in ('torch', 'mlflow') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr
