"""The cluster path against a real SLURM: a tiny benchmark through `snakemake --executor slurm` with
profiles/slurm, on the one-node cluster of workflow/scripts/slurm_local.sh (`.ci/run` starts it; by hand:
`sudo workflow/scripts/slurm_local.sh start`). Skipped, saying why, where that cluster is not up.

There is no slurmdbd, so job status is polled with squeue (the cluster keeps finished jobs for an hour)."""

import json
import os
import re
import shutil
import subprocess
from importlib import util

import pytest
from test_workflow import SNAKEMAKE, TINY, work, write_bench  # noqa: F401 -- `work` is a fixture

pytestmark = pytest.mark.slurm

NODE = "srbench"  # the node slurm_local.sh declares
SLURM_OPTIONS = [
    "--workflow-profile", "profiles/slurm",
    "--slurm-status-command", "squeue",  # no accounting database here: sacct cannot answer
    "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
]
BENCH = {  # test_workflow's tiny sweep, one seed, no deliberately failed run
    **TINY,
    "name": "slurmtiny",
    "axes": {**TINY["axes"], "seed": [0]},
    "overrides": [],
    "cost": {"exits": ["light"], "sr": ["baseline", "mea+srf+srl"]},
    # Distinct values per rule, so the test can tell they reached SLURM; the cost jobs each ask for a GPU.
    "resources": {
        "train": {"threads": 2, "gpu": 0, "mem_mb": 1500, "runtime": 15},
        "cost": {"threads": 1, "gpu": 1, "mem_mb": 1200, "runtime": 10},
    },
}
EXPECTED = {  # scontrol's view of each rule's jobs: what sbatch was given
    "train": {"CPUs/Task": "2", "MinMemoryNode": "1500M", "TimeLimit": "00:15:00", "TresPerJob": None},
    "cost": {"CPUs/Task": "1", "MinMemoryNode": "1200M", "TimeLimit": "00:10:00", "TresPerJob": "gres:gpu:1"},
}
TIMEOUT_S = 900  # ~3 min on a quiet 2-core machine; much longer when it is shared
TIMING_COLUMNS = ("step time", "peak memory")  # cost.md columns that are measured, so differ between runs


def _cluster_missing() -> str | None:
    if util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"
    start = "start it as root with `workflow/scripts/slurm_local.sh start`"
    if shutil.which("sinfo") is None:
        return f"no SLURM client on this machine; the one-node test cluster is not up: {start}"
    probe = subprocess.run(["sinfo", "-h", "-n", NODE, "-o", "%T"], capture_output=True, text=True, timeout=30)
    state = probe.stdout.strip()
    if state not in {"idle", "mixed", "allocated"}:
        return f"the one-node SLURM (node {NODE}) is not up ({state or probe.stderr.strip() or 'no answer'}): {start}"
    return None


def _scontrol(job_id: str) -> dict[str, str]:
    """`scontrol show job` as {key: value}."""
    text = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return dict(field.split("=", 1) for field in text.split() if "=" in field)


def _without_timing(markdown: str) -> str:
    """Drop the measured columns (TIMING_COLUMNS) from the markdown tables in ``markdown``."""
    drop, lines = set(), []
    for line in markdown.splitlines():
        cells = line.split("|")
        if not line.startswith("|"):
            drop = set()
        elif any(cell.strip() in TIMING_COLUMNS for cell in cells):
            drop = {i for i, cell in enumerate(cells) if cell.strip() in TIMING_COLUMNS}
        lines.append("|".join(cell for i, cell in enumerate(cells) if i not in drop))
    return "\n".join(lines)


def test_tiny_benchmark_through_slurm_matches_the_local_run(work, tmp_path):
    missing = _cluster_missing()
    if missing:
        pytest.skip(missing)
    local = tmp_path / "local"
    shutil.copytree(work, local)
    path = write_bench(work, BENCH)
    write_bench(local, BENCH)
    # The same benchmark locally, at the same time (one fake GPU for the cost jobs' GPU slots).
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0", "SRBENCH_GPU_LOCK_DIR": str(tmp_path / "locks")}
    local_run = subprocess.Popen([*SNAKEMAKE, "--cores", "2", "--resources", "gpu=1", "--configfile", path],
                                 cwd=local, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = subprocess.run([*SNAKEMAKE, *SLURM_OPTIONS, "--configfile", path], cwd=work, capture_output=True,
                         text=True, timeout=TIMEOUT_S)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log
    local_log = local_run.communicate(timeout=TIMEOUT_S)[0]
    assert local_run.returncode == 0, local_log

    # Every train and cost job went through sbatch, and SLURM knows them all by the workflow's run id.
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == 4, log  # 2 train + 2 cost jobs; data and tables run on the submit host
    run_id = re.search(r"SLURM run ID: (\S+)", log)[1]
    queue = subprocess.run(["squeue", "--states=all", "--noheader", "--name", run_id, "--format=%i|%T|%k"],
                           capture_output=True, text=True, check=True).stdout.split()
    jobs = {line.split("|")[0]: line.split("|")[1:] for line in queue}
    assert sorted(jobs) == sorted(submitted) and all(state == "COMPLETED" for state, _ in jobs.values()), queue

    # threads, mem_mb, runtime and the GPU reached sbatch (--gpus=1 shows as TresPerJob), per rule.
    for job_id, (state, comment) in sorted(jobs.items()):
        rule = comment.split("_")[1]  # the plugin's comment: rule_<name>_wildcards_...
        shown = _scontrol(job_id)
        seen = {key: shown.get(key) for key in EXPECTED[rule]}
        print(f"SLURM job {job_id} {state} {comment}: {seen}")  # shown with pytest -rP
        assert seen == EXPECTED[rule], (job_id, rule)

    # The GPU jobs saw the fake GPU that SLURM assigned them.
    bench, local_bench = work / "results/slurmtiny", local / "results/slurmtiny"
    gpu_lines = sorted(line for p in (bench / "cost").rglob("*.log") for line in p.read_text().splitlines()
                       if line.startswith("gpu_slot:"))
    cost_ids = sorted(job_id for job_id, (_, comment) in jobs.items() if comment.startswith("rule_cost"))
    assert gpu_lines == [f"gpu_slot: SLURM job {job_id}: CUDA_VISIBLE_DEVICES=0" for job_id in cost_ids]

    # The tables are those of the local run (measured step times and memory aside).
    for name in ("ablation.md", "failure_modes.md", "per_class.md", "cost.md"):
        assert _without_timing((bench / name).read_text()) == _without_timing((local_bench / name).read_text()), name
    outcomes = [json.loads(p.read_text())["status"] for p in (bench / "runs").rglob("outcome.json")]
    assert outcomes == ["FINISHED", "FINISHED"]

