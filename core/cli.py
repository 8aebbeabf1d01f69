"""The ``alignboard`` command line: a peer of the dashboard over the same core API.

Every command accepts ``--json`` and then prints exactly one JSON object on the last
line of stdout, so other tools can rely on it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from core.errors import AlignboardError


def _print(args: argparse.Namespace, payload: dict[str, Any], human: str) -> None:
    if args.json:
        print(json.dumps(payload, default=str))
    else:
        print(human)


def _cmd_seed_demo(args: argparse.Namespace) -> int:
    from core.demo_seed import seed_demo

    res = seed_demo(args.experiment)
    if res.already_seeded:
        human = f"Demo data already present in experiment {args.experiment!r}."
    else:
        human = (
            f"Seeded {args.experiment!r}: {res.traces_written} traces, "
            f"{res.labels_written} labels, queue {res.queue!r}."
        )
    _print(args, res.to_dict(), human)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from core.importer import import_file

    res = import_file(args.file, args.experiment, on_existing=args.on_existing)
    payload = {
        "experiment_id": res.experiment_id,
        "traces_written": res.traces_written,
        "labels_written": res.labels_written,
        "skipped": res.skipped,
        "seconds": round(res.seconds, 3),
    }
    human = (
        f"Imported {res.traces_written} traces and {res.labels_written} labels into "
        f"{args.experiment!r} in {res.seconds:.2f} s"
        + (f" ({res.skipped} already present, skipped)." if res.skipped else ".")
    )
    _print(args, payload, human)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from core.export import export_labels
    from core.store import get_experiment

    exp = get_experiment(args.experiment)
    fmt = args.format or ("csv" if str(args.file).endswith(".csv") else "jsonl")
    n = export_labels(
        exp.experiment_id,
        args.file,
        fmt=fmt,
        criterion=args.criterion,
        include_history=args.history,
    )
    _print(args, {"rows": n, "file": str(args.file), "format": fmt}, f"Wrote {n} rows to {args.file}.")
    return 0


def _cmd_criterion_create(args: argparse.Namespace) -> int:
    from core.criteria import create_criterion
    from core.store import get_or_create_experiment

    exp = get_or_create_experiment(args.experiment)
    instructions = args.instructions
    if args.instructions_file:
        with open(args.instructions_file, encoding="utf-8") as fh:
            instructions = fh.read()
    crit = create_criterion(
        exp.experiment_id,
        args.name,
        args.kind,
        instructions or "",
        options=args.options.split(",") if args.options else None,
        min_value=args.min,
        max_value=args.max,
    )
    _print(args, crit.to_dict(), f"Created criterion {crit.name!r} ({crit.kind}).")
    return 0


def _cmd_criterion_list(args: argparse.Namespace) -> int:
    from core.criteria import list_criteria
    from core.store import get_experiment

    crits = list_criteria(get_experiment(args.experiment).experiment_id)
    human = "\n".join(f"{c.name}\t{c.kind}" for c in crits) or "No criteria."
    _print(args, {"criteria": [c.to_dict() for c in crits]}, human)
    return 0


def _cmd_queue_create(args: argparse.Namespace) -> int:
    from core.queues import add_traces, create_queue
    from core.store import get_experiment
    from core.traces import all_trace_ids

    exp = get_experiment(args.experiment)
    q = create_queue(exp.experiment_id, args.name, args.criterion, args.reviewer or [])
    n = add_traces(q, all_trace_ids(exp.experiment_id)) if args.all_traces else 0
    _print(args, {**q.to_dict(), "items": n}, f"Created queue {q.name!r} with {n} traces.")
    return 0


def _cmd_queue_add(args: argparse.Namespace) -> int:
    from core.queues import add_traces, get_queue
    from core.store import get_experiment

    q = get_queue(get_experiment(args.experiment).experiment_id, args.name)
    n = add_traces(q, args.trace_id)
    _print(args, {"queue": q.name, "added": n}, f"Added {n} traces to {q.name!r}.")
    return 0


def _cmd_queue_progress(args: argparse.Namespace) -> int:
    from core.queues import get_queue, reviewer_progress
    from core.store import get_experiment

    q = get_queue(get_experiment(args.experiment).experiment_id, args.name)
    prog = reviewer_progress(q)
    human = "\n".join(f"{p.reviewer}\t{p.done}/{p.total}" for p in prog) or "No reviewers."
    payload = {"queue": q.name, "progress": [{"reviewer": p.reviewer, "done": p.done, "total": p.total} for p in prog]}
    _print(args, payload, human)
    return 0


def _cmd_queue_list(args: argparse.Namespace) -> int:
    from core.queues import list_queues
    from core.store import get_experiment

    qs = list_queues(get_experiment(args.experiment).experiment_id, reviewer=args.reviewer)
    human = "\n".join(f"{q.name}\t{','.join(q.reviewers)}\t{','.join(q.criteria)}" for q in qs)
    _print(args, {"queues": [q.to_dict() for q in qs]}, human or "No queues.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``alignboard`` command."""
    from core.demo_seed import DEMO_EXPERIMENT

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object")

    parser = argparse.ArgumentParser(
        prog="alignboard",
        description="Label LLM traces, align LLM judges, compare versions (on MLflow).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str, parent=sub):
        p = parent.add_parser(name, help=help_, parents=[common])
        p.set_defaults(func=fn)
        return p

    p = add("seed-demo", _cmd_seed_demo, "load the demo data (idempotent)")
    p.add_argument("--experiment", default=DEMO_EXPERIMENT)

    p = add("import", _cmd_import, "import traces (JSONL or CSV), all-or-nothing")
    p.add_argument("file")
    p.add_argument("--experiment", required=True)
    p.add_argument("--on-existing", choices=["error", "skip"], default="error")

    p = add("export", _cmd_export, "export labels to CSV or JSONL")
    p.add_argument("file")
    p.add_argument("--experiment", required=True)
    p.add_argument("--format", choices=["csv", "jsonl"])
    p.add_argument("--criterion")
    p.add_argument("--history", action="store_true", help="include overridden labels")

    crit = sub.add_parser("criterion", help="label criteria (MLflow label schemas)")
    csub = crit.add_subparsers(dest="action", required=True)
    p = add("create", _cmd_criterion_create, "create a criterion", csub)
    p.add_argument("name")
    p.add_argument("--experiment", required=True)
    p.add_argument("--kind", choices=["pass_fail", "categorical", "numeric"], default="pass_fail")
    p.add_argument("--instructions", help="judge instructions with {{ inputs }} / {{ outputs }}")
    p.add_argument("--instructions-file")
    p.add_argument("--options", help="comma-separated categories")
    p.add_argument("--min", type=float)
    p.add_argument("--max", type=float)
    p = add("list", _cmd_criterion_list, "list criteria", csub)
    p.add_argument("--experiment", required=True)

    queue = sub.add_parser("queue", help="review queues")
    qsub = queue.add_subparsers(dest="action", required=True)
    p = add("create", _cmd_queue_create, "create a queue", qsub)
    p.add_argument("name")
    p.add_argument("--experiment", required=True)
    p.add_argument("--criterion", action="append", required=True)
    p.add_argument("--reviewer", action="append")
    p.add_argument("--all-traces", action="store_true", help="attach every trace")
    p = add("add", _cmd_queue_add, "attach traces", qsub)
    p.add_argument("name")
    p.add_argument("trace_id", nargs="+")
    p.add_argument("--experiment", required=True)
    p = add("progress", _cmd_queue_progress, "progress per reviewer", qsub)
    p.add_argument("name")
    p.add_argument("--experiment", required=True)
    p = add("list", _cmd_queue_list, "list queues", qsub)
    p.add_argument("--experiment", required=True)
    p.add_argument("--reviewer")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``alignboard`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    from core import config
    from core.models.secrets import install_log_redaction

    config.configure()
    install_log_redaction()
    try:
        return args.func(args)
    except AlignboardError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
