"""alignboard dashboard, minimal first page: list an experiment's traces and label one.

Thin by design: every read and write is one call into ``core``. Trace content is
always rendered as text (``st.text``/``st.code``), never as markdown or HTML.
"""

from __future__ import annotations

import json

import streamlit as st

from core import config
from core.criteria import display_value, list_criteria
from core.errors import AlignboardError
from core.labels import set_label
from core.store import list_experiments
from core.traces import get_trace, list_traces

st.set_page_config(page_title="alignboard", layout="wide")
config.configure()

PAGE_SIZE = 25


@st.cache_data(ttl=30, max_entries=8)
def _experiments() -> list[tuple[str, str]]:
    return [(e.experiment_id, e.name) for e in list_experiments()]


@st.cache_data(ttl=30, max_entries=32)
def _criteria(experiment_id: str):
    return list_criteria(experiment_id)


@st.cache_data(ttl=10, max_entries=64)
def _page(experiment_id: str, criterion: str | None, labeled: bool | None, token: str | None):
    return list_traces(
        experiment_id, criterion=criterion, labeled=labeled, page_size=PAGE_SIZE, page_token=token
    )


def _as_text(value) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _on_submit(trace_id: str, criterion, reviewer: str) -> None:
    value = st.session_state["label_value"]
    rationale = st.session_state.get("label_rationale") or None
    try:
        set_label(trace_id, criterion, reviewer, value, rationale)
    except AlignboardError as exc:
        st.session_state["label_error"] = str(exc)
        return
    st.session_state["label_error"] = None
    st.session_state["label_saved"] = f"Saved {display_value(criterion, value)} on {trace_id}."
    _page.clear()  # the labeled/unlabeled filter is stale now


st.session_state.setdefault("reviewer", "")
st.session_state.setdefault("label_error", None)
st.session_state.setdefault("label_saved", None)

st.title("alignboard")
st.caption(
    "Label LLM traces: a value and a written rationale. (First page; the full dashboard follows.)"
)

exps = _experiments()
if not exps:
    st.info(
        "No experiments yet. Run `alignboard seed-demo` or `alignboard import FILE --experiment NAME`."
    )
    st.stop()

with st.sidebar:
    names = [n for _, n in exps]
    exp_name = st.selectbox("Experiment", names, key="experiment")
    exp_id = dict((n, i) for i, n in exps)[exp_name]
    st.text_input("Your name (reviewer)", key="reviewer", placeholder="e.g. maria.chen")
    crits = _criteria(exp_id)
    crit = None
    if crits:
        crit_name = st.selectbox("Criterion", [c.name for c in crits], key="criterion")
        crit = next(c for c in crits if c.name == crit_name)
    show = st.radio("Show", ["All", "Unlabeled", "Labeled"], horizontal=True, key="show")

labeled = {"All": None, "Unlabeled": False, "Labeled": True}[show]
page = _page(exp_id, crit.name if crit else None, labeled if crit else None, None)
st.subheader(f"Traces ({page.total if page.total is not None else len(page.rows)})")
table = [
    {
        "trace": r.trace_id,
        "request": (r.request_preview or "")[:120],
        "response": (r.response_preview or "")[:120],
        "labels": ", ".join(f"{k}: {v}" for k, v in r.labels.items()),
    }
    for r in page.rows
]
st.dataframe(table, hide_index=True, width="stretch")

if not page.rows:
    st.stop()

trace_id = st.selectbox("Trace to label", [r.trace_id for r in page.rows], key="trace_id")
detail = get_trace(trace_id)
left, right = st.columns(2)
with left:
    st.markdown("**Inputs**")
    st.code(_as_text(detail.inputs), language=None, wrap_lines=True)
with right:
    st.markdown("**Outputs**")
    st.code(_as_text(detail.outputs), language=None, wrap_lines=True)

if crit is None:
    st.warning(
        "This experiment has no criteria yet: create one with `alignboard criterion create`."
    )
    st.stop()

st.markdown(f"**Criterion: {crit.name}**")
st.text(crit.instructions)
if crit.kind == "pass_fail":
    options = [crit.positive_label, crit.negative_label]
elif crit.kind == "categorical":
    options = list(crit.options)
else:
    options = None

with st.form("label_form", clear_on_submit=True):
    if options is not None:
        st.radio("Value", options, key="label_value", horizontal=True)
    else:
        st.number_input(
            "Value", key="label_value", min_value=crit.min_value, max_value=crit.max_value
        )
    st.text_area(
        "Rationale", key="label_rationale", placeholder="Why? Quote the phrase that decided it."
    )
    submitted = st.form_submit_button(
        "Submit label",
        on_click=_on_submit,
        args=(trace_id, crit, st.session_state["reviewer"]),
        disabled=not st.session_state["reviewer"].strip(),
    )

if not st.session_state["reviewer"].strip():
    st.info("Enter your name in the sidebar to label.")
if st.session_state["label_error"]:
    st.error(st.session_state["label_error"])
elif st.session_state["label_saved"]:
    st.success(st.session_state["label_saved"])

for lab in detail.labels:
    if lab.criterion == crit.name:
        st.text(f"{lab.reviewer}: {display_value(crit, lab.value)} - {lab.rationale or ''}")
