"""``crosstask`` command line: a thin layer over :mod:`crosstask.api`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import CrosstaskError


def _run(args) -> None:
    from . import api

    if args.dry_run:
        print(api.dry_run(args.experiment, device=args.device, backend=args.backend, seeds=args.seeds,
                          data_dir=args.data_dir))
        print("dry run: the settings, data and model check out; nothing was trained, evaluated or written")
        return
    report = api.run(args.experiment, out_dir=args.out, progress=not args.quiet, executor=args.executor,
                     device=args.device, backend=args.backend, address=args.address, replace=args.replace,
                     seeds=args.seeds, data_dir=args.data_dir)
    print(f"report: {report}")
    from .pipeline import stored_learning_check

    check = stored_learning_check(report.parent)
    if check:
        print(check)


def _report(args) -> None:
    from . import api

    print(f"report: {api.report(args.run_dir)}")


def _analyze(args) -> None:
    from . import api

    print(f"report: {api.analyze(args.run_dir, only=args.only, progress=not args.quiet)}")


def _heads(args) -> None:
    from . import api

    result = api.heads(args.run_dir, models=args.model, tasks=args.task, n_items=args.items or None,
                       batch_size=args.batch_size, mode=args.mode, normalize=args.normalize,
                       complex_task=args.complex, basics=args.basics, dynamics=args.dynamics, every=args.every,
                       progress=not args.quiet, executor=args.executor, device=args.device, address=args.address)
    if isinstance(result, Path):
        print(f"report: {result}")
    else:
        print(result[["model", "task", "items", "npy", "computed"]].to_string(index=False))


def _predict(args) -> None:
    import yaml

    from . import api

    source = yaml.safe_load(args.source) if args.source.lstrip().startswith("{") else args.source
    table = api.predict(args.run_dir, source)
    print(f"predicted gain over the base model of an adapter trained on {args.source}, best first:")
    print(table.to_string(index=False, float_format=lambda value: f"{value:+.3f}"))


def _export_lm_eval(args) -> None:
    from . import api

    out = api.export_lm_eval(args.run_dir, args.out)
    print(f"lm-eval tasks: {out}; re-score every model with: bash {out / 'commands.sh'}")


def _mix(args) -> None:
    from . import api

    outcome = api.mix(args.experiment, out_dir=args.out, progress=not args.quiet, executor=args.executor,
                      device=args.device, address=args.address)
    overall = outcome.table[outcome.table["seed"] == "all"]
    print(overall.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    print(outcome.reading)
    print(f"tables: {outcome.out_dir / 'mixing.csv'}, {outcome.out_dir / 'alpha.csv'}; figure: {outcome.figure.path}")


def _tasks(args) -> None:
    from . import api
    from .tasks.data import data_dir_of

    data_dir = data_dir_of(args.data_dir)
    families = api.tasks()
    catalogue = [family for family in families if family.about]
    for heading, group in (("Built-in tasks (generated offline)", [f for f in families if not f.about]),
                           ("Catalogue of real datasets (Hugging Face, or a local copy: --data-dir / "
                            "CROSSTASK_DATA_DIR)", catalogue)):
        print(f"# {heading}\n")
        for family in group:
            _describe_task(api, family, data_dir)


def _describe_task(api, family, data_dir) -> None:
    from .tasks.real import availability

    spec, about = family.spec, family.about
    labels = f" labels: {', '.join(spec.labels)}" if spec.labels else ""
    print(f"== {spec.name} ({spec.answer_type}){labels}")
    if spec.description:
        print(f"   {spec.description}")
    options = family.options_model.model_fields
    if options:
        print("   options: " + ", ".join(f"{name}={field.default!r}" for name, field in options.items()))
    if about:
        data = family.data
        config = f" ({data['hf_config']})" if data.get("hf_config") else ""
        role = "" if about["in_paper"] else "; not one of paper 1's datasets"
        print(f"   dataset: {about['dataset']}{role}; {about['reference']}")
        print(f"   source: {data.get('hf_dataset', data.get('path'))}{config}, train split "
              f"{data.get('train_split', 'train')}, eval split {data.get('eval_split', 'test')}"
              f"{', pool of ' + format(data['pool'], ',') + ' records' if data.get('pool') else ''}; "
              f"licence: {about['license']}")
        if about["notes"]:
            print(f"   note: {about['notes']}")
        where = availability(family, data_dir)
        print(f"   offline: {where}")
        if where.startswith("not available"):
            print()
            return
    try:
        example = api.sample(spec.name, 1, split="eval" if about else "train", data_dir=data_dir)[0]
    except CrosstaskError as error:  # a local copy whose fields differ: say so, and go on listing
        print(f"   cannot read it: {error}\n")
        return
    print("   " + (spec.prompt(example) + spec.completion(example)).replace("\n", "\n   "))
    print()


def _where_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--executor", choices=["local", "ray"],
                         help="where jobs run (default: the YAML's, else local)")
    command.add_argument("--address", help="Ray cluster to join: auto or ray://host:10001 "
                                              "(default: start a local instance)")
    command.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the YAML's, else auto)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crosstask", description=__doc__.split(":")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="train every source adapter, evaluate every model on every target, report")
    run.add_argument("experiment", help="experiment YAML file")
    run.add_argument("--out", default=None, help="run directory (default: runs/<name>); an existing one is resumed")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--dry-run", action="store_true",
                     help="check the settings, data and model and list the jobs, without running or writing anything")
    run.add_argument("--replace", action="store_true",
                     help="discard the results of another experiment in --out (refused without it)")
    run.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                     help="training seeds: one adapter per source and seed (default: the YAML's)")
    run.add_argument("--backend", help="model backend for evaluation: hf or vllm (default: the YAML's, else hf)")
    run.add_argument("--data-dir", help="where local copies of datasets are (default: the YAML's data_dir, "
                                        "else CROSSTASK_DATA_DIR)")
    _where_options(run)
    run.set_defaults(handler=_run)

    report = commands.add_parser("report", help="rebuild matrix.csv, traits.json and report.html from a run's store")
    report.add_argument("run_dir")
    report.set_defaults(handler=_report)

    from .analysis.suite import list_analyses

    analyze = commands.add_parser("analyze", help="explain a finished run: lengths, labels, similarity, syntax, "
                                                  "asymmetry, prediction (tables and plots in RUN_DIR/analysis/)")
    analyze.add_argument("run_dir")
    analyze.add_argument("--only", nargs="+", metavar="NAME", choices=list_analyses(),
                         help=f"run only these analyses: {', '.join(list_analyses())}")
    analyze.add_argument("--quiet", action="store_true", help="no progress messages")
    analyze.set_defaults(handler=_analyze)

    heads = commands.add_parser("heads", help="attention-head activation patterns of every model x target of a run "
                                              "(RUN_DIR/heads/) and their report section")
    heads.add_argument("run_dir")
    heads.add_argument("--model", nargs="+", help="only these models ('base' or adapter names); no report section")
    heads.add_argument("--task", nargs="+", help="only these targets; no report section")
    heads.add_argument("--items", type=int, default=32, help="items per target (0: all; default 32)")
    heads.add_argument("--batch-size", type=int, default=8, help="items per forward and backward pass (default 8)")
    heads.add_argument("--mode", choices=["abs", "signed"], default="abs",
                       help="abs: mean |g dL/dg| per item (Michel et al., default); signed: paper 2's signed mean")
    heads.add_argument("--normalize", choices=["layer"], default=None, help="divide each layer by its L2 norm")
    heads.add_argument("--complex", help="a source whose pattern change is explained by --basics (combination)")
    heads.add_argument("--basics", nargs="+", help="basic sources for --complex (default: every other source)")
    heads.add_argument("--dynamics", metavar="SOURCE",
                       help="retrain this source's adapter with a pattern snapshot on its own task every --every steps")
    heads.add_argument("--every", type=int, default=5, help="optimizer steps between dynamics snapshots (default 5)")
    heads.add_argument("--quiet", action="store_true", help="no progress bars")
    _where_options(heads)
    heads.set_defaults(handler=_heads)

    predict = commands.add_parser("predict", help="rank a run's targets for a source that was never trained, "
                                                  "from its data alone")
    predict.add_argument("run_dir")
    predict.add_argument("--source", required=True,
                         help="a task name, or a source entry in YAML flow style: '{task: nli, options: {...}}'")
    predict.set_defaults(handler=_predict)

    export = commands.add_parser("export-lm-eval", help="write a run's targets as lm-evaluation-harness tasks "
                                                        "(the exact prompts and items scored) to re-score its models")
    export.add_argument("run_dir")
    export.add_argument("--out", required=True, help="folder for the task YAML/JSONL files and commands.sh")
    export.set_defaults(handler=_export_lm_eval)

    mix = commands.add_parser("mix", help="pattern-guided data mixing for a scarce complex task: warm up on basic "
                                          "tasks in proportion to head-pattern weights, compare with plain SFT")
    mix.add_argument("experiment", help="mixing study YAML file (see experiments/paper2_mixing.yaml)")
    mix.add_argument("--out", default=None, help="output directory (default: runs/<name>); an existing one is resumed")
    mix.add_argument("--quiet", action="store_true", help="no progress bars")
    _where_options(mix)
    mix.set_defaults(handler=_mix)

    tasks = commands.add_parser("tasks", help="list the registered tasks and the catalogue of real datasets, "
                                               "with one rendered example each where the data are at hand")
    tasks.add_argument("--data-dir", help="where local copies of datasets are (default: CROSSTASK_DATA_DIR)")
    tasks.set_defaults(handler=_tasks)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except KeyboardInterrupt:
        print("crosstask: interrupted; finished work is kept, run the same command again to resume", file=sys.stderr)
        return 130
    except CrosstaskError as error:
        if os.environ.get("CROSSTASK_DEBUG"):
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"crosstask: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
