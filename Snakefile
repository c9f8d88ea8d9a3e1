"""SR-Bench: sweep baseline x {+-MEA, +-SR-F, +-SR-L} x dataset x preset x pixel loss x seed and build
the paper's tables under results/<benchmark>/.

    snakemake --cores 2                                         # benchmarks/default.yaml
    snakemake --cores 8 --configfile benchmarks/paper.yaml --config datasets_root=/data --resources gpu=4
    snakemake --report results/default/report.html              # HTML report of tables and figures
"""

from snakemake.utils import min_version

from srlib.sweep.benchmark import check_benchmark_file

min_version("8.0")

# A --configfile on the command line replaces the default benchmark instead of being merged into it (a --configfile
# that is not valid YAML is reported by the profile, profiles/default/config.yaml). Snakemake's own message about
# the default benchmark would not say where it is broken.
if not workflow.overwrite_configfiles:
    check_benchmark_file("benchmarks/default.yaml")

    configfile: "benchmarks/default.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/cost.smk"
include: "workflow/rules/tables.smk"


# The runs and cost files are targets too, not only the tables' inputs: tables already on disk (committed, or from
# an earlier sweep under the same name) would otherwise let Snakemake skip runs that do not exist yet.
rule all:
    input:
        [f"{BENCH_DIR}/{name}" for name in TABLE_FILES],
        [f"{run_dir}/outcome.json" for run_dir in RUN_DIRS],
        COST_FILES,
    default_target: True
    localrule: True
