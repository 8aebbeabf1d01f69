"""Cached reads from core, shared by the pages, and the precise invalidation after writes.

Every function here is one core call behind ``st.cache_data`` with a TTL and a bound, so
several users and tabs share reads while a write by another process shows up within
seconds. After a write, the page calls the matching ``after_*`` function, which clears
only the caches that write made stale.
"""

from __future__ import annotations

import threading
import time

import streamlit as st

from core.errors import NotFoundError
from core.io.uploads import UploadPreview, preview_upload
from core.labeling.criteria import Criterion, list_criteria
from core.labeling.queues import Queue
from core.labeling.rules import LabelRules, effective_rules
from core.labeling.session import Session, flagged_ids, within, work_lists
from core.labeling.traces import TraceDetail, get_trace
from core.labeling.worklists import (
    WorkList,
    labeled_ids,
    load_work_list,
    resolve_queue,
    work_list_stamp,
)
from core.store import config
from core.store.experiments import list_experiments
from core.views.agreement import Ratings, load_ratings
from core.views.overview import Overview, experiment_overview


@st.cache_resource(show_spinner=False)
def _configured() -> str:
    # Once per process: point MLflow at the store (env var or the local data folder), and
    # load LiteLLM in the background: core imports it on first use (so the CLI starts
    # light), and the first Align check or judge score would otherwise wait seconds for it.
    threading.Thread(target=_warm_model_libraries, name="warm-litellm", daemon=True).start()
    return config.configure()


def _warm_model_libraries() -> None:
    import litellm  # noqa: F401  # registers the demo provider on import (core.models)

    freeze_heap()


def freeze_heap() -> None:
    """Hide every object alive now from the garbage collector's full collections.

    Streamlit runs a full collection after every script run (``runner.postScriptGC``),
    holding the GIL, so the websocket waits with the rerun's deltas until it ends. With
    MLflow, SQLAlchemy and LiteLLM loaded that walks ~700k objects: 300-400 ms of CPU per
    rerun, most of a submit's server time (benchmarks B8). Nearly all of them are modules,
    classes and functions that live as long as the server; frozen, they are skipped, and
    each collection walks only what the reruns made since. (Garbage in the frozen set is
    never freed: one collection first, so that is only what a rerun running right now
    holds, once.)
    """
    import gc

    gc.collect()
    gc.freeze()


def configure() -> str:
    """Make sure MLflow points at alignboard's store."""
    return _configured()


@st.cache_data(ttl=30, max_entries=8, show_spinner=False)
def experiments() -> list[tuple[str, str]]:
    """(experiment id, name) of the active experiments, newest first."""
    return [(e.experiment_id, e.name) for e in list_experiments()]


@st.cache_data(ttl=60, max_entries=32, show_spinner=False)
def criteria(experiment_id: str) -> list[Criterion]:
    """The experiment's criteria."""
    return list_criteria(experiment_id)


@st.cache_data(ttl=15, max_entries=16, show_spinner=False)
def overview(experiment_id: str) -> Overview:
    """Counts, judges and runs of the experiment."""
    return experiment_overview(experiment_id)


@st.cache_data(ttl=60, max_entries=16, show_spinner=False)
def reviewers(experiment_id: str) -> list[str]:
    """Everyone who has labeled in the experiment (the sidebar's name picker)."""
    from core.views.overview import reviewers as known

    return known(experiment_id)


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def demo_uses(experiment_id: str) -> list[str]:
    """Where the demo model is in use in the experiment (the sidebar's notice)."""
    from core.views.overview import demo_uses as uses

    return uses(experiment_id)


@st.cache_data(ttl=30, max_entries=32, show_spinner=False)
def queues_for(experiment_id: str, reviewer: str) -> list[str]:
    """Queue names to offer a reviewer (their own first)."""
    return work_lists(experiment_id, reviewer)


@st.cache_data(ttl=30, max_entries=32, show_spinner=False)
def queue_criteria(experiment_id: str, queue: str) -> list[str]:
    """The criteria a queue asks for (none for "All traces" or a queue that is gone)."""
    try:
        found = resolve_queue(experiment_id, queue)
    except NotFoundError:
        return []
    return list(found.criteria) if found is not None else []


# --- Label page: work lists and what each reviewer has done ------------------------------
#
# A work list can hold 100k trace ids. It is kept as one shared object per process
# (cache_resource: no copy per rerun) and read again only when its stamp, an index-only
# count/newest-time query asked at most every few seconds, says its membership changed.
# A reviewer's done-set is likewise shared and updated in place after each submit, so
# "submit and show the next pending trace" never re-reads either.


@st.cache_data(ttl=30, max_entries=64, show_spinner=False)
def _queue(experiment_id: str, queue: str, criterion: str) -> Queue | None:
    return resolve_queue(experiment_id, queue, criterion)


@st.cache_data(ttl=5, max_entries=64, show_spinner=False)
def _work_list_stamp(experiment_id: str, queue: str, criterion: str) -> tuple | None:
    return work_list_stamp(experiment_id, _queue(experiment_id, queue, criterion))


@st.cache_resource(max_entries=16, show_spinner="Loading the work list...")
def _work_list(experiment_id: str, queue: str, criterion: str, stamp: tuple | None) -> WorkList:
    # ``stamp`` is only part of the key: a changed membership means a new entry. Without
    # a stamp (no SQL store) the list is re-read when the stamp's own short TTL lapses.
    return load_work_list(experiment_id, _queue(experiment_id, queue, criterion))


class DoneSet:
    """One reviewer's labeled trace ids for one criterion, shared by their sessions.

    Re-read from the store after ``ttl`` seconds (labels written elsewhere: another
    server, the CLI); between reads, :meth:`add` records this server's own submits.
    The part on each work list is kept too, so a rerun never walks the whole set.
    """

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._ids: frozenset[str] = frozenset()
        self._loaded = float("-inf")
        self._lists: dict[tuple, tuple[WorkList, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def _refresh(self, experiment_id: str, criterion: str, reviewer: str) -> None:
        if time.monotonic() - self._loaded > self.ttl:
            self._ids = frozenset(labeled_ids(experiment_id, criterion, reviewer))
            self._loaded = time.monotonic()
            self._lists.clear()

    def get(self, experiment_id: str, criterion: str, reviewer: str) -> frozenset[str]:
        """Every labeled id, read again when older than ``ttl``."""
        with self._lock:
            self._refresh(experiment_id, criterion, reviewer)
            return self._ids

    def on(self, work: WorkList, criterion: str, reviewer: str) -> frozenset[str]:
        """The labeled ids on ``work`` (a :class:`Session`'s ``done``)."""
        with self._lock:
            self._refresh(work.experiment_id, criterion, reviewer)
            key = (work.queue, work.stamp, len(work))
            cached = self._lists.get(key)
            if cached is None or cached[0] is not work:
                cached = (work, within(work, self._ids))
                self._lists[key] = cached
            return cached[1]

    def add(self, trace_id: str) -> None:
        """Count ``trace_id`` as labeled (its label was just written)."""
        with self._lock:
            self._ids = self._ids | {trace_id}
            for key, (work, part) in self._lists.items():
                if trace_id in work.index:
                    self._lists[key] = (work, part | {trace_id})


@st.cache_resource(max_entries=256, show_spinner=False)
def _done(experiment_id: str, criterion: str, reviewer: str) -> DoneSet:
    return DoneSet()


def session(experiment_id: str, criterion: str, reviewer: str, queue: str) -> Session:
    """A reviewer's work list and what they have labeled in it.

    Raises:
        NotFoundError: no such queue.
        ValidationError: the queue does not ask for ``criterion``.
    """
    stamp = _work_list_stamp(experiment_id, queue, criterion)
    work = _work_list(experiment_id, queue, criterion, stamp)
    done: frozenset[str] = frozenset()
    if reviewer and work.trace_ids:
        done = _done(experiment_id, criterion, reviewer).on(work, criterion, reviewer)
    return Session.of(work, criterion, reviewer, done)


@st.cache_data(ttl=15, max_entries=256, show_spinner=False)
def trace(trace_id: str) -> TraceDetail:
    """One trace in full (inputs, outputs, labels, judge feedback)."""
    return get_trace(trace_id)


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def ratings(experiment_id: str, criterion: Criterion) -> Ratings:
    """Every human label and judge verdict for one criterion."""
    return load_ratings(experiment_id, criterion)


@st.cache_data(ttl=120, max_entries=4, show_spinner="Checking the file...")
def upload_preview(payload: bytes, filename: str, experiment_id: str) -> UploadPreview:
    """Validation of an uploaded file against the experiment (nothing is written)."""
    return preview_upload(payload, filename, experiment_id)


def after_label(trace_id: str, experiment_id: str, criterion: str, reviewer: str) -> None:
    """``reviewer`` labeled ``trace_id`` for ``criterion``: update or clear what shows it.

    Only caches a label changes are touched; none of them is re-read here (the Traces,
    Overview and Agreement pages read theirs again when next opened).
    """
    trace.clear(trace_id)
    _done(experiment_id, criterion, reviewer).add(trace_id)
    trace_table.clear()
    _label_keys.clear()
    overview.clear()
    ratings.clear()
    verdicts.clear()  # the Score page shows each verdict's human label


def after_import() -> None:
    """Traces (and maybe labels) were imported."""
    experiments.clear()
    upload_preview.clear()
    overview.clear()
    reviewers.clear()
    trace_table.clear()
    _label_keys.clear()
    criteria.clear()  # an import may have created criteria
    import_preview.clear()
    _work_list_stamp.clear()
    _done.clear()
    ratings.clear()
    verdicts.clear()


# --- Versions page -----------------------------------------------------------------------

# Imported with its section (appended to this module) rather than at the top.
from core.views import versions as vc  # noqa: E402


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def version_subjects(experiment_id: str) -> list[vc.Subject]:
    """Registered judges of the experiment and registered prompts."""
    return vc.list_subjects(experiment_id)


@st.cache_data(ttl=30, max_entries=64, show_spinner=False)
def version_summaries(experiment_id: str, kind: str, name: str) -> list[vc.VersionSummary]:
    """Versions of one judge or prompt, oldest first, with their aliases."""
    return vc.list_version_summaries(experiment_id, kind, name)


@st.cache_data(ttl=60, max_entries=64, show_spinner="Loading both versions...")
def version_comparison(
    experiment_id: str, kind: str, name: str, version_a: int, version_b: int
) -> vc.VersionComparison:
    """Two versions side by side: texts, word diff, test metrics, runs."""
    return vc.compare_versions(experiment_id, kind, name, version_a, version_b)


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def comparison_defaults(experiment_id: str, name: str):
    """What an on-demand comparison of two versions of ``name`` runs on (or None)."""
    return pr.comparison_defaults(experiment_id, name)


def after_alias() -> None:
    """An alias moved: clear what shows aliases."""
    version_subjects.clear()
    version_summaries.clear()
    version_comparison.clear()
    overview.clear()
    demo_uses.clear()


# --- alignment: Align and Run explorer pages --------------------------------------------


@st.cache_data(ttl=5, max_entries=8, show_spinner=False)
def jobs(experiment_id: str, limit: int = 30) -> list:
    """The experiment's alignment jobs (``JobStatus``), newest first."""
    from core.optimization.jobs import list_jobs

    return list_jobs(experiment_id, max_results=limit)


@st.cache_data(ttl=60, max_entries=16, show_spinner=False)
def starting_points(experiment_id: str, criterion: Criterion) -> list:
    """Instructions an alignment of ``criterion``'s judge can start from."""
    from core.optimization.settings import starting_points as points

    return points(experiment_id, criterion)


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def alignment_check(settings):
    """Pre-flight findings and cost estimate of an alignment (``AlignmentCheck``).

    No spinner of its own: the Launch callback calls it too, where none can be drawn.
    """
    from core.optimization.settings import check_alignment

    return check_alignment(settings)


@st.cache_data(ttl=600, max_entries=16, show_spinner="Loading the run...")
def run_view(run_id: str, status: str):
    """A run's full record (``RunView``). ``status`` is part of the key, so a run that
    moves on (finishes, is resumed) is read afresh; pass it from a fresh status read."""
    from core.views.runs import load_run_view

    return load_run_view(run_id)


def after_launch() -> None:
    """An alignment job was launched, resumed or cancelled."""
    jobs.clear()
    overview.clear()


def after_job_end() -> None:
    """A job ended (or an unalign ran): it may have registered a judge version."""
    jobs.clear()
    overview.clear()
    demo_uses.clear()
    starting_points.clear()


def after_unalign() -> None:
    """A MemAlign unalign created a run and a judge version."""
    after_job_end()


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def judge_versions(experiment_id: str, judge_name: str) -> list:
    """Registered versions of one judge, oldest first."""
    from core.optimization.registry import list_versions

    return list_versions(experiment_id, judge_name)


# --- prompt optimization: Optimize, Run explorer and Versions pages ---------------------

# Imported with their section (appended to this module) rather than at the top.
from core.views import optimize as ov  # noqa: E402
from core.views import prompt_runs as pr  # noqa: E402


@st.cache_data(ttl=30, max_entries=8, show_spinner=False)
def prompt_names() -> list[str]:
    """Every prompt in the Prompt Registry."""
    return ov.prompt_names()


@st.cache_data(ttl=30, max_entries=32, show_spinner=False)
def prompt_refs(name: str) -> list[ov.RefChoice]:
    """A prompt's aliases and versions, as the Optimize page offers them."""
    return ov.prompt_refs(name)


@st.cache_data(ttl=30, max_entries=32, show_spinner=False)
def prompt_choice(ref: str) -> ov.PromptChoiceView:
    """The prompt version a reference names now (template, variables)."""
    return ov.prompt_choice(ref)


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def judge_refs(experiment_id: str) -> list[ov.RefChoice]:
    """Registered judge versions and aliases of the experiment."""
    return ov.judge_refs(experiment_id)


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def eval_datasets(experiment_id: str) -> list[str]:
    """The experiment's MLflow evaluation datasets."""
    return ov.eval_datasets(experiment_id)


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def review_queues(experiment_id: str) -> list[str]:
    """Names of the experiment's review queues (the Optimize page's trace filter)."""
    from core.labeling.queues import list_queues

    return sorted(q.name for q in list_queues(experiment_id))


@st.cache_data(ttl=30, max_entries=16, show_spinner="Reading the dataset...")
def dataset_fields(
    source: str, queue: str | None, tags: tuple[tuple[str, str], ...]
) -> ov.DatasetFields:
    """Rows and input field paths of a dataset source (errors as data)."""
    return ov.dataset_fields(source, queue, dict(tags))


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def prompt_check(settings):
    """Pre-flight, estimate and preview of a prompt optimization (``PromptCheck``).

    No spinner of its own: the Launch callback calls it too, where none can be drawn.
    """
    from core.optimization.prompt_preflight import check_prompt_optimization

    return check_prompt_optimization(settings)


@st.cache_data(ttl=5, max_entries=8, show_spinner=False)
def prompt_runs(experiment_id: str, limit: int = pr.MAX_RUNS) -> list:
    """The experiment's prompt optimization runs (``JobStatus``), newest first."""
    return pr.list_prompt_runs(experiment_id, limit)


@st.cache_data(ttl=3, max_entries=8, show_spinner=False)
def same_active_prompt_run(settings) -> str | None:
    """An active prompt run with exactly these settings (the page asks before another)."""
    return pr.same_active_run(settings)


def after_prompt_launch() -> None:
    """A prompt optimization was launched or cancelled."""
    prompt_runs.clear()
    same_active_prompt_run.clear()
    overview.clear()


def after_prompt_job_end() -> None:
    """A prompt optimization ended: it may have registered a prompt version and alias."""
    prompt_runs.clear()
    prompt_refs.clear()
    prompt_choice.clear()
    after_alias()


def after_prompt_alias() -> None:
    """A prompt alias moved (e.g. promoted to production)."""
    prompt_refs.clear()
    prompt_choice.clear()
    after_alias()


def after_send_outputs() -> None:
    """A run's outputs became traces in a (maybe new) review queue."""
    after_import()
    queues_for.clear()
    queue_criteria.clear()
    _queue.clear()
    review_queues.clear()


def after_dataset_saved() -> None:
    """An evaluation dataset was created (an upload on the Optimize page)."""
    eval_datasets.clear()
    dataset_fields.clear()


# --- bulk scoring: Score and Agreement pages --------------------------------------------

# Imported with its section (appended to this module) rather than at the top.
from core.views import scores as sv  # noqa: E402


@st.cache_data(ttl=30, max_entries=16, show_spinner="Reading the verdicts...")
def verdicts(experiment_id: str, criterion: Criterion) -> sv.Verdicts:
    """Every verdict of the criterion's judge, with each trace's human label."""
    return sv.load_verdicts(experiment_id, criterion)


@st.cache_data(ttl=300, max_entries=64, show_spinner=False)
def judge_model(experiment_id: str, judge_name: str, version: int) -> str | None:
    """The model a registered judge version calls (to say when it is the demo)."""
    return sv.version_model(experiment_id, judge_name, version)


@st.cache_data(ttl=5, max_entries=8, show_spinner=False)
def score_jobs(experiment_id: str, limit: int = 20) -> list:
    """The experiment's bulk-scoring jobs (``JobStatus``), newest first."""
    from core.optimization.jobs import list_jobs
    from core.optimization.score_spec import KIND_SCORE

    return list_jobs(experiment_id, limit, kind=KIND_SCORE)


@st.cache_data(ttl=15, max_entries=16, show_spinner=False)
def score_check(settings):
    """Pre-flight of a bulk scoring (``ScoreCheck``: findings, selected, already scored).

    No spinner of its own: the Launch callback calls it too, where none can be drawn.
    """
    from core.optimization.bulk_scoring import check_scoring

    return check_scoring(settings)


def after_score_launch() -> None:
    """A bulk scoring was launched or cancelled."""
    score_jobs.clear()
    overview.clear()


def after_score_end() -> None:
    """A bulk scoring ended: it wrote verdicts."""
    score_jobs.clear()
    score_check.clear()
    verdicts.clear()
    ratings.clear()
    overview.clear()


# --- Traces page: Label next (active labeling) ---------------------------------------------

from core.views import active as active_view  # noqa: E402


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def criterion_queues(experiment_id: str, criterion: str) -> list[str]:
    """Names of the experiment's review queues that ask for ``criterion``, oldest first."""
    from core.labeling.queues import list_queues

    return [q.name for q in list_queues(experiment_id) if criterion in q.criteria]


@st.cache_data(ttl=15, max_entries=16, show_spinner="Ranking the unlabeled traces...")
def _label_next(experiment_id: str, criterion: str, queue: str) -> active_view.LabelNext:
    return active_view.label_next(experiment_id, criterion, queue, None)


def label_next(experiment_id: str, criterion: str, queue: str, n: int) -> active_view.LabelNext:
    """The ``n`` most informative unlabeled traces not yet in ``queue``, with reasons (the
    ranking is cached whatever ``n``: changing N re-ranks nothing)."""
    return _label_next(experiment_id, criterion, queue).top(n)


def after_fill_queue() -> None:
    """Traces were added to a (maybe new) review queue."""
    _label_next.clear()
    criterion_queues.clear()
    review_queues.clear()
    queues_for.clear()
    queue_criteria.clear()
    _queue.clear()
    _work_list_stamp.clear()


# --- Setup page: criteria, queues, rules, the team's progress ------------------------------

from core.labeling import rules as rules_store  # noqa: E402
from core.views import setup as setup_view  # noqa: E402


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def setup_criteria(experiment_id: str) -> list[setup_view.CriterionRow]:
    """The Setup page's criteria table (with each criterion's rules)."""
    return setup_view.criteria_rows(experiment_id)


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def setup_queues(experiment_id: str) -> list[Queue]:
    """The experiment's review queues, oldest first."""
    from core.labeling.queues import list_queues

    return list_queues(experiment_id)


@st.cache_data(ttl=30, max_entries=32, show_spinner=False)
def criterion_rules(experiment_id: str, criterion: str) -> rules_store.LabelRules:
    """A criterion's rules as the lead set them (defaults otherwise)."""
    return rules_store.criterion_rules(experiment_id, criterion)


@st.cache_data(ttl=30, max_entries=32, show_spinner=False)
def queue_rules(experiment_id: str, queue: str) -> rules_store.QueueRules:
    """A queue's overrides of its criteria's rules."""
    return rules_store.queue_rules(experiment_id, queue)


@st.cache_data(ttl=15, max_entries=16, show_spinner="Counting the team's progress...")
def team_progress(experiment_id: str) -> list[setup_view.QueueProgress]:
    """Every queue's progress per reviewer, MLflow's completed items and the flags."""
    return setup_view.team_progress(experiment_id)


def after_setup() -> None:
    """A criterion, queue, reviewer assignment or rule changed on the Setup page."""
    label_rules.clear()  # the Label page's rules in force
    criteria.clear()
    overview.clear()
    setup_criteria.clear()
    setup_queues.clear()
    criterion_rules.clear()
    queue_rules.clear()
    team_progress.clear()
    after_fill_queue()  # a queue's traces or reviewers may have changed


# ---- adjudication (the Adjudicate page) ------------------------------------------------
@st.cache_data(ttl=15, max_entries=32, show_spinner="Finding disagreements...")
def disputes(experiment_id: str, criterion: Criterion, include_resolved: bool) -> list:
    """The criterion's traces where reviewers disagree (``core.views.adjudication``)."""
    from core.views.adjudication import dispute_views

    return dispute_views(experiment_id, criterion, include_resolved=include_resolved)


@st.cache_data(ttl=15, max_entries=16, show_spinner=False)
def flags(experiment_id: str) -> list:
    """Every reviewer flag in the experiment, newest first."""
    from core.views.adjudication import flagged

    return flagged(experiment_id)


def after_adjudicate(trace_id: str) -> None:
    """A gold label was written on ``trace_id``: what shows it or consolidates it is stale."""
    disputes.clear()
    trace.clear(trace_id)
    verdicts.clear()  # the Score page shows each verdict's consolidated human label
    alignment_check.clear()  # the examples an alignment would use changed


# --- Traces page: the table ---------------------------------------------------------------

from core.views import traces as traces_view  # noqa: E402


@st.cache_data(ttl=15, max_entries=16, show_spinner=False)
def _label_keys(experiment_id: str, criterion: str) -> list[tuple[str, str]] | None:
    # (trace, reviewer) of a criterion's labels, shared by every page flip and filter.
    return traces_view.label_keys_of(experiment_id, criterion)


@st.cache_data(ttl=15, max_entries=64, show_spinner=False)
def trace_table(
    experiment_id: str,
    criterion: Criterion | None,
    labeled: bool | None,
    value: object,
    reviewer: str | None,
    text: str | None,
    page_size: int,
    token: str | None,
) -> traces_view.TraceTable:
    """One page of the Traces table (text, label, reviewers, verdict and link columns)."""
    return traces_view.trace_table(
        experiment_id,
        criterion,
        labeled=labeled,
        value=value,
        reviewer=reviewer,
        text=text,
        page_size=page_size,
        page_token=token,
        label_keys=_label_keys(experiment_id, criterion.name) if criterion else None,
    )


@st.cache_data(ttl=30, max_entries=8, show_spinner="Checking the file...")
def import_preview(
    payload: bytes, filename: str, experiment_id: str, create_criteria: bool
) -> UploadPreview:
    """Validation of an upload, with the criteria it would create (nothing is written)."""
    return preview_upload(payload, filename, experiment_id, create_criteria)


def after_queue_write() -> None:
    """Traces were put into a (maybe new) review queue from the Traces page."""
    after_fill_queue()


# --- Label page: the lead's rules and a reviewer's flags -----------------------------------


@st.cache_data(ttl=15, max_entries=64, show_spinner=False)
def label_rules(experiment_id: str, criterion: str, queue: str) -> LabelRules:
    """The rules in force for ``criterion`` in ``queue``'s work list (set on the Setup page)."""
    return effective_rules(experiment_id, criterion, queue or None)


class FlagSet:
    """One reviewer's flagged trace ids for one criterion, updated in place by this server.

    Like :class:`DoneSet`: re-read after ``ttl`` seconds (flags set elsewhere), so a flag
    or a clear never costs a search of the experiment.
    """

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._ids: frozenset[str] = frozenset()
        self._loaded = float("-inf")
        self._lock = threading.Lock()

    def get(self, experiment_id: str, criterion: str, reviewer: str) -> frozenset[str]:
        """The flagged ids, read again when older than ``ttl``."""
        with self._lock:
            if time.monotonic() - self._loaded > self.ttl:
                self._ids = flagged_ids(experiment_id, criterion, reviewer)
                self._loaded = time.monotonic()
            return self._ids

    def set(self, trace_id: str, flagged: bool) -> None:
        """Record this server's own flag (or clear) of ``trace_id``."""
        with self._lock:
            self._ids = self._ids | {trace_id} if flagged else self._ids - {trace_id}


@st.cache_resource(max_entries=256, show_spinner=False)
def _flags(experiment_id: str, criterion: str, reviewer: str) -> FlagSet:
    return FlagSet()


def flagged(experiment_id: str, criterion: str, reviewer: str) -> frozenset[str]:
    """Traces ``reviewer`` flagged for ``criterion`` (skipped by "next unlabeled")."""
    return _flags(experiment_id, criterion, reviewer).get(experiment_id, criterion, reviewer)


def after_flag(
    trace_id: str, experiment_id: str, criterion: str, reviewer: str, flagged: bool
) -> None:
    """``reviewer`` flagged (or cleared the flag of) ``trace_id`` for ``criterion``.

    Called by the Label page (the reviewer's own flag) and the Adjudicate page (the lead
    clears someone's flag).
    """
    flags.clear()
    trace.clear(trace_id)
    _flags(experiment_id, criterion, reviewer).set(trace_id, flagged)


def queue_object(experiment_id: str, queue: str, criterion: str) -> Queue | None:
    """The review queue behind a work list (None for "All traces"), cached."""
    return _queue(experiment_id, queue, criterion)


# --- Run explorer: run statuses now (issue 13) ------------------------------------------


def current_statuses(run_ids: tuple[str, ...]) -> dict:
    """Run id -> ``JobStatus`` read now, for the runs a cached job list saw active.

    Not cached: ``jobs`` is (5 s), and a run picker must not call a finished run
    "running". A status read of a local store is one sqlite query per run, and only the
    active runs (and the selected one) are passed. Unknown ids are left out.
    """
    from core.optimization.jobs import status

    out = {}
    for rid in run_ids:
        try:
            out[rid] = status(rid)
        except NotFoundError:
            continue
    return out


# --- Align and Optimize: live usage, Realign, fresh run statuses ------------------------


@st.cache_data(ttl=10, max_entries=64, show_spinner=False)
def run_usage(run_id: str, status: str, iteration: int | None) -> str:
    """A run's model usage line (``core.views.align.run_usage``). Runners log usage at
    iteration ends and the engine its totals before the final status, so ``status`` and
    ``iteration`` in the key make a new value read at once; the TTL covers the rest."""
    from core.views.align import read_run_usage

    return read_run_usage(run_id, active=status in ("queued", "running"))


@st.cache_data(ttl=30, max_entries=32, show_spinner=False)
def realign_offer(experiment_id: str, judge_name: str, stamp: tuple = ()):
    """Whether a judge has a MemAlign version to realign and how many labels are new
    (``core.views.align.RealignOffer``). ``stamp`` (the judge's runs and their statuses,
    as the page read them) is part of the key, so a run that registers a version is seen
    at once; labels added elsewhere show within the TTL."""
    from core.views.align import realign_offer as offer

    return offer(experiment_id, judge_name)


def after_realign() -> None:
    """A realign registered a judge version (and recorded a run)."""
    realign_offer.clear()
    judge_versions.clear()
    after_job_end()
