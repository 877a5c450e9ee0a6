"""``python -m soteacher <command>``: the entry points Snakemake rules call (and people can too).

Imports are lazy so ``--help`` and config checks return fast; torch and MLflow load only in jobs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _spec(text: str) -> dict:
    """A job spec: inline JSON, or @path to a JSON file."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"--spec is not valid JSON: {err}") from None
    if not isinstance(spec, dict):
        raise argparse.ArgumentTypeError("--spec must be a JSON object")
    return spec


def _tracking_uri(args, config: dict | None = None) -> str:
    """--tracking-uri, else the config's tracking.uri (MLFLOW_TRACKING_URI overrides both: tracking.resolve_uri)."""
    return args.tracking_uri or (config or {}).get("tracking", {}).get("uri") or "sqlite:///mlflow/mlflow.db"


def _job_spec(args):
    """The typed spec of a job command (``--spec`` JSON as the rules write it)."""
    from soteacher.core.specs import from_dict
    from soteacher.students.spec import DistillSpec
    from soteacher.teachers.spec import ImportSpec, TeacherSpec

    kind = {cmd_train_teacher: TeacherSpec, cmd_distill: DistillSpec, cmd_import_teacher: ImportSpec}[args.func]
    try:
        return from_dict(kind, args.spec)
    except (TypeError, KeyError) as err:
        from soteacher.core.errors import ConfigError

        raise ConfigError(f"--spec is not a {kind.__name__}: {err}") from None


def cmd_check_config(args) -> int:
    from soteacher.study import config
    from soteacher.study.student_jobs import student_jobs
    from soteacher.study.teacher_jobs import teacher_jobs

    cfg = config.load(args.config)
    n_teachers, n_students = len(teacher_jobs(cfg)), len(student_jobs(cfg))
    print(f"{args.config}: OK ({n_teachers} teacher runs, {n_students} student runs)")
    return 0


def cmd_plan(args) -> int:
    from soteacher.study import config, plan

    cfg = config.load(args.config, deep=False)
    costs, label = None, None
    if args.measure:
        import torch

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        archs = sorted({a for pair in config.distill_pairs(cfg) for a in pair} | set(cfg["teacher"]["archs"]))
        shape = config.input_shape(cfg)
        # ImageNet-size inputs are timed at 64 px (scaled by pixels) so a CPU measurement stays short
        side = min(shape[-1], 64) if device == "cpu" else shape[-1]
        costs = plan.measure(archs, (shape[0], side, side), device=device, threads=cfg["compute"]["threads"],
                             steps=args.steps)
        label = f"{device} (measured here, {cfg['compute']['threads']} thread(s))" if device == "cpu" \
            else f"{device} (measured here)"
    from soteacher.core import layout
    from soteacher.core.io import write_text

    result = plan.make_plan(cfg, costs, label)
    text = plan.render(result, args.config)
    print(text)
    if args.header:
        print(plan.header_comment(result))
    write_text(layout.study_plan(cfg["name"]), text + "\n")  # beside the study's tables, the latest plan
    return 0


def cmd_list(args) -> int:
    from soteacher.methods import METHODS
    from soteacher.models import MODELS, build_model

    print("KD methods:")
    for name, cls in sorted(METHODS.items()):
        doc = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<10} {doc}")
    print("architectures (parameters at 100 classes):")
    for name in sorted(MODELS):
        params = sum(p.numel() for p in build_model(name, 100).parameters()) / 1e6
        print(f"  {name:<12} {params:7.3f} M")
    return 0


def cmd_prepare_data(args) -> int:
    from soteacher import data
    from soteacher.core import layout
    from soteacher.study import config
    from soteacher.study.identity import data_id

    cfg = config.load(args.config, deep=False) if args.config else {"data": args.spec["data"]}
    out = layout.data_dir(data_id(cfg))
    manifest = data.prepare(cfg["data"], out)
    for split, info in manifest["splits"].items():
        logging.info("%s %s: %d samples of shape %s", cfg["data"]["dataset"], split, info["samples"],
                     info["image_shape"])
    return 0


def cmd_train_teacher(args) -> int:
    from soteacher.teachers.job import run_teacher

    out = run_teacher(args.spec, _tracking_uri(args), args.experiment)
    logging.info("teacher done: %s", out)
    return 0


def cmd_distill(args) -> int:
    from soteacher.students.job import run_distill

    outs = run_distill(args.spec, _tracking_uri(args), args.experiment)
    logging.info("students done: %s", ", ".join(map(str, outs)))
    return 0


def cmd_import_teacher(args) -> int:
    from soteacher.teachers.importer import run_import

    out = run_import(args.spec, _tracking_uri(args), args.experiment)
    logging.info("teacher imported: %s", out)
    return 0


def cmd_convert_checkpoint(args) -> int:
    from soteacher.teachers.importer import convert

    if not args.trust_source:
        print("error: converting unpickles the file with weights_only=False, which can run code from it; "
              "pass --trust-source if you trust where it came from", file=sys.stderr)
        return 2
    out = convert(Path(args.src), Path(args.dst))
    print(f"{args.dst}: {', '.join(out)} (loads with weights_only=True)")
    return 0


def cmd_aggregate(args) -> int:
    from soteacher import report as aggregate
    from soteacher.study import config

    cfg = config.load(args.config, deep=False) if args.config else config.validate(args.spec, deep=False)
    # the rule hands the config over as sorted JSON (recipes, methods by name): the tables' row order follows it,
    # so --config gives the same tables as the rule
    aggregate.run(json.loads(json.dumps(cfg, sort_keys=True)), allow_partial=args.allow_partial)
    return 0


def cmd_headline(args) -> int:
    from soteacher.core.io import read_json
    from soteacher.report.headline import headline_words
    from soteacher.report.registry import outputs
    from soteacher.study import config

    name = config.load(args.config, deep=False)["name"]
    written = {key: out.path for key, out in outputs(name).items()}
    if not written["summary_json"].is_file():
        print(f"error: {written['summary_json']} is missing: run the study first (make run CONFIG={args.config})",
              file=sys.stderr)
        return 1
    print(headline_words(read_json(written["summary_json"]), [str(p) for p in written.values()],
                         f"make report CONFIG={args.config}"), end="")
    return 0


def cmd_sample_size(args) -> int:
    from soteacher.report import sample_size
    from soteacher.report.collect import IncompleteResultsError, study
    from soteacher.report.compare import last_epochs, primary_pairs, reference_pairs
    from soteacher.study import config

    cfg = config.load(args.config, deep=False)
    primary, reference = cfg["report"]["primary"], cfg["report"]["reference_recipe"]
    try:
        students = study(cfg).students
    except (IncompleteResultsError, FileNotFoundError) as e:
        print(f"error: the pilot {args.config} has not finished: {e} (run it first: make run CONFIG={args.config})",
              file=sys.stderr)
        return 1
    chosen, epoch = primary_pairs(reference_pairs(students, reference), last_epochs(students), primary)
    if chosen.empty:
        print(f"error: {args.config} has no {primary['method']} students of {primary['recipe']!r} and "
              f"{reference!r} teachers at checkpoint {epoch} to pair", file=sys.stderr)
        return 1
    # one value per (teacher seed, student seed): the difference averaged over teacher archs and students
    per_pair = chosen.groupby(["teacher_seed", "seed"])["d_student_last_acc"].mean().reset_index()
    print(f"primary comparison of {cfg['name']!r}: {primary['method']} students of {primary['recipe']} minus "
          f"{reference} teachers at checkpoint {epoch}, last-epoch test accuracy")
    print(sample_size.arithmetic(sample_size.variance_components(per_pair, "d_student_last_acc"), args.target),
          end="")
    return 0


def cmd_init_tracking(args) -> int:
    from soteacher.core import tracking

    experiment, uri = args.experiment, args.tracking_uri
    if args.config:
        from soteacher.study import config

        cfg = config.load(args.config, deep=False)
        experiment, uri = cfg["name"], uri or _tracking_uri(args, cfg)
    if not uri:
        print("error: --tracking-uri is needed with --experiment", file=sys.stderr)
        return 2
    exp = tracking.init_store(uri, experiment)
    print(f"MLflow store ready at {tracking.resolve_uri(uri)} (experiment {experiment!r}, id {exp})")
    if args.ui:
        print(f"its runs in the MLflow UI: {tracking.ui_url(args.ui, exp)}")
    return 0


def cmd_report_path(args) -> int:
    from soteacher.core import layout
    from soteacher.study import config

    print(layout.study_report(config.load(args.config, deep=False)["name"]))
    return 0


def cmd_link_study(args) -> int:
    from soteacher.study import config
    from soteacher.study import links as study_links

    if args.restore:
        study_links.restore()
    cfg = config.load(args.config, deep=False) if args.config else None
    if (args.teachers or args.students or args.dvc_commit) and cfg is None:
        print("error: --teachers, --students and --dvc-commit need --config", file=sys.stderr)
        return 2
    if cfg is not None and args.study is not None and cfg["name"] != args.study:
        print(f"error: {args.config} is study {cfg['name']!r}, not {args.study!r}: params.yaml's studies must be "
              "keyed by each config's name", file=sys.stderr)
        return 2
    for part, wanted in (("teachers", args.teachers), ("students", args.students)):
        if wanted:
            study_links.link(cfg, part)
    if args.dvc_commit:
        study_links.dvc_record(cfg, args.config)
    return 0


def cmd_rekey(args) -> int:
    import subprocess

    from soteacher.report.registry import outputs
    from soteacher.study import config, rekey

    cfg = config.load(args.config, deep=False)
    counts = rekey.rekey(cfg, args.config, dry_run=args.dry_run)
    print(f"{args.config}: " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + (" (dry run: nothing moved)" if args.dry_run else ""))
    tables = [str(o.path) for o in outputs(cfg["name"]).values() if o.path.is_file()]
    if counts["moved"] and not args.dry_run and tables:
        # Snakemake recorded the tables' inputs under the old names: that record would re-run the aggregation
        out = subprocess.run([_snakemake(), "--cleanup-metadata", *tables, "--configfile", args.config,
                              "--cores", "1", "--quiet"], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"warning: `snakemake --cleanup-metadata` of the study's tables failed; `make run` re-makes "
                  f"them once:\n{out.stderr[-2000:]}", file=sys.stderr)
    return 0


def _snakemake() -> str:
    """The snakemake beside this interpreter (the venv's, as `make run` calls it), else the one on PATH."""
    beside = Path(sys.executable).parent / "snakemake"
    return str(beside) if beside.is_file() else "snakemake"


def cmd_unlock_if_stale(args) -> int:
    from soteacher.core import locks

    return locks.unlock_if_stale(Path(args.directory), args.snakemake_args, args.snakemake or _snakemake())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m soteacher", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-config", help="validate a config file against the schema and the zoo")
    p.add_argument("config")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("plan", help="count a study's jobs per rule and estimate its compute time (also written to "
                       "results/studies/<name>/plan.txt)")
    p.add_argument("config")
    p.add_argument("--measure", action="store_true",
                   help="time a few training steps of each architecture on this device instead of the built-in table")
    p.add_argument("--device", choices=["cpu", "cuda"], help="device for --measure (default: cuda when available)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per architecture for --measure")
    p.add_argument("--header", action="store_true", help="also print the one-line summary presets carry on top")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("list", help="list registered KD methods and architectures")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("prepare-data", help="generate or verify the data set and write its manifest")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", help="config YAML file")
    group.add_argument("--spec", type=_spec, help="job spec JSON (as Snakemake passes it) or @file")
    p.set_defaults(func=cmd_prepare_data)

    for name, func, what in (("train-teacher", cmd_train_teacher, "train one teacher"),
                             ("distill", cmd_distill, "distil one teacher checkpoint into students"),
                             ("import-teacher", cmd_import_teacher,
                              "import a published teacher checkpoint (teacher.imports) as a teacher")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--spec", type=_spec, required=True, help="job spec JSON (as Snakemake passes it) or @file")
        p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, then the spec)")
        p.add_argument("--experiment", default="soteacher",
                       help="MLflow experiment of the job's runs: the study that ran it (jobs are shared by studies)")
        p.set_defaults(func=func)

    p = sub.add_parser("convert-checkpoint",
                       help="rewrite a trusted checkpoint holding pickled objects so weights_only=True loads it")
    p.add_argument("src", help="checkpoint file (unpickled with weights_only=False: trusted files only)")
    p.add_argument("dst", help="output file: 'model' state dict, 'epoch' and accuracy as plain numbers")
    p.add_argument("--trust-source", action="store_true", help="confirm that you trust the source file")
    p.set_defaults(func=cmd_convert_checkpoint)

    p = sub.add_parser("aggregate", help="build tables and figures from finished runs")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", help="config YAML file")
    group.add_argument("--spec", type=_spec, help="validated config JSON (as Snakemake passes it) or @file")
    p.add_argument("--allow-partial", action="store_true", help="build tables from the runs present, marked PARTIAL")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("headline", help="print a study's primary comparison in words and where its tables are")
    p.add_argument("--config", required=True, help="config YAML file")
    p.set_defaults(func=cmd_headline)

    p = sub.add_parser("sample-size", help="from a finished pilot study: σ_T, σ_S of its primary comparison and the "
                                          "teacher seeds a study needs for a target 95 %% half-width")
    p.add_argument("--config", required=True, help="the pilot's config YAML file")
    p.add_argument("--target", type=float, default=0.5, help="the 95 %% half-width to reach, pp (default 0.5)")
    p.set_defaults(func=cmd_sample_size)

    p = sub.add_parser("report-path", help="where a study's Snakemake HTML report goes (make report)")
    p.add_argument("config")
    p.set_defaults(func=cmd_report_path)

    p = sub.add_parser("link-study", help="link the shared results a study used into results/studies/<name>/ (its "
                       "DVC outputs), or restore the shared folders from those links")
    p.add_argument("--config", help="the study's config file")
    p.add_argument("--study", help="the name the study is listed under (params.yaml); must be the config's name")
    p.add_argument("--restore", action="store_true", help="first re-create missing shared files from any study's links")
    p.add_argument("--teachers", action="store_true", help="link the study's data set and teachers")
    p.add_argument("--students", action="store_true", help="link the study's students and its metrics file")
    p.add_argument("--dvc-commit", action="store_true",
                   help="then record the study's DVC stages as done (dvc commit -f), when params.yaml lists it")
    p.set_defaults(func=cmd_link_study)

    p = sub.add_parser("init-tracking", help="create the MLflow store and experiment (jobs also do it, one at a time)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--experiment", help="experiment name (the config's name)")
    group.add_argument("--config", help="config YAML file: its name and tracking.uri")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (MLFLOW_TRACKING_URI overrides it); needed with "
                   "--experiment")
    p.add_argument("--ui", metavar="URL", help="also print the link to the experiment's runs in the UI at URL "
                   "(e.g. http://127.0.0.1:5000)")
    p.set_defaults(func=cmd_init_tracking)

    p = sub.add_parser("rekey", help="move a study's results named by an earlier release (results format 1) to their "
                       "names now, retag their MLflow runs and re-link the study: nothing is retrained")
    p.add_argument("config")
    p.add_argument("--dry-run", action="store_true", help="only say what would move")
    p.set_defaults(func=cmd_rekey)

    p = sub.add_parser("unlock-if-stale",
                       help="remove Snakemake's lock left by a killed run, when no Snakemake works in the directory",
                       usage="python -m soteacher unlock-if-stale [--directory DIR] [-- SNAKEMAKE_ARGS ...]")
    p.add_argument("--directory", default=".", help="the workflow directory (default: here)")
    p.add_argument("--snakemake", help="the snakemake command (default: the one beside this Python)")
    p.add_argument("snakemake_args", nargs="*", help="after --: the run's own options (--configfile ...), passed on "
                   "to `snakemake --unlock`")
    p.set_defaults(func=cmd_unlock_if_stale)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("alembic", "mlflow", "urllib3", "matplotlib", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from soteacher.core.errors import (
        CheckpointError,
        ConfigError,
        DataError,
        DeviceError,
        NonFiniteLossError,
        TrainingInterrupted,
    )

    try:
        if args.func in (cmd_train_teacher, cmd_distill, cmd_import_teacher):
            args.spec = _job_spec(args)
        if args.func in (cmd_train_teacher, cmd_distill):
            from soteacher.core.launch import run_ranks

            # a multi-rank job: this process starts the ranks (the same command line) and waits for them
            code = run_ranks(sys.argv[1:] if argv is None else argv, args.spec.compute)
            if code is not None:
                return code
        return args.func(args)
    except (ConfigError, DataError, DeviceError, CheckpointError, NonFiniteLossError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as err:
        print(f"interrupted: {err}; run the same job again to resume", file=sys.stderr)
        return 143
