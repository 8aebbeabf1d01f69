"""Cached reads from core, shared by the pages, and the precise invalidation after writes.

Every function here is one core call behind ``st.cache_data`` with a TTL and a bound, so
several users and tabs share reads while a write by another process shows up within
seconds. After a write, the page calls the matching ``after_*`` function, which clears
only the caches that write made stale.
"""

from __future__ import annotations

import streamlit as st

from core import config
from core.agreement_views import Ratings, load_ratings
from core.criteria import Criterion, list_criteria
from core.files import UploadPreview, preview_upload
from core.labeling import Session, load_session, work_lists
from core.overview import Overview, experiment_overview
from core.store import list_experiments
from core.traces import TraceDetail, TracePage, get_trace, list_traces


@st.cache_resource(show_spinner=False)
def _configured() -> str:
    # Once per process: point MLflow at the store (env var or the local data folder).
    return config.configure()


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


@st.cache_data(ttl=30, max_entries=32, show_spinner=False)
def queues_for(experiment_id: str, reviewer: str) -> list[str]:
    """Queue names to offer a reviewer (their own first)."""
    return work_lists(experiment_id, reviewer)


@st.cache_data(ttl=15, max_entries=64, show_spinner=False)
def session(experiment_id: str, criterion: str, reviewer: str, queue: str) -> Session:
    """A reviewer's work list and what they have labeled in it."""
    return load_session(experiment_id, criterion, reviewer, queue)


@st.cache_data(ttl=15, max_entries=256, show_spinner=False)
def trace(trace_id: str) -> TraceDetail:
    """One trace in full (inputs, outputs, labels, judge feedback)."""
    return get_trace(trace_id)


@st.cache_data(ttl=15, max_entries=128, show_spinner=False)
def trace_page(
    experiment_id: str,
    criterion: str | None,
    labeled: bool | None,
    value: object,
    reviewer: str | None,
    text: str | None,
    page_size: int,
    token: str | None,
) -> TracePage:
    """One page of the filtered trace list."""
    return list_traces(
        experiment_id,
        criterion=criterion,
        labeled=labeled,
        value=value,
        reviewer=reviewer,
        text=text,
        page_size=page_size,
        page_token=token,
    )


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def ratings(experiment_id: str, criterion: Criterion) -> Ratings:
    """Every human label and judge verdict for one criterion."""
    return load_ratings(experiment_id, criterion)


@st.cache_data(ttl=120, max_entries=4, show_spinner="Checking the file...")
def upload_preview(payload: bytes, filename: str, experiment_id: str) -> UploadPreview:
    """Validation of an uploaded file against the experiment (nothing is written)."""
    return preview_upload(payload, filename, experiment_id)


def after_label(trace_id: str) -> None:
    """A label was written on ``trace_id``: clear what shows labels."""
    trace.clear(trace_id)
    session.clear()
    trace_page.clear()
    overview.clear()
    ratings.clear()


def after_import() -> None:
    """Traces (and maybe labels) were imported."""
    experiments.clear()
    upload_preview.clear()
    overview.clear()
    trace_page.clear()
    session.clear()
    ratings.clear()


# --- Versions page -----------------------------------------------------------------------

# Imported with its section (appended to this module) rather than at the top.
from core import version_compare as vc  # noqa: E402


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


def after_alias() -> None:
    """An alias moved: clear what shows aliases."""
    version_subjects.clear()
    version_summaries.clear()
    version_comparison.clear()
    overview.clear()


# --- alignment: Align and Run explorer pages --------------------------------------------


@st.cache_data(ttl=5, max_entries=8, show_spinner=False)
def jobs(experiment_id: str, limit: int = 30) -> list:
    """The experiment's alignment jobs (``JobStatus``), newest first."""
    from core.alignment.jobs import list_jobs

    return list_jobs(experiment_id, max_results=limit)


@st.cache_data(ttl=60, max_entries=16, show_spinner=False)
def starting_points(experiment_id: str, criterion: Criterion) -> list:
    """Instructions an alignment of ``criterion``'s judge can start from."""
    from core.judges import starting_points as points

    return points(experiment_id, criterion)


@st.cache_data(ttl=30, max_entries=16, show_spinner="Checking the alignment...")
def alignment_check(settings):
    """Pre-flight findings and cost estimate of an alignment (``AlignmentCheck``)."""
    from core.judges import check_alignment

    return check_alignment(settings)


@st.cache_data(ttl=600, max_entries=16, show_spinner="Loading the run...")
def run_view(run_id: str, status: str):
    """A run's full record (``RunView``). ``status`` is part of the key, so a run that
    moves on (finishes, is resumed) is read afresh; pass it from a fresh status read."""
    from core.run_views import load_run_view

    return load_run_view(run_id)


def after_launch() -> None:
    """An alignment job was launched, resumed or cancelled."""
    jobs.clear()
    overview.clear()


def after_job_end() -> None:
    """A job ended (or an unalign ran): it may have registered a judge version."""
    jobs.clear()
    overview.clear()
    starting_points.clear()


def after_unalign() -> None:
    """A MemAlign unalign created a run and a judge version."""
    after_job_end()


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def judge_versions(experiment_id: str, judge_name: str) -> list:
    """Registered versions of one judge, oldest first."""
    from core.alignment.registry import list_versions

    return list_versions(experiment_id, judge_name)
