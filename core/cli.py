"""The ``alignboard`` command line: a peer of the dashboard over the same core API.

Every command accepts ``--json`` and then prints exactly one JSON object on the last
line of stdout, so other tools can rely on it.

Only the standard library is imported at module level: ``alignboard --help`` loads no
MLflow, and each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal


def _print(args: argparse.Namespace, payload: dict[str, Any], human: str) -> None:
    if args.json:
        print(json.dumps(payload, default=str))
    else:
        print(human)


def _cmd_seed_demo(args: argparse.Namespace) -> int:
    from core.io.demo_seed import AGENT_EXPERIMENT, DEMO_EXPERIMENT, LARGE_EXPERIMENT, seed_demo

    large = bool(getattr(args, "large", False))
    experiment = args.experiment or (LARGE_EXPERIMENT if large else DEMO_EXPERIMENT)
    res = seed_demo(experiment, large=large)
    if res.already_seeded:
        human = f"Demo data already present in experiment {experiment!r}."
    else:
        human = (
            f"Seeded {experiment!r}: {res.traces_written} traces, "
            f"{res.labels_written} labels, queue {res.queue!r}."
        )
        if res.prompt_name:
            human += (
                f" Application prompt {res.prompt_name!r} v{res.prompt_version}"
                f" (alias production), evaluation dataset {res.dataset_name!r}"
                f" ({res.dataset_rows_written} rows)."
            )
        if res.agent_traces_written:
            human += (
                f" Agent demo: {res.agent_traces_written} traces with spans and "
                f"{res.agent_labels_written} labels in experiment {AGENT_EXPERIMENT!r}."
            )
    _print(args, res.to_dict(), human)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from core.io.importer import import_file

    if args.reviewers and not args.queue:
        from core.errors import ValidationError

        raise ValidationError("--reviewers goes with --queue Q. Nothing was written.")
    res = import_file(
        args.file,
        args.experiment,
        on_existing=args.on_existing,
        create_criteria=args.create_criteria,
        queue=args.queue,
        reviewers=_import_names(args.reviewers),
        queue_criteria=_import_names(args.queue_criteria),
    )
    payload = {
        "experiment_id": res.experiment_id,
        "traces_written": res.traces_written,
        "labels_written": res.labels_written,
        "skipped": res.skipped,
        "seconds": round(res.seconds, 3),
        "criteria_created": list(res.criteria_created),
        "queue": res.queue,
        "queued": res.queued,
    }
    human = (
        f"Imported {res.traces_written} traces and {res.labels_written} labels into "
        f"{args.experiment!r} in {res.seconds:.2f} s"
        + (f" ({res.skipped} already present, skipped)." if res.skipped else ".")
        + (
            f" Created criteria: {', '.join(res.criteria_created)} (edit their "
            "instructions: alignboard criterion edit)."
            if res.criteria_created
            else ""
        )
        + (
            f" {'Created queue' if res.queue_created else 'Queue'} {res.queue!r}: "
            f"{res.queued} traces attached."
            if res.queue
            else ""
        )
    )
    _print(args, payload, human)
    return 0


def _import_names(text: str | None) -> list[str]:
    """A comma-separated list of names (``alice,bob``), without blanks."""
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _cmd_export(args: argparse.Namespace) -> int:
    from core.errors import ValidationError
    from core.store.experiments import get_experiment

    exp = get_experiment(args.experiment)
    if args.format == "mlflow-dataset":
        return _export_dataset(args, exp.experiment_id)
    if args.dataset:
        raise ValidationError("--dataset goes with --format mlflow-dataset.")
    if not args.file:
        raise ValidationError("Name the file to write (alignboard export FILE ...).")
    from core.io.export import export_labels

    fmt: Literal["csv", "jsonl"] = args.format or (
        "csv" if str(args.file).endswith(".csv") else "jsonl"
    )
    n = export_labels(
        exp.experiment_id,
        args.file,
        fmt=fmt,
        criterion=args.criterion,
        include_history=args.history,
    )
    _print(
        args, {"rows": n, "file": str(args.file), "format": fmt}, f"Wrote {n} rows to {args.file}."
    )
    return 0


def _export_dataset(args: argparse.Namespace, experiment_id: str) -> int:
    from core.errors import ValidationError
    from core.io.export import export_eval_dataset
    from core.labeling.consolidation import consolidate
    from core.labeling.criteria import get_criterion
    from core.labeling.labels import current_labels

    if args.file:
        raise ValidationError(
            "--format mlflow-dataset writes to the store, not a file: drop FILE and name the "
            "dataset with --dataset NAME."
        )
    if not args.dataset:
        raise ValidationError("Name the evaluation dataset: --dataset NAME.")
    if not args.criterion:
        raise ValidationError(
            "Name the criterion whose labels become expectations: --criterion NAME."
        )
    if args.history:
        raise ValidationError("--history does not apply to --format mlflow-dataset.")
    criterion = get_criterion(experiment_id, args.criterion)  # names what exists
    chosen = consolidate(current_labels(experiment_id, criterion.name, gold=True))
    res = export_eval_dataset(experiment_id, criterion.name, args.dataset, chosen)
    payload = {**res.to_dict(), "format": "mlflow-dataset", "criterion": criterion.name}
    human = (
        f"{'Created' if res.created else 'Updated'} evaluation dataset {res.name!r} "
        f"({res.dataset_id}): {res.records} records of {criterion.name!r} labels."
    )
    if res.duplicates:
        human += f" {len(res.duplicates)} trace(s) with the same inputs as another were left out."
    _print(args, payload, human)
    return 0


def _cmd_criterion_create(args: argparse.Namespace) -> int:
    from core.labeling.criteria import create_criterion
    from core.store.experiments import get_or_create_experiment

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
        positive_label=args.positive_label,
        negative_label=args.negative_label,
    )
    _print(args, crit.to_dict(), f"Created criterion {crit.name!r} ({crit.kind}).")
    return 0


def _cmd_criterion_edit(args: argparse.Namespace) -> int:
    from core.labeling.criteria import KEEP, update_criterion
    from core.store.experiments import get_experiment

    exp = get_experiment(args.experiment)
    instructions = args.instructions
    if args.instructions_file:
        with open(args.instructions_file, encoding="utf-8") as fh:
            instructions = fh.read()
    crit = update_criterion(
        exp.experiment_id,
        args.name,
        kind=args.kind,
        instructions=instructions,
        options=args.options.split(",") if args.options else None,
        min_value=None if args.no_min else (KEEP if args.min is None else args.min),
        max_value=None if args.no_max else (KEEP if args.max is None else args.max),
        positive_label=args.positive_label,
        negative_label=args.negative_label,
    )
    _print(args, crit.to_dict(), f"Updated criterion {crit.name!r} ({crit.kind}).")
    return 0


def _cmd_criterion_rules(args: argparse.Namespace) -> int:
    from core.labeling.criteria import get_criterion
    from core.labeling.rules import POLICY_TEXT, criterion_rules, set_criterion_rules
    from core.store.experiments import get_experiment

    eid = get_experiment(args.experiment).experiment_id
    get_criterion(eid, args.name)  # names what exists
    changed = args.rationale is not None or args.blind is not None
    changed = changed or args.min_kappa is not None or args.no_min_kappa
    if changed:
        rules = set_criterion_rules(
            eid,
            args.name,
            rationale_policy=args.rationale,
            blind=args.blind,
            min_reviewer_kappa=None
            if args.no_min_kappa
            else ("keep" if args.min_kappa is None else args.min_kappa),
        )
    else:
        rules = criterion_rules(eid, args.name)
    kappa = "none" if rules.min_reviewer_kappa is None else f"{rules.min_reviewer_kappa:g}"
    human = (
        f"{args.name}: rationale {POLICY_TEXT[rules.rationale_policy]}; "
        f"{'blind' if rules.blind else 'not blind'}; minimum reviewer kappa {kappa}"
    )
    _print(args, {"criterion": args.name, **rules.to_dict()}, human)
    return 0


def _cmd_criterion_list(args: argparse.Namespace) -> int:
    from core.labeling.criteria import list_criteria
    from core.store.experiments import get_experiment

    crits = list_criteria(get_experiment(args.experiment).experiment_id)
    human = "\n".join(f"{c.name}\t{c.kind}" for c in crits) or "No criteria."
    _print(args, {"criteria": [c.to_dict() for c in crits]}, human)
    return 0


def _cmd_queue_create(args: argparse.Namespace) -> int:
    from core.labeling.queues import (
        TraceFilter,
        add_traces,
        create_queue,
        create_queue_from_filter,
    )
    from core.labeling.traces import all_trace_ids
    from core.store.experiments import get_experiment

    exp = get_experiment(args.experiment)
    flt = None
    if args.unlabeled:
        flt = TraceFilter("unlabeled", criterion=args.unlabeled)
    elif args.text:
        flt = TraceFilter("text", text=args.text)
    elif args.tag:
        flt = TraceFilter("tag", text=args.tag)
    elif args.trace_id:
        flt = TraceFilter("ids", trace_ids=tuple(args.trace_id))
    if flt is None:
        # --all-traces (or none): every trace there is now, possibly none yet.
        q = create_queue(exp.experiment_id, args.name, args.criterion, args.reviewer or [])
        n = add_traces(q, all_trace_ids(exp.experiment_id)) if args.all_traces else 0
    else:
        q, n = create_queue_from_filter(
            exp.experiment_id, args.name, args.criterion, args.reviewer or [], flt
        )
    _print(args, {**q.to_dict(), "items": n}, f"Created queue {q.name!r} with {n} traces.")
    return 0


def _cmd_queue_remove(args: argparse.Namespace) -> int:
    from core.labeling.queues import get_queue, remove_traces
    from core.store.experiments import get_experiment

    q = get_queue(get_experiment(args.experiment).experiment_id, args.name)
    n = remove_traces(q, args.trace_id)
    _print(args, {"queue": q.name, "removed": n}, f"Removed {n} traces from {q.name!r}.")
    return 0


def _cmd_queue_assign(args: argparse.Namespace) -> int:
    from core.labeling.queues import get_queue, update_reviewers
    from core.store.experiments import get_experiment

    q = get_queue(get_experiment(args.experiment).experiment_id, args.name)
    q = update_reviewers(q, add=args.add or [], remove=args.remove or [])
    _print(
        args,
        {"queue": q.name, "reviewers": list(q.reviewers)},
        f"Reviewers of {q.name!r}: {', '.join(q.reviewers)}.",
    )
    return 0


def _cmd_queue_rules(args: argparse.Namespace) -> int:
    from core.labeling.queues import get_queue
    from core.labeling.rules import queue_rules, set_queue_rules
    from core.store.experiments import get_experiment
    from core.views.setup import queue_rules_text

    eid = get_experiment(args.experiment).experiment_id
    q = get_queue(eid, args.name)  # names what exists
    over = queue_rules(eid, q.name)
    if args.rationale is not None or args.blind is not None:
        policy = over.rationale_policy if args.rationale is None else args.rationale
        blind = over.blind if args.blind is None else {"on": True, "off": False}.get(args.blind)
        over = set_queue_rules(
            eid,
            q.name,
            rationale_policy=None if policy == "criterion" else policy,
            blind=blind,
        )
    _print(args, {"queue": q.name, **over.to_dict()}, f"{q.name}: {queue_rules_text(over)}")
    return 0


def _cmd_queue_sync(args: argparse.Namespace) -> int:
    from core.labeling.queues import get_queue, queue_items, sync_done
    from core.store.experiments import get_experiment

    q = get_queue(get_experiment(args.experiment).experiment_id, args.name)
    complete = sync_done(q)
    total = len(queue_items(q))
    _print(
        args,
        {"queue": q.name, "complete": complete, "items": total},
        f"{complete} of {total} items of {q.name!r} are complete in MLflow.",
    )
    return 0


def _cmd_queue_add(args: argparse.Namespace) -> int:
    from core.labeling.queues import add_traces, get_queue
    from core.store.experiments import get_experiment

    q = get_queue(get_experiment(args.experiment).experiment_id, args.name)
    n = add_traces(q, args.trace_id)
    _print(args, {"queue": q.name, "added": n}, f"Added {n} traces to {q.name!r}.")
    return 0


def _cmd_queue_progress(args: argparse.Namespace) -> int:
    from core.labeling.queues import get_queue
    from core.store.experiments import get_experiment
    from core.views.setup import queue_progress

    q = get_queue(get_experiment(args.experiment).experiment_id, args.name)
    prog = queue_progress(q)
    lines = [f"{r.reviewer}\t{r.done}/{r.total}\tflagged {r.flagged}" for r in prog.reviewers]
    lines.append(f"complete in MLflow {prog.complete}/{prog.items}\tflagged traces {prog.flagged}")
    payload = {
        "queue": q.name,
        "items": prog.items,
        "complete": prog.complete,
        "flagged": prog.flagged,
        "progress": [
            {"reviewer": r.reviewer, "done": r.done, "total": r.total, "flagged": r.flagged}
            for r in prog.reviewers
        ],
    }
    _print(args, payload, "\n".join(lines))
    return 0


def _cmd_queue_list(args: argparse.Namespace) -> int:
    from core.labeling.queues import list_queues
    from core.store.experiments import get_experiment

    qs = list_queues(get_experiment(args.experiment).experiment_id, reviewer=args.reviewer)
    human = "\n".join(f"{q.name}\t{','.join(q.reviewers)}\t{','.join(q.criteria)}" for q in qs)
    _print(args, {"queues": [q.to_dict() for q in qs]}, human or "No queues.")
    return 0


def _align_settings(args: argparse.Namespace):
    from core.errors import ValidationError
    from core.labeling.criteria import get_criterion
    from core.optimization.settings import build_settings
    from core.store.experiments import get_experiment

    missing = [
        flag
        for flag, value in (
            ("--experiment", args.experiment),
            ("--judge", args.judge),
            ("--optimizer", args.optimizer),
            ("--model", args.model),
            ("--reflection-model", args.reflection_model),
        )
        if not value
    ]
    if missing:
        raise ValidationError(
            f"alignboard align needs {', '.join(missing)}. "
            "Example: alignboard align --experiment alignboard-demo --judge support_quality "
            "--optimizer gepa --model demo:/judge --reflection-model demo:/reflect"
        )
    exp = get_experiment(args.experiment)
    crit = get_criterion(exp.experiment_id, args.judge)
    instructions = None  # the criterion's template, as the Align page starts from
    if args.instructions_file:
        with open(args.instructions_file, encoding="utf-8") as fh:
            instructions = fh.read()
    return build_settings(
        exp.experiment_id,
        crit,
        optimizer=args.optimizer,
        instructions=instructions,
        model=args.model,
        reflection_model=args.reflection_model,
        base_url=args.base_url,
        reflection_base_url=args.reflection_base_url,
        embedding_model=args.embedding_model,
        embedding_base_url=args.embedding_base_url,
        max_metric_calls=args.max_metric_calls,
        workers=args.workers,
        seed=args.seed,
        minibatch_size=args.minibatch_size,
        proposals_in_flight=args.proposals_in_flight,
        retrieval_k=args.retrieval_k,
        reviewers=args.reviewer or (),
        register_if_worse=args.register_worse,
        register_if_cancelled=args.register_if_cancelled,
        kappa_override_reason=args.override_kappa,
        kappa_override_by=(args.override_by or _os_user()) if args.override_kappa else None,
        stop=_stop_policy(args),
    )


def _stop_policy(args: argparse.Namespace, score_flag: bool = False):
    """The early-stop flags (:func:`_add_stop_flags`; with ``score_flag``, optimize's
    ``--stop-at-score`` too) as a :class:`core.optimization.stopping.StopPolicy`."""
    from core.optimization.stopping import make_policy

    at_score = _stop_score(args.stop_at_score) if score_flag else None
    return make_policy(
        early_stop=not args.no_early_stop,
        # ``--stop-at-score off`` turns the score stop off as --no-stop-at-perfect does.
        at_perfect=args.stop_at_perfect and (not score_flag or at_score is not None),
        at_score=at_score if args.stop_at_perfect else None,
        patience=args.patience,
        max_minutes=args.max_minutes,
        max_cost_usd=args.max_cost,
    )


def _add_stop_flags(p: argparse.ArgumentParser) -> None:
    """``--stop-at-perfect``, ``--patience``, ``--max-minutes``, ``--max-cost`` and
    ``--no-early-stop``: when the gepa search stops before its budget is spent."""
    from core.optimization.stopping import DEFAULT_PATIENCE

    g = p.add_argument_group(
        "early stop (gepa only)",
        "checked between iterations; the run records why it stopped",
    )
    g.add_argument(
        "--stop-at-perfect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stop once a candidate scores 1.0 on the whole validation set (default: on)",
    )
    g.add_argument(
        "--patience",
        type=int,
        default=DEFAULT_PATIENCE,
        metavar="N",
        help=f"stop after N candidate proposals (one per iteration unless several are in flight) "
        f"without improvement of the best validation score (default {DEFAULT_PATIENCE}; 0: off)",
    )
    g.add_argument(
        "--max-minutes", type=float, metavar="M", help="stop after M minutes (default: none)"
    )
    g.add_argument(
        "--max-cost",
        type=float,
        metavar="USD",
        help="stop once priced model calls cost USD (default: none; unpriced models never do)",
    )
    g.add_argument(
        "--no-early-stop",
        action="store_true",
        help="turn every early stop off: spend the whole budget (a cancel still stops it)",
    )


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return ""


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _print_result(args: argparse.Namespace, res: Any) -> int:
    d = res.to_dict()
    if d.get("kind") == "prompt":
        return _print_prompt_result(args, d)
    if "n_scored" in d:
        return _print_score_result(args, d)
    pct = _pct

    registered = (
        f"-> version {d['judge_version']}" if d.get("registered") else "-> nothing registered"
    )
    human = (
        f"Run {d['run_id']} {d['status']}: {d['optimizer']} aligned {d['judge_name']!r} "
        f"{registered}. Test accuracy {pct(d['test_accuracy_before'])} -> "
        f"{pct(d['test_accuracy_after'])} on {d['test_size']} held-out traces "
        f"({d['metric_calls']} metric calls, {d['llm_calls']} LLM calls, "
        f"{d['wall_seconds']:.1f} s)."
    )
    if d.get("verdict_text"):
        human += f"\n{d['verdict_text']}"
    human += _stop_text(d)
    human += _cancelled_line(d)
    _print(args, d, human)
    return 0


def _stop_text(d: dict[str, Any]) -> str:
    """Why the search stopped (``Stopped early: ...``), for a run that says; else empty."""
    from core.optimization.stopping import stop_line

    line = stop_line(d)
    return f"\n{line}" if line and d.get("stop_reason") != "cancelled" else ""


def _cancelled_line(d: dict[str, Any]) -> str:
    """For a cancelled run, the sentence the dashboard's banner shows (whether a version
    was registered, and why not); empty otherwise."""
    if d.get("status") != "cancelled":
        return ""
    from types import SimpleNamespace

    from core.views.job_status import outcome_line

    return "\n" + outcome_line(SimpleNamespace(status="cancelled"), d)


def _print_launched(args: argparse.Namespace, run_id: str, **extra: Any) -> int:
    """What ``--detach`` prints: the run, and how to follow it."""
    from core.optimization.jobs import log_path

    payload = {"run_id": run_id, "status": "queued", **extra, "log": str(log_path(run_id))}
    _print(args, payload, f"Launched run {run_id}; follow it with: alignboard status {run_id}")
    return 0


def _cmd_align(args: argparse.Namespace) -> int:
    from core.optimization.jobs import launch

    settings = _align_settings(args)
    if args.detach:
        # The fast path: queue the run (a live worker claims it) and return. Nothing of
        # the optimizers is imported here (no dspy, gepa or LiteLLM), nor is this process
        # made a job process: it runs no job.
        return _print_launched(args, launch(settings, allow_concurrent=args.allow_concurrent))
    from core.optimization.worker import prepare_job_process

    # Runs the alignment in this process: a job process like the worker's.
    prepare_job_process()
    from core.optimization.engine import run_alignment

    return _print_result(args, run_alignment(settings, allow_concurrent=args.allow_concurrent))


def _cmd_adjudicate(args: argparse.Namespace) -> int:
    from core.errors import ValidationError
    from core.labeling.adjudication import adjudicate, disputes
    from core.labeling.criteria import display_value, get_criterion
    from core.store.experiments import get_experiment

    exp = get_experiment(args.experiment)
    crit = get_criterion(exp.experiment_id, args.criterion)
    if args.trace is None:
        if args.value is not None or args.rationale is not None:
            raise ValidationError("Name the trace to adjudicate: --trace ID.")
        found = disputes(exp.experiment_id, crit.name, include_resolved=args.all)
        rows = []
        for d in found:
            rows.append(
                {
                    "trace_id": d.trace_id,
                    "labels": [
                        {
                            "reviewer": lab.reviewer,
                            "value": lab.value,
                            "rationale": lab.rationale,
                        }
                        for lab in d.labels
                    ],
                    "gold": None
                    if d.gold is None
                    else {
                        "value": d.gold.value,
                        "rationale": d.gold.rationale,
                        "adjudicator": d.gold.reviewer,
                    },
                }
            )
        lines = [
            f"{d.trace_id}\t"
            + ", ".join(f"{lab.reviewer}={display_value(crit, lab.value)}" for lab in d.labels)
            + (f"\tgold={display_value(crit, d.gold.value)} ({d.gold.reviewer})" if d.gold else "")
            for d in found
        ]
        human = "\n".join(lines) or f"No open disagreement on {crit.name!r}."
        _print(args, {"criterion": crit.name, "disputes": rows}, human)
        return 0
    gold = adjudicate(args.trace, crit, args.adjudicator, args.value, args.rationale)
    _print(
        args,
        gold.to_dict(),
        f"Gold label {display_value(crit, gold.value)} on {gold.trace_id} for {crit.name!r} "
        f"by {gold.reviewer}.",
    )
    return 0


def _cmd_flags(args: argparse.Namespace) -> int:
    from core.labeling.flags import FLAG_TEXT, list_flags
    from core.store.experiments import get_experiment

    exp = get_experiment(args.experiment)
    found = list_flags(exp.experiment_id, criterion=args.criterion)
    human = (
        "\n".join(
            f"{f.trace_id}\t{f.criterion}\t{f.reviewer}\t{FLAG_TEXT.get(f.kind, f.kind)}\t"
            f"{f.comment}"
            for f in found
        )
        or "No flagged traces."
    )
    _print(args, {"flags": [f.to_dict() for f in found]}, human)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from core.optimization.jobs import resolve_run_id, status

    st = status(resolve_run_id(args.run_id))
    progress = f"iteration {st.iteration}" if st.iteration is not None else "no iteration yet"
    calls = f", {st.metric_calls}/{st.budget} metric calls" if st.metric_calls is not None else ""
    human = f"{st.run_id}: {st.status} ({progress}{calls})"
    if st.is_score:
        human = (
            f"{st.run_id}: {st.status}: scoring {st.judge_name} v{st.judge_version}, "
            f"{st.n_scored or 0} scored, {st.n_skipped or 0} already scored, "
            f"{st.n_failed or 0} failed of {st.n_total if st.n_total is not None else '?'}"
        )
    if st.verdict is not None:
        significance = ""
        if st.significant is not None:
            significance = ", significant" if st.significant else ", not significant"
        human += f"; held-out verdict: {st.verdict}{significance}"
    if st.is_prompt:
        human += f"\n  prompt {st.prompt_name!r} from v{st.base_version}"
        if st.test_score_before is not None or st.test_score_after is not None:
            human += f"; held-out score {_pct(st.test_score_before)} -> {_pct(st.test_score_after)}"
    if st.stop_reason and st.stop_reason != "cancelled":
        from core.optimization.stopping import REASON_TEXT

        human += f"; stopped: {REASON_TEXT.get(st.stop_reason, st.stop_reason)}"
    if st.status == "cancelled":
        from core.views.job_status import outcome_line

        human += f"\n  {outcome_line(st)}"
    elif st.registered:
        which = f"prompt v{st.prompt_version}" if st.is_prompt else f"version {st.judge_version}"
        human += f"; registered {which}"
    elif st.registered is False:
        human += "; nothing registered"
    human += f"\n  {st.error}" if st.error else ""
    _print(args, st.to_dict(), human)
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    from core.optimization.jobs import cancel, resolve_run_id

    st = cancel(resolve_run_id(args.run_id))
    human = (
        f"Cancel requested for {st.run_id}; it stops at its next iteration boundary."
        if st.active
        else f"{st.run_id} is {st.status}."
    )
    _print(args, st.to_dict(), human)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from core.optimization.worker import serve

    return serve(
        concurrency=args.concurrency,
        poll_s=args.poll,
        worker_id=args.id,
        once=args.once,
        auto_resume=not args.no_resume,
        launch=main,  # what the launch desk runs for a detached CLI launch handed over
    )


def _cmd_workers(args: argparse.Namespace) -> int:
    import time

    from core.optimization.workers import all_workers

    now = time.time()
    rows = [
        {**w.__dict__, "age_s": round(w.age(now), 1), "alive": w.alive(now)} for w in all_workers()
    ]
    if args.json:
        print(json.dumps({"workers": rows}, default=str))
        return 0
    if not rows:
        print("No worker registered on this store (start one with: alignboard worker).")
        return 0
    print(f"{'id':<36} {'host':<16} {'pid':>7} {'conc':>4} {'running':>7} {'beat age':>9}")
    for w in rows:
        age = f"{w['age_s']}s" + ("" if w["alive"] else " (gone)")
        print(
            f"{w['worker_id']:<36} {w['host']:<16} {w['pid']:>7} {w['concurrency']:>4} "
            f"{len(w['running']):>7} {age:>9}"
        )
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from core.optimization.jobs import log_path, resolve_run_id, resume
    from core.optimization.worker import prepare_job_process, run_job

    prepare_job_process()
    run_id = resume(resolve_run_id(args.run_id), detach=args.detach)
    if args.detach:
        payload = {"run_id": run_id, "status": "queued", "log": str(log_path(run_id))}
        _print(args, payload, f"Resumed run {run_id} in the background.")
        return 0
    return _print_result(args, run_job(run_id, resume=True))


def _cmd_realign(args: argparse.Namespace) -> int:
    from core.optimization.runners.memalign_versions import realign
    from core.store.experiments import get_experiment

    exp = get_experiment(args.experiment)
    return _print_result(args, realign(exp.experiment_id, args.judge, version=args.version))


def _cmd_unalign(args: argparse.Namespace) -> int:
    from core.optimization.runners.memalign_versions import unalign
    from core.store.experiments import get_experiment

    exp = get_experiment(args.experiment)
    res = unalign(exp.experiment_id, args.judge, args.trace_id, version=args.version)
    return _print_result(args, res)


# ---- prompt optimization ---------------------------------------------------------------


def _pairs(items: Sequence[str] | None, flag: str, example: str) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a dict."""
    from core.errors import ValidationError

    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValidationError(f"{flag} takes KEY=VALUE (e.g. {flag} {example}); got {item!r}.")
        out[key.strip()] = value.strip()
    return out


def _prompt_settings(args: argparse.Namespace):
    from core.errors import ValidationError
    from core.optimization.prompt_preflight import build_prompt_settings
    from core.store.experiments import get_experiment

    missing = [
        flag
        for flag, value in (
            ("--experiment", args.experiment),
            ("--prompt", args.prompt),
            ("--dataset", args.dataset),
            ("--judge or --scorer", args.judge or args.scorer),
            ("--optimizer", args.optimizer),
        )
        if not value
    ]
    if missing:
        raise ValidationError(
            f"alignboard optimize needs {', '.join(missing)}. Example: alignboard optimize "
            "--experiment alignboard-demo --prompt northwind-support@production "
            "--dataset dataset:northwind-messages --judge support_quality@production "
            "--optimizer gepa --task-model demo:/app --reflection-model demo:/reflect"
        )
    exp = get_experiment(args.experiment)
    return build_prompt_settings(
        exp.experiment_id,
        prompts=args.prompt,
        dataset=args.dataset,
        task_model=args.task_model,
        judges=args.judge or (),
        optimizer=args.optimizer,
        reflection_model=args.reflection_model,
        scorers=args.scorer or (),
        mapping=_pairs(args.map, "--map", "message=inputs.text"),
        dataset_queue=args.dataset_queue,
        dataset_tags=_pairs(args.dataset_tag, "--dataset-tag", "topic=returns"),
        task_base_url=args.task_base_url,
        reflection_base_url=args.reflection_base_url,
        task_temperature=args.task_temperature,
        task_max_tokens=args.task_max_tokens,
        max_metric_calls=args.max_metric_calls,
        workers=args.workers,
        seed=args.seed,
        minibatch_size=args.minibatch_size,
        alias=args.alias,
        aggregation=args.aggregation,
        register_if_worse=args.register_worse,
        register_if_cancelled=args.register_if_cancelled,
        stop=_stop_policy(args, score_flag=True),
    )


def _stop_score(text: str) -> float | None:
    """``--stop-at-score``: a validation score in (0, 1], or ``off``."""
    from core.errors import ValidationError

    if str(text).strip().lower() in ("off", "none", "no"):
        return None
    try:
        return float(text)
    except ValueError:
        raise ValidationError(
            f"--stop-at-score takes a validation score in (0, 1] or 'off'; got {text!r}."
        ) from None


class PreflightRefused(Exception):
    """Pre-flight found errors: nothing was written; every finding is in ``findings``."""

    def __init__(self, findings: Sequence[Any], what: str = "Prompt optimization") -> None:
        errors = [f for f in findings if f.level == "error"]
        super().__init__(
            f"{what} refused before spending anything ({len(errors)} "
            "problem(s)); nothing was written:\n" + "\n".join(f"- {f.message}" for f in errors)
        )
        self.findings = list(findings)


def _date_ms(text: str | None, flag: str) -> int | None:
    """``--since``/``--until``: a date (``2026-01-31``, midnight UTC) or an ISO date and
    time (UTC unless it names its offset), as epoch milliseconds."""
    if text is None:
        return None
    from datetime import UTC, datetime

    from core.errors import ValidationError

    try:
        stamp = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise ValidationError(
            f"{flag} takes a date (2026-01-31) or an ISO date and time; got {text!r}."
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)


def _score_settings(args: argparse.Namespace):
    from core.optimization.bulk_scoring import build_score_settings
    from core.optimization.score_spec import SelectionMode, TraceSelection
    from core.store.experiments import get_experiment

    exp = get_experiment(args.experiment)
    mode: SelectionMode = "unlabeled"
    if args.all:
        mode = "all"
    elif args.labeled:
        mode = "labeled"
    elif args.queue:
        mode = "queue"
    selection = TraceSelection(
        mode=mode,
        queue=args.queue,
        since_ms=_date_ms(args.since, "--since"),
        until_ms=_date_ms(args.until, "--until"),
        tags=_pairs(args.tag, "--tag", "env=prod"),
        split=args.split or "all",
        limit=args.limit,
    )
    return build_score_settings(
        exp.experiment_id, args.judge, selection, workers=args.workers, batch_size=args.batch_size
    )


def _cmd_score(args: argparse.Namespace) -> int:
    from core.optimization.bulk_scoring import check_scoring, create_score_run, run_scoring
    from core.optimization.jobs import launch

    if not args.detach:
        from core.optimization.worker import prepare_job_process

        # Scores in this process: a job process like the worker's.
        prepare_job_process()
    settings = _score_settings(args)
    # Pre-flight once, before anything is written; the run records the selected traces.
    check = check_scoring(settings)
    if not check.ok:
        raise PreflightRefused(check.findings, "Scoring")
    for f in check.findings:
        print(f"warning: {f.message}", file=sys.stderr)
    if args.detach:
        return _print_launched(
            args,
            launch(settings, check=check),
            judge_version=settings.judge_version,
            n_selected=check.n_selected,
        )
    run_id = create_score_run(settings, "queued", check=check)
    return _print_score_result(args, run_scoring(settings, run_id=run_id).to_dict())


def _print_score_result(args: argparse.Namespace, d: dict[str, Any]) -> int:
    counts = ", ".join(f"{k} {n}" for k, n in (d.get("value_counts") or {}).items())
    human = (
        f"Run {d['run_id']} {d['status']}: {d['judge_name']} v{d['judge_version']} scored "
        f"{d['n_scored']} of {d['n_selected']} traces"
        + (f" ({counts})" if counts else "")
        + f"; {d['n_skipped']} already scored, {d['n_failed']} failed "
        f"({d['wall_seconds']:.1f} s). Verdicts are feedback {d['judge_name']!r} from "
        f"{d['source_id']}."
    )
    _print(args, d, human)
    return 0


def _cmd_optimize(args: argparse.Namespace) -> int:
    from core.optimization.jobs import launch
    from core.optimization.prompt_preflight import preflight_prompt

    if not args.detach:
        from core.optimization.worker import prepare_job_process

        # Runs the optimization in this process: a job process like the worker's.
        prepare_job_process()
    settings = _prompt_settings(args)
    # Pre-flight once: the findings go into the run, so neither the job nor the engine
    # checks again (it only loads the rows).
    findings = preflight_prompt(settings)[1]
    if any(f.level == "error" for f in findings):
        raise PreflightRefused(findings)
    for f in findings:
        print(f"warning: {f.message}", file=sys.stderr)
    for role, model in (
        ("application", settings.task_model),
        ("reflection", settings.reflection_model),
    ):
        if model.startswith("demo:/"):
            print(
                f"note: the {role} model {model} is the offline demo stand-in, not an LLM.",
                file=sys.stderr,
            )
    if args.detach:
        return _print_launched(args, launch(settings, check=findings))
    from core.optimization.engine import run_prompt_optimization
    from core.optimization.prompt_task import create_prompt_run

    run_id = create_prompt_run(settings, "queued", findings=findings)
    return _print_result(args, run_prompt_optimization(settings, run_id=run_id))


def _print_prompt_result(args: argparse.Namespace, d: dict[str, Any]) -> int:
    if d.get("prompt_version") is not None:
        registered = f"-> version {d['prompt_version']}"
        if d.get("alias"):
            registered += f" (alias {d['alias']!r})"
    else:
        registered = "-> nothing registered"
    human = (
        f"Run {d['run_id']} {d['status']}: {d['optimizer']} optimized prompt "
        f"{d['prompt_name']!r} v{d['base_version']} {registered}. Held-out score "
        f"{_pct(d['test_score_before'])} -> {_pct(d['test_score_after'])} on "
        f"{d['test_size']} test rows ({d['metric_calls']} metric calls, {d['llm_calls']} "
        f"LLM calls, {d['wall_seconds']:.1f} s)."
    )
    for name, sc in (d.get("test_scores") or {}).items():
        human += f"\n  {name}: {_pct(sc.get('before'))} -> {_pct(sc.get('after'))}"
    if d.get("verdict_text"):
        human += f"\n{d['verdict_text']}"
    human += _stop_text(d)
    human += _cancelled_line(d)
    _print(args, d, human)
    return 0


def _cmd_prompt_register(args: argparse.Namespace) -> int:
    from core.store.prompts import register_prompt, set_prompt_alias

    with open(args.template_file, encoding="utf-8") as fh:
        template = fh.read()
    if args.experiment:
        import mlflow

        from core.store.experiments import get_experiment

        # MLflow lists a prompt under the active experiment when it is registered (its
        # Prompts tab), in a thread the interpreter waits for at exit.
        mlflow.set_experiment(experiment_id=get_experiment(args.experiment).experiment_id)
    info = register_prompt(args.name, template, commit_message=args.commit_message)
    if args.alias:
        set_prompt_alias(info.name, args.alias, info.version)
    d = {**info.to_dict(), "aliases": [args.alias] if args.alias else []}
    alias = f" (alias {args.alias!r})" if args.alias else ""
    variables = ", ".join(info.variables) or "none"
    _print(
        args,
        d,
        f"Registered {info.name!r} version {info.version}{alias}; variables: {variables}.",
    )
    return 0


def _cmd_prompt_alias(args: argparse.Namespace) -> int:
    from core.store.prompts import PromptRef, load_prompt, set_prompt_alias

    info = load_prompt(PromptRef(args.name, version=args.version))  # names what exists
    set_prompt_alias(info.name, args.alias, info.version)
    payload = {"name": info.name, "version": info.version, "alias": args.alias}
    _print(args, payload, f"{info.name}@{args.alias} -> version {info.version}.")
    return 0


def _cmd_prompt_list(args: argparse.Namespace) -> int:
    from core.store.prompts import list_prompt_versions, list_prompts

    if args.name:
        versions = list_prompt_versions(args.name)
        lines = [
            f"{v.name}\tv{v.version}\t{','.join(v.aliases) or '-'}\t{v.commit_message or ''}"
            for v in versions
        ]
        payload: dict[str, Any] = {"name": args.name, "versions": [v.to_dict() for v in versions]}
        _print(args, payload, "\n".join(lines) or f"Prompt {args.name!r} has no versions.")
        return 0
    names = list_prompts()
    _print(args, {"prompts": names}, "\n".join(names) or "No prompts registered.")
    return 0


# ---- aliases of judges and prompts, with their history ----------------------------------


def _alias_subject(args: argparse.Namespace) -> tuple[str, str]:
    """``(experiment id, kind)`` of an ``alias`` command."""
    from core.store.experiments import get_experiment

    return get_experiment(args.experiment).experiment_id, "prompt" if args.prompt else "judge"


def _alias_who(args: argparse.Namespace) -> str:
    from core.optimization.alias_history import default_who

    return (args.who or "").strip() or default_who()


def _cmd_alias_set(args: argparse.Namespace) -> int:
    from core.views.versions import set_alias

    eid, kind = _alias_subject(args)
    change = set_alias(eid, kind, args.name, args.alias, args.version, who=_alias_who(args))
    was = "unset" if change.previous_version is None else f"v{change.previous_version}"
    human = f"{kind} {args.name}: {change.alias} -> v{change.version} (was {was})."
    _print(args, change.to_dict(), human)
    return 0


def _cmd_alias_rollback(args: argparse.Namespace) -> int:
    from core.views.versions import rollback

    eid, kind = _alias_subject(args)
    change = rollback(eid, kind, args.name, args.alias, who=_alias_who(args))
    human = (
        f"{kind} {args.name}: rolled {change.alias} back to v{change.version}, its previous "
        f"target (it pointed at v{change.previous_version})."
    )
    _print(args, change.to_dict(), human)
    return 0


def _cmd_alias_history(args: argparse.Namespace) -> int:
    from core.optimization.alias_history import history

    eid, kind = _alias_subject(args)
    changes = history(eid, kind, args.name, args.alias)
    if args.json:
        # A list, newest first (what other tools read), not the usual one object.
        print(json.dumps([c.to_dict() for c in changes]))
        return 0
    if not changes:
        print(f"No recorded change of {args.alias!r} on {kind} {args.name!r}.")
        return 0
    for c in changes:
        was = "unset" if c.previous_version is None else f"v{c.previous_version}"
        run = f"\trun {c.run_id}" if c.run_id else ""
        print(f"{c.when}\t{c.action}\tv{c.version}\t(was {was})\t{c.who}{run}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``alignboard`` command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", help="print one JSON object on the last line"
    )

    parser = argparse.ArgumentParser(
        prog="alignboard",
        description="Label LLM traces, align LLM judges, compare versions (on MLflow).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str,
        fn: Callable[[argparse.Namespace], int],
        help_: str,
        parent=sub,
        description: str | None = None,
    ):
        p = parent.add_parser(name, help=help_, parents=[common], description=description or help_)
        p.set_defaults(func=fn)
        return p

    p = add("seed-demo", _cmd_seed_demo, "load the demo data (idempotent)")
    # The default (alignboard-demo) is resolved when the command runs: core.io.demo_seed
    # imports MLflow, which --help must not pay for.
    p.add_argument("--experiment", help="experiment to seed (default: alignboard-demo)")
    p.add_argument(
        "--large",
        action="store_true",
        help="seed the larger synthetic set (assets/demo_large) instead, "
        "into alignboard-demo-large by default",
    )

    p = add("import", _cmd_import, "import traces (JSONL or CSV), all-or-nothing")
    p.add_argument("file")
    p.add_argument("--experiment", required=True)
    p.add_argument("--on-existing", choices=["error", "skip"], default="error")
    p.add_argument(
        "--create-criteria",
        action="store_true",
        help="create the criteria the labels name that the experiment lacks, their kind "
        "inferred from the values (pass/fail words, numbers -> their range, or up to 20 "
        "categories); without it such a file is refused",
    )
    p.add_argument(
        "--queue",
        help="put the file's traces into this review queue (existing, or new with --reviewers)",
    )
    p.add_argument("--reviewers", help="a new queue's reviewers, comma-separated (alice,bob)")
    p.add_argument(
        "--queue-criteria",
        help="a new queue's criteria, comma-separated (default: those the labels name, "
        "else every criterion)",
    )

    p = add(
        "export",
        _cmd_export,
        "export labels to CSV or JSONL, or labeled traces to an MLflow evaluation dataset",
        description="Export labels to a CSV or JSONL file, or (--format mlflow-dataset "
        "--dataset NAME --criterion C) a criterion's labeled traces to an MLflow evaluation "
        "dataset: one record per labeled trace with its inputs, outputs and the consolidated "
        "human label as expectations ({C: value, C_rationale: rationale}). Exporting again "
        "into the same dataset updates its records (MLflow merges them by inputs).",
    )
    p.add_argument("file", nargs="?", help="CSV or JSONL file to write (not with mlflow-dataset)")
    p.add_argument("--experiment", required=True)
    p.add_argument(
        "--format",
        choices=["csv", "jsonl", "mlflow-dataset"],
        help="csv, jsonl (default: from FILE's extension) or mlflow-dataset (an MLflow "
        "evaluation dataset in the store, named by --dataset)",
    )
    p.add_argument("--dataset", help="mlflow-dataset: the evaluation dataset to create or update")
    p.add_argument("--criterion", help="only this criterion (required for mlflow-dataset)")
    p.add_argument("--history", action="store_true", help="include overridden labels")

    crit = sub.add_parser("criterion", help="label criteria (MLflow label schemas)")
    csub = crit.add_subparsers(dest="action", required=True)
    p = add("create", _cmd_criterion_create, "create a criterion", csub)
    p.add_argument("name")
    p.add_argument("--experiment", required=True)
    p.add_argument("--kind", choices=["pass_fail", "categorical", "numeric"], default="pass_fail")
    p.add_argument(
        "--instructions",
        help="judge instructions; {{ inputs }} / {{ outputs }} are added to the judge if missing",
    )
    p.add_argument("--instructions-file")
    p.add_argument("--options", help="comma-separated categories")
    p.add_argument("--min", type=float)
    p.add_argument("--max", type=float)
    p.add_argument("--positive-label", default="Pass", help="pass/fail: how a pass reads")
    p.add_argument("--negative-label", default="Fail", help="pass/fail: how a fail reads")
    p = add("list", _cmd_criterion_list, "list criteria", csub)
    p.add_argument("--experiment", required=True)
    p = add(
        "edit",
        _cmd_criterion_edit,
        "edit a criterion (its MLflow label schema; options given are kept as-is)",
        csub,
        description="Edit a criterion; anything not given stays as it is. A change existing "
        "labels would not fit (another kind, removing an option in use, a range leaving "
        "labeled values out) is refused.",
    )
    p.add_argument("name")
    p.add_argument("--experiment", required=True)
    p.add_argument("--kind", choices=["pass_fail", "categorical", "numeric"])
    p.add_argument("--instructions")
    p.add_argument("--instructions-file")
    p.add_argument("--options", help="comma-separated categories (the full new list)")
    p.add_argument("--min", type=float)
    p.add_argument("--max", type=float)
    p.add_argument("--no-min", action="store_true", help="numeric: no lower bound")
    p.add_argument("--no-max", action="store_true", help="numeric: no upper bound")
    p.add_argument("--positive-label")
    p.add_argument("--negative-label")
    p = add(
        "rules",
        _cmd_criterion_rules,
        "show or set a criterion's labeling rules (rationale policy, blind mode, min kappa)",
        csub,
    )
    p.add_argument("name")
    p.add_argument("--experiment", required=True)
    p.add_argument("--rationale", choices=["always", "disagree_humans", "optional"])
    p.add_argument("--blind", action=argparse.BooleanOptionalAction, default=None)
    kappa = p.add_mutually_exclusive_group()
    kappa.add_argument("--min-kappa", type=float, help="block alignment below this kappa")
    kappa.add_argument("--no-min-kappa", action="store_true", help="no minimum kappa")

    queue = sub.add_parser("queue", help="review queues")
    qsub = queue.add_subparsers(dest="action", required=True)
    p = add("create", _cmd_queue_create, "create a queue", qsub)
    p.add_argument("name")
    p.add_argument("--experiment", required=True)
    p.add_argument("--criterion", action="append", required=True)
    p.add_argument("--reviewer", action="append", help="an assigned reviewer (at least one)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--all-traces", action="store_true", help="attach every trace")
    start.add_argument(
        "--unlabeled", metavar="CRITERION", help="attach the traces without a label for it"
    )
    start.add_argument("--text", help="attach the traces whose content contains TEXT")
    start.add_argument("--tag", metavar="KEY=VALUE", help="attach the traces with this tag")
    start.add_argument("--trace-id", action="append", help="attach this trace (repeatable)")
    p = add("add", _cmd_queue_add, "attach traces", qsub)
    p.add_argument("name")
    p.add_argument("trace_id", nargs="+")
    p.add_argument("--experiment", required=True)
    p = add("remove", _cmd_queue_remove, "detach traces (their labels stay)", qsub)
    p.add_argument("name")
    p.add_argument("trace_id", nargs="+")
    p.add_argument("--experiment", required=True)
    p = add("assign", _cmd_queue_assign, "assign or unassign reviewers", qsub)
    p.add_argument("name")
    p.add_argument("--experiment", required=True)
    p.add_argument("--add", action="append", metavar="REVIEWER")
    p.add_argument("--remove", action="append", metavar="REVIEWER")
    p = add(
        "rules",
        _cmd_queue_rules,
        "show or set a queue's overrides of its criteria's rules",
        qsub,
    )
    p.add_argument("name")
    p.add_argument("--experiment", required=True)
    p.add_argument(
        "--rationale",
        choices=["always", "disagree_humans", "optional", "criterion"],
        help="'criterion' drops the override",
    )
    p.add_argument(
        "--blind", choices=["on", "off", "criterion"], help="'criterion' drops the override"
    )
    p = add("sync", _cmd_queue_sync, "mark items complete in MLflow once all labeled", qsub)
    p.add_argument("name")
    p.add_argument("--experiment", required=True)
    p = add("progress", _cmd_queue_progress, "progress per reviewer", qsub)
    p.add_argument("name")
    p.add_argument("--experiment", required=True)
    p = add("list", _cmd_queue_list, "list queues", qsub)
    p.add_argument("--experiment", required=True)
    p.add_argument("--reviewer")

    from core.optimization.spec import OPTIMIZERS

    p = add("align", _cmd_align, "align a judge on its human labels (an MLflow run)")
    p.add_argument("--experiment", help="experiment holding the traces and labels")
    p.add_argument("--judge", help="judge name = criterion name (its labels' name)")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--model", help="judge model, e.g. openai:/gpt-4.1-mini or demo:/judge")
    p.add_argument("--reflection-model", help="model proposing instructions / distilling")
    p.add_argument("--base-url", help="OpenAI-compatible server of the judge model")
    p.add_argument("--reflection-base-url", help="OpenAI-compatible server of the reflection model")
    p.add_argument("--embedding-base-url", help="memalign: OpenAI-compatible embedding server")
    p.add_argument("--max-metric-calls", type=int, help="budget (default ~10x train size)")
    p.add_argument("--workers", type=int, default=8, help="judge calls in flight")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minibatch-size", type=int, default=3)
    p.add_argument(
        "--proposals-in-flight",
        type=int,
        default=4,
        help="gepa: proposals worked on at once (4; 1 = gepa's sequential loop)",
    )
    p.add_argument("--retrieval-k", type=int, default=5, help="memalign: examples retrieved")
    p.add_argument("--embedding-model", default="demo:/embed", help="memalign embeddings")
    p.add_argument(
        "--instructions-file",
        help="seed instructions, used as written (default: the criterion's, variables added)",
    )
    p.add_argument("--reviewer", action="append", help="only these reviewers' labels")
    p.add_argument("--detach", action="store_true", help="run as a background job")
    p.add_argument(
        "--allow-concurrent",
        action="store_true",
        help="start even while another run for this judge is queued or running",
    )
    p.add_argument(
        "--register-worse",
        action="store_true",
        help="register the aligned judge even if it scores worse than the seed on held-out traces",
    )
    p.add_argument(
        "--register-if-cancelled",
        action="store_true",
        help="if the run is cancelled, register its best judge so far (default: a cancelled "
        "run registers nothing)",
    )
    p.add_argument(
        "--override-kappa",
        metavar="REASON",
        help="launch although reviewer agreement is below the criterion's minimum kappa, for "
        "this written reason (recorded in the run)",
    )
    p.add_argument(
        "--override-by", help="who overrides the agreement gate (default: your login name)"
    )
    _add_stop_flags(p)

    p = add(
        "adjudicate",
        _cmd_adjudicate,
        "list reviewer disagreements of a criterion, or record a gold label on one",
        description="Without --trace: list the traces where reviewers disagree on the "
        "criterion (--all: adjudicated ones too). With --trace, --value, --rationale and "
        "--as: record the gold label (HUMAN feedback marked as an adjudication; the "
        "adjudicator's own reviewer label is kept).",
    )
    p.add_argument("--experiment", required=True)
    p.add_argument("--criterion", required=True)
    p.add_argument("--all", action="store_true", help="also list resolved disagreements")
    p.add_argument("--trace", help="the trace to adjudicate")
    p.add_argument("--value", help="the gold value (pass/fail, a category, a number)")
    p.add_argument("--rationale", help="why (required for a gold label)")
    p.add_argument("--as", dest="adjudicator", help="who adjudicates")

    p = add("flags", _cmd_flags, "list traces reviewers flagged (unsure, broken)")
    p.add_argument("--experiment", required=True)
    p.add_argument("--criterion", help="only flags of this criterion")

    p = add(
        "score",
        _cmd_score,
        "score traces with a registered judge version (an MLflow run writing LLM_JUDGE feedback)",
        description="Run a registered judge version on a set of traces and write each verdict "
        "on its trace as MLflow LLM_JUDGE feedback named after the judge (source NAME/vN). "
        "Idempotent: traces that already carry this version's verdict are skipped. By default "
        "the traces without a human label for the judge's criterion.",
    )
    p.add_argument("--experiment", required=True, help="experiment holding the traces and judge")
    p.add_argument("--judge", required=True, help="NAME, NAME@VERSION or NAME@ALIAS")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--unlabeled", action="store_true", help="traces without a human label (default)"
    )
    which.add_argument("--all", action="store_true", help="every trace")
    which.add_argument("--labeled", action="store_true", help="traces with a human label")
    which.add_argument("--queue", metavar="Q", help="the traces of review queue Q")
    p.add_argument(
        "--split", choices=["all", "train", "val", "test"], help="with --labeled: one split"
    )
    p.add_argument("--since", metavar="DATE", help="traces requested at or after DATE (UTC)")
    p.add_argument("--until", metavar="DATE", help="traces requested before DATE (UTC)")
    p.add_argument(
        "--tag", action="append", metavar="K=V", help="traces with this tag; repeat for more"
    )
    p.add_argument("--limit", type=int, metavar="N", help="at most N traces (the oldest)")
    p.add_argument("--workers", type=int, default=8, help="judge calls in flight (8)")
    p.add_argument(
        "--batch-size", type=int, default=50, help="traces per batch; cancel between them (50)"
    )
    p.add_argument("--detach", action="store_true", help="run as a background job")

    from core.optimization.prompt_spec import AGGREGATIONS, BUILTIN_SCORERS, PROMPT_OPTIMIZERS

    p = add(
        "optimize",
        _cmd_optimize,
        "optimize the application's registered prompt against judges (an MLflow run)",
    )
    p.add_argument("--experiment", help="experiment holding the judges (and the run)")
    p.add_argument(
        "--prompt",
        action="append",
        help="NAME[@VERSION|@ALIAS] in the Prompt Registry; repeat to optimize several together",
    )
    p.add_argument(
        "--dataset",
        help="dataset:NAME (MLflow evaluation dataset), experiment:NAME (its traces' inputs) "
        "or a JSONL/CSV file",
    )
    p.add_argument("--dataset-queue", help="experiment: sources: only traces in this queue")
    p.add_argument(
        "--dataset-tag", action="append", metavar="K=V", help="experiment: sources: tag filter"
    )
    p.add_argument(
        "--map",
        action="append",
        metavar="VAR=FIELD",
        help="template variable -> input field (default: the same-named field)",
    )
    p.add_argument(
        "--task-model",
        default="demo:/app",
        help="the application's model, e.g. openai:/gpt-4.1-mini (default demo:/app, the "
        "offline stand-in application, not an LLM)",
    )
    p.add_argument("--task-base-url", help="OpenAI-compatible server of the application model")
    p.add_argument(
        "--task-temperature",
        type=float,
        help="sampling temperature of the application's calls, 0-2 (default: the model's; "
        "0 makes a self-hosted model's replies repeatable)",
    )
    p.add_argument(
        "--task-max-tokens",
        type=int,
        help="most tokens per application reply (default: the model's)",
    )
    p.add_argument(
        "--judge",
        action="append",
        help="registered judge NAME[@VERSION|@ALIAS] scoring the outputs; repeatable",
    )
    p.add_argument(
        "--scorer", action="append", choices=BUILTIN_SCORERS, help="built-in scorer; repeatable"
    )
    p.add_argument("--optimizer", choices=PROMPT_OPTIMIZERS)
    p.add_argument(
        "--reflection-model",
        default="demo:/reflect",
        help="model proposing new prompts (default demo:/reflect, the offline stand-in)",
    )
    p.add_argument("--reflection-base-url", help="OpenAI-compatible server of that model")
    p.add_argument(
        "--max-metric-calls", type=int, help="budget in row evaluations (default ~10x train)"
    )
    p.add_argument("--workers", type=int, default=8, help="model calls in flight")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minibatch-size", type=int, default=3)
    p.add_argument(
        "--alias", default="candidate", help="alias of the new version (default candidate)"
    )
    p.add_argument(
        "--aggregation", choices=AGGREGATIONS, default="mean", help="how scorers combine"
    )
    p.add_argument(
        "--register-worse",
        action="store_true",
        help="register the best prompt even if it scores worse than the seed on held-out rows",
    )
    p.add_argument(
        "--register-if-cancelled",
        action="store_true",
        help="if the run is cancelled, register its best prompt so far (default: a cancelled "
        "run registers nothing)",
    )
    p.add_argument(
        "--stop-at-score",
        default="1.0",
        metavar="SCORE|off",
        help="stop the search once a prompt scores this on every validation row "
        "(default 1.0: nothing is left to gain there); 'off' (or --no-stop-at-perfect) "
        "turns this stop off",
    )
    p.add_argument("--detach", action="store_true", help="run as a background job")
    _add_stop_flags(p)

    prompt = sub.add_parser("prompt", help="prompts in the MLflow Prompt Registry")
    psub = prompt.add_subparsers(dest="action", required=True)
    p = add("register", _cmd_prompt_register, "register a new prompt version", psub)
    p.add_argument("name")
    p.add_argument("--template-file", required=True, help="text with {{ variable }} slots")
    p.add_argument("--commit-message")
    p.add_argument("--alias", help="point this alias at the new version")
    p.add_argument("--experiment", help="also list the prompt under this experiment")
    p = add("alias", _cmd_prompt_alias, "point an alias at a version (e.g. promote)", psub)
    p.add_argument("name")
    p.add_argument("version", type=int)
    p.add_argument("alias", help="e.g. production")
    p = add("list", _cmd_prompt_list, "list prompts, or one prompt's versions", psub)
    p.add_argument("name", nargs="?")

    p = add("worker", _cmd_worker, "run queued jobs (claims them from MLflow) until stopped")
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="jobs at once (default: ALIGNBOARD_WORKER_CONCURRENCY or 1)",
    )
    p.add_argument("--poll", type=float, default=0.25, help="seconds between polls (0.25)")
    p.add_argument("--id", help="worker id (default: <host>-<pid>-<random>)")
    p.add_argument("--once", metavar="RUN_ID", help="claim and run this one run, then exit")
    p.add_argument("--no-resume", action="store_true", help="never requeue dead jobs")
    add("workers", _cmd_workers, "list the job workers registered on this store")
    p = add("status", _cmd_status, "status of an alignment or optimization run")
    p.add_argument("run_id")
    p = add("cancel", _cmd_cancel, "stop an alignment or optimization at its next iteration")
    p.add_argument("run_id")
    p = add(
        "resume", _cmd_resume, "continue an interrupted, failed or cancelled alignment/optimization"
    )
    p.add_argument("run_id")
    p.add_argument("--detach", action="store_true", help="run as a background job")

    p = add("realign", _cmd_realign, "add new labels to a MemAlign judge: a new version")
    p.add_argument("--experiment", required=True)
    p.add_argument("--judge", required=True)
    p.add_argument("--version", type=int, help="MemAlign version to start from (default latest)")
    p = add("unalign", _cmd_unalign, "remove traces from a MemAlign judge: a new version")
    p.add_argument("--experiment", required=True)
    p.add_argument("--judge", required=True)
    p.add_argument("--trace-id", action="append", required=True)
    p.add_argument("--version", type=int, help="MemAlign version to start from (default latest)")

    alias = sub.add_parser("alias", help="aliases of judges (or prompts): set, roll back, history")
    asub = alias.add_subparsers(dest="action", required=True)

    def alias_common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--experiment", required=True, help="the experiment (holds the history)")
        p.add_argument(
            "--prompt",
            action="store_true",
            help="NAME is a prompt of MLflow's Prompt Registry, not a judge (its history is "
            "kept in --experiment)",
        )

    who_help = "who makes the change, for the history (default: $USER)"
    p = add("set", _cmd_alias_set, "point an alias at a version (recorded)", asub)
    p.add_argument("name", metavar="JUDGE", help="the judge (or, with --prompt, the prompt)")
    p.add_argument("version", metavar="VERSION", type=int)
    p.add_argument("alias", metavar="ALIAS", help="e.g. production")
    p.add_argument("--who", help=who_help)
    alias_common(p)
    p = add(
        "rollback",
        _cmd_alias_rollback,
        "return an alias to its previous target in its history",
        asub,
        description="Return ALIAS to the version it pointed at before its current target, "
        "per its recorded history (v1 -> v5 -> rollback = v1; again: whatever came before "
        "v1). Refused when there is no history or nothing before.",
    )
    p.add_argument("name", metavar="JUDGE", help="the judge (or, with --prompt, the prompt)")
    p.add_argument("alias", metavar="ALIAS")
    p.add_argument("--who", help=who_help)
    alias_common(p)
    p = add(
        "history",
        _cmd_alias_history,
        "an alias's recorded changes, newest first",
        asub,
        description="Every recorded change of ALIAS, newest first. With --json: one JSON "
        "list, each entry with version, previous_version, action, who, when (ISO 8601) and "
        "when_ms, run_id, kind, name, alias.",
    )
    p.add_argument("name", metavar="JUDGE", help="the judge (or, with --prompt, the prompt)")
    p.add_argument("alias", metavar="ALIAS")
    alias_common(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``alignboard`` command; returns the exit status."""
    handed = _hand_off(sys.argv[1:] if argv is None else list(argv))
    if handed is not None:
        return handed
    args = build_parser().parse_args(argv)
    from core.errors import AlignboardError
    from core.models.secrets import install_log_redaction
    from core.store import config

    if args.func is not _cmd_status:
        # status reads a local store without MLflow and configures it only if it must.
        config.configure()
    install_log_redaction()
    try:
        # One clear line instead of minutes of retries (stdlib only: status stays fast).
        config.check_store()
        return args.func(args)
    except (AlignboardError, PreflightRefused) as exc:
        _print_error(args, exc)
        return 2
    except Exception as exc:
        if args.command not in ("align", "optimize", "resume", "score"):
            raise
        # A crashed alignment is already recorded as failed in its run; say so briefly.
        _print_error(args, exc)
        return 1


def _hand_off(argv: list[str]) -> int | None:
    """A detached launch handed to a warm local worker (:mod:`core.optimization.handoff`):
    its exit status, or None when no worker's desk took it (launch here, as before)."""
    from core.optimization import handoff

    if not handoff.wants_handoff(argv):
        return None
    from core.store import config

    try:
        answer = handoff.try_handoff(argv, config.data_dir(), config.tracking_uri())
    except (OSError, ValueError) as exc:
        # Sent, but no answer: the launch may have happened; never launch it twice.
        print(
            f"error: the local worker took the launch but did not answer ({exc}); check "
            "`alignboard status` / the Align page before launching again.",
            file=sys.stderr,
        )
        return 1
    if answer is None:
        return None
    sys.stdout.write(str(answer.get("stdout", "")))
    sys.stderr.write(str(answer.get("stderr", "")))
    return int(answer.get("code", 1))


def _print_error(args: argparse.Namespace, exc: BaseException) -> None:
    from core.models.secrets import redact

    message = redact(str(exc))
    run_id = getattr(exc, "run_id", None)
    if getattr(args, "json", False):
        payload: dict[str, Any] = {"error": type(exc).__name__, "message": message}
        if run_id:
            payload["run_id"] = run_id
        findings = getattr(exc, "findings", None)
        if findings is not None:
            payload["findings"] = [f.to_dict() for f in findings]
        print(json.dumps(payload))
    where = f" (run {run_id})" if run_id else ""
    print(f"error{where}: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
