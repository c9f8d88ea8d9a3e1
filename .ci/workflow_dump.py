"""Print what the workflow would hand every job of every committed benchmark, for a before/after diff of a refactor.

For each ``benchmarks/*.yaml``: the dry run ``snakemake -n -p`` (its header's date, id and command lines and the
job ids dropped, the jobs and the files of each ``reason:`` sorted: Snakemake prints them in set order), then
every train job's output, identity param and ``run.yaml`` and every cost job's output, identity param and config
YAML, computed by the workflow's own functions (``workflow/rules/common.smk``; a dry run does not execute the
``run:`` blocks that write them). Real datasets are given empty directories under ``DATASETS_ROOT`` (a fixed path:
it is part of their runs' configs).

    python .ci/workflow_dump.py > before.txt   # in each checkout (PYTHONPATH picks the srlib to use), then diff
"""

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

REPO = Path(__file__).resolve().parents[1]
DATASETS_ROOT = "/tmp/srbench-workflow-dump-datasets"
REAL_DATASETS = ("voc_aug", "cityscapes", "pascal_context", "coco_stuff", "ade20k")
JOBID = re.compile(r"^\s*jobid: \d+$")  # Snakemake numbers the jobs in no fixed order
HEADER = re.compile(r"^\s*(Date|Workflow ID|Command|Platform|Host|User|Snakemake version|Python version):|^\[\w{3} ")


def axes(path: str) -> SimpleNamespace:
    """Wildcards of a run directory or cost file from its key~value segments."""
    parts = Path(path.removesuffix(".json")).parts
    return SimpleNamespace(**dict(part.split("~", 1) for part in parts if "~" in part))


def _sorted_reason(line: str) -> str:
    """A job's ``reason:`` line with each list of files sorted (Snakemake prints them in set order)."""
    if not line.lstrip().startswith("reason:"):
        return line
    head, _, reasons = line.partition("reason: ")
    parts = [part.partition(": ") for part in reasons.split("; ")]
    return head + "reason: " + "; ".join(f"{label}{sep}{', '.join(sorted(files.split(', ')))}"
                                        for label, sep, files in parts)


def dump(bench: Path, datasets_root: str) -> None:
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--configfile", str(bench), "--config",
                          f"datasets_root={datasets_root}"], cwd=REPO, capture_output=True, text=True)
    print(f"##### {bench.name}: snakemake -n -p (exit {dry.returncode})")
    output = (dry.stdout + dry.stderr).splitlines()
    lines = [_sorted_reason(line) for line in output if not HEADER.match(line) and not JOBID.match(line)]
    print("\n\n".join(sorted(block.strip("\n") for block in "\n".join(lines).split("\n\n"))))  # a fixed order
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow_api = api.workflow(resource_settings=ResourceSettings(), snakefile=REPO / "Snakefile", workdir=REPO,
                                   config_settings=ConfigSettings(configfiles=[bench],
                                                                  config={"datasets_root": datasets_root}))
        workflow_api.dag(DAGSettings())
        glue = workflow_api._workflow.globals
        for run_dir in glue["RUN_DIRS"]:
            w = axes(run_dir)
            print(f"##### {bench.name}: {run_dir}/run.yaml, identity {glue['run_identity'](w)}")
            print(glue["run_config_yaml"](w), end="")
        for cost_file in glue["COST_FILES"]:
            w = axes(cost_file)
            print(f"##### {bench.name}: {cost_file} config, identity {glue['cost_identity'](w)}")
            print(glue["cost_config_yaml"](w), end="")


def main() -> None:
    for name in REAL_DATASETS:
        Path(DATASETS_ROOT, name).mkdir(parents=True, exist_ok=True)
    for bench in sorted((REPO / "benchmarks").glob("*.yaml")):
        dump(bench.relative_to(REPO), DATASETS_ROOT)


if __name__ == "__main__":
    main()
