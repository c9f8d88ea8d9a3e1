"""SR-Bench: sweep baseline x {+-MEA, +-SR-F, +-SR-L} x dataset x preset x pixel loss x seed and build
the paper's tables under results/<benchmark>/.

    snakemake --cores 2                                         # benchmarks/default.yaml
    snakemake --cores 8 --configfile benchmarks/paper.yaml --config datasets_root=/data --resources gpu=4
    snakemake --report results/default/report.html              # HTML report of tables and figures
"""

from snakemake.utils import min_version

min_version("8.0")

# A --configfile on the command line replaces the default benchmark instead of being merged into it.
if not workflow.overwrite_configfiles:

    configfile: "benchmarks/default.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/cost.smk"
include: "workflow/rules/tables.smk"


rule all:
    input:
        [f"{BENCH_DIR}/{name}" for name in TABLE_FILES],
    default_target: True
    localrule: True
