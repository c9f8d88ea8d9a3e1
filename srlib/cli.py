"""``srlib`` command line: run, cost, generate-data, weak-labels, scribbles, init-tracking, import-runs, tables."""

import argparse
import json
import logging
import os
import sys

from srlib.config import DEFAULTS, SCRIBBLE_DATASETS, SUPERVISIONS, ConfigError
from srlib.data import GENERATE_DEFAULTS

EXIT_FAILED = 1  # the run could not be done (its directory is busy or unwritable; without --outcome, a diverged loss)
EXIT_BAD_INPUT = 2
# Bad input exits 2 with a message naming it (found before training starts, it leaves no run directory).
# A non-finite loss is the one training failure that `srlib run --outcome` records as a FAILED result;
# anything else (out of memory, a killed worker, a full disk) exits non-zero so the job is retried and
# resumes from its checkpoint.
BAD_INPUT = (ConfigError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, ValueError)


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="run config YAML (missing keys take srlib.config.DEFAULTS)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set optim.lr=0.02 (repeatable)")


def cmd_run(args) -> int:
    """Answer a finished run of this config and data in ``--out`` (``srlib.rundir.record.finished_run``: no torch,
    no MLflow), else train, resume or complete it."""
    from srlib.rundir.lock import RunDirBusy, RunDirError
    from srlib.rundir.record import finished_run

    try:
        done = finished_run(args.config, args.overrides, args.out, args.outcome)
        return _print_scores(args, done) if done is not None else _train(args)
    except (RunDirBusy, RunDirError) as error:
        print(f"srlib run: error: {error}", file=sys.stderr)
        return EXIT_FAILED


def _train(args) -> int:
    """Train, resume or complete the run (``srlib.train.execute``) and print its scores. A non-finite loss is a
    result of the cell: with ``--outcome`` it is recorded there as FAILED and the command exits 0."""
    from srlib.registries import resolve_config
    from srlib.train import NonFiniteLoss, execute

    cfg = resolve_config(args.config, args.overrides)
    try:
        return _print_scores(args, execute(cfg, args.out, args.outcome))
    except NonFiniteLoss as error:
        print(f"srlib run: {type(error).__name__}: {error}", file=sys.stderr)
        return 0 if args.outcome is not None else EXIT_FAILED


def _print_scores(args, result: dict) -> int:
    """Print the scores of a run's record (``srlib.rundir.record.run_record``)."""
    if result["status"] == "FINISHED":
        metrics = result["metrics"]
        print(f"{args.out}: mIoU {metrics['miou']:.4f}, pixel accuracy {metrics['pixel_accuracy']:.4f}")
    return 0


def cmd_cost(args) -> int:
    from srlib.files import write_json_atomic
    from srlib.registries import resolve_config
    from srlib.train import measure_cost

    cfg = resolve_config(args.config, args.overrides)
    if os.path.isdir(args.out):  # found before minutes of measuring, not after
        raise IsADirectoryError(f"--out {args.out} is a directory; give the JSON file to write")
    write_json_atomic(args.out, measure_cost(cfg))
    print(f"wrote {args.out}")
    return 0


def cmd_generate_data(args) -> int:
    from srlib.data.generated import save_sample_grid
    from srlib.data.synth import generate

    stats = generate(args.root, workers=args.workers, **{key: getattr(args, key) for key in GENERATE_DEFAULTS})
    print(f"dataset at {args.root}: {stats}")
    if args.grid:
        save_sample_grid(args.root, args.grid)
        print(f"sample grid: {args.grid}")
    return 0


def cmd_weak_labels(args) -> int:
    from srlib.data.weak import label_stats

    stats = label_stats(args.root, args.supervision, args.noise, args.limit)
    print(json.dumps({"supervision": args.supervision, "noise": args.noise, **stats}))
    return 0


def cmd_scribbles(args) -> int:
    from srlib.data.scribble import convert_scribbles

    count = convert_scribbles(args.xml_dir, args.dataset, args.out)
    print(f"wrote {count} scribble masks to {args.out} (use it as data.label_dir with data.supervision: scribble)")
    return 0


def cmd_init_tracking(args) -> int:
    from srlib.tracking.store import check_store, ensure_experiment, open_sweep, write_marker

    check_store(args.uri)
    experiment_id = ensure_experiment(args.uri, args.experiment, args.description)
    parent = open_sweep(args.uri, args.experiment, args.benchmark, args.description) if args.benchmark else ""
    if args.marker:
        write_marker(args.marker, args.uri, args.experiment, experiment_id, args.benchmark or "", parent)
    print(f"MLflow experiment {args.experiment!r} ({experiment_id}) at {args.uri}")
    return 0


def cmd_import_runs(args) -> int:
    from srlib.files import read_yaml
    from srlib.tracking.store import check_store
    from srlib.rundir.importer import import_runs

    bench = read_yaml(args.benchmark) if args.benchmark else {}
    experiment = args.experiment or (bench.get("tracking") or {}).get("experiment") or bench.get("name")
    if not experiment:
        raise ValueError("give --experiment, or --benchmark naming the benchmark file")
    check_store(args.uri)
    counts = import_runs(args.run_dirs, args.uri, experiment, benchmark=bench.get("name"),
                         description=bench.get("description"), attach=args.attach or ())
    print(counts)
    return 0


def cmd_tables(args) -> int:
    from srlib.report.tables import build_tables

    for path in build_tables(args.runs, args.out, args.benchmark, cost_files=args.cost):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``srlib`` parser: one subcommand per ``cmd_*`` function, each calling it with the parsed arguments."""
    parser = argparse.ArgumentParser(prog="srlib", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and evaluate one config; resumes, no-op once finished")
    _add_config_args(run)
    run.add_argument("--out", required=True, help="run directory")
    run.add_argument("--outcome", help="write FINISHED, or FAILED on a non-finite loss (then exit 0), here")
    run.set_defaults(func=cmd_run)

    cost = sub.add_parser("cost", help="parameters, FLOPs, step time and peak memory of one config")
    _add_config_args(cost)
    cost.add_argument("--out", required=True, help="JSON file to write")
    cost.set_defaults(func=cmd_cost)

    gen = sub.add_parser("generate-data", help="write the embedded failure-mode dataset")
    gen.add_argument("--root", required=True)
    helps = {"thin_part_prob": "chance each thin part is drawn",
             "small_object_prob": "chance an image gets small objects"}
    for key, default in GENERATE_DEFAULTS.items():
        gen.add_argument(f"--{key.replace('_', '-')}", type=type(default), default=default, help=helps.get(key))
    gen.add_argument("--workers", type=int, default=1)
    gen.add_argument("--grid", help="also write a PNG grid of samples with masks and parts overlaid")
    gen.set_defaults(func=cmd_generate_data)
    _add_tracking_and_tables_commands(sub)
    _add_weak_label_commands(sub)
    return parser


def _add_tracking_and_tables_commands(sub) -> None:
    """``init-tracking``, ``import-runs`` and ``tables`` (after ``generate-data``, in ``srlib --help``'s order)."""
    init = sub.add_parser("init-tracking", help="create the MLflow store and experiment once")
    init.add_argument("--uri", required=True)
    init.add_argument("--experiment", required=True)
    init.add_argument("--marker", help="file to write once the experiment exists (for workflows)")
    init.add_argument("--benchmark", help="benchmark name: also create its parent run")
    init.add_argument("--description", help="the experiment's description (the benchmark's)")
    init.set_defaults(func=cmd_init_tracking)

    imp = sub.add_parser("import-runs", help="log finished runs' metrics.json into MLflow later")
    imp.add_argument("run_dirs", nargs="+")
    imp.add_argument("--uri", required=True)
    imp.add_argument("--experiment", help="default: the benchmark's experiment")
    imp.add_argument("--benchmark", help="benchmark YAML: name (tag, parent run), description, experiment")
    imp.add_argument("--attach", nargs="+", help="files (tables, figures) to log to the benchmark's parent run")
    imp.set_defaults(func=cmd_import_runs)

    tables = sub.add_parser("tables", help="ablation, cost, failure-mode and per-class tables from run directories")
    tables.add_argument("runs", nargs="+", help="run directories")
    tables.add_argument("--out", required=True, help="output directory")
    tables.add_argument("--benchmark", help="benchmark YAML (for captions)")
    tables.add_argument("--cost", nargs="+", help="cost JSON files from `srlib cost` (default: each run's own)")
    tables.set_defaults(func=cmd_tables)


def _add_weak_label_commands(sub) -> None:
    """``weak-labels`` and ``scribbles``."""
    weak = sub.add_parser("weak-labels", help="score the generated dataset's pseudo masks or scribbles against its "
                          "ground truth (training split)")
    weak.add_argument("root", help="generated dataset root")
    weak.add_argument("--supervision", choices=tuple(s for s in SUPERVISIONS if s != "full"), default="pseudo")
    weak.add_argument("--noise", type=float, default=DEFAULTS["data"]["pseudo_noise"], help="pseudo-mask strength")
    weak.add_argument("--limit", type=_positive_int, help="score the first N images only")
    weak.set_defaults(func=cmd_weak_labels)

    scribbles = sub.add_parser("scribbles", help="rasterise ScribbleSup XML files into a label_dir of PNGs")
    scribbles.add_argument("xml_dir", help="folder of <image id>.xml files")
    scribbles.add_argument("--dataset", required=True, choices=SCRIBBLE_DATASETS)
    scribbles.add_argument("--out", required=True, help="output folder (created)")
    scribbles.set_defaults(func=cmd_scribbles)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except BAD_INPUT as error:
        print(f"srlib {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
