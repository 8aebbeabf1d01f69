"""Traces: browse and filter the experiment's traces, pick the most informative ones to
label next (active labeling), import a file, export labels."""

from __future__ import annotations

from typing import Literal

import streamlit as st

from app.components import data, nav, shell
from app.components.state import init_page_state
from core.errors import AlignboardError
from core.io.uploads import UploadPreview, export_bytes, import_upload
from core.labeling.active import fill_queue
from core.labeling.criteria import display_value
from core.views import active as active_view
from core.views.formatting import duration, preview_text, when_ms

PAGE_SIZE = 25
SHOW = {"All": None, "Unlabeled": False, "Labeled": True}
ANY = "(any)"

ctx = shell.require_context()
init_page_state(
    "traces",
    {
        "tokens": [None],
        "import_result": None,
        "import_error": None,
        "next_n": active_view.DEFAULT_N,
        "next_result": None,
        "next_error": None,
    },
)
st.title("Traces")
crits = data.criteria(ctx.experiment_id)
ss = st.session_state


def _first_page() -> None:
    ss["traces_tokens"] = [None]


def _next_page(token: str) -> None:
    ss["traces_tokens"] = [*ss["traces_tokens"], token]


def _previous_page() -> None:
    ss["traces_tokens"] = ss["traces_tokens"][:-1] or [None]


# ---- filters ---------------------------------------------------------------------------
crit_names = [c.name for c in crits]
f = st.columns([2, 3, 2, 2, 3], vertical_alignment="bottom")
crit_name = f[0].selectbox(
    "Criterion", crit_names or [ANY], key="traces_criterion", on_change=_first_page
)
crit = next((c for c in crits if c.name == crit_name), None)
show = f[1].segmented_control(
    "Show", list(SHOW), key="traces_show", default="All", on_change=_first_page
)
value_choices = [ANY]
if crit is not None and crit.kind != "numeric":
    value_choices += (
        [crit.positive_label, crit.negative_label]
        if crit.kind == "pass_fail"
        else list(crit.options)
    )
value = f[2].selectbox("Value", value_choices, key="traces_value", on_change=_first_page)
reviewers = [ANY, *data.overview(ctx.experiment_id).reviewers]
reviewer = f[3].selectbox("Reviewer", reviewers, key="traces_reviewer", on_change=_first_page)
text = f[4].text_input(
    "Search text",
    key="traces_text",
    placeholder="words in the inputs or outputs",
    on_change=_first_page,
)

labeled = SHOW.get(show or "All")
token = ss["traces_tokens"][-1]
try:
    page = data.trace_page(
        ctx.experiment_id,
        crit.name if crit else None,
        labeled if crit else None,
        None if value == ANY or crit is None else value,
        None if reviewer == ANY or crit is None else reviewer,
        text.strip() or None,
        PAGE_SIZE,
        token,
    )
except AlignboardError as exc:
    st.error(str(exc))
    st.stop()

page_no = len(ss["traces_tokens"])
total = f" of {page.total:,}" if page.total is not None else ""
st.caption(f"Page {page_no} · {len(page.rows)} traces shown{total}")
rows = [
    {
        "trace": r.trace_id,
        "time": when_ms(r.timestamp_ms, utc=True),
        "request": preview_text(r.request_preview)[:200],
        "response": preview_text(r.response_preview)[:200],
        "labels": ", ".join(
            f"{who}: {display_value(crit, v) if crit else v}" for who, v in sorted(r.labels.items())
        ),
    }
    for r in page.rows
]
event = st.dataframe(
    rows,
    hide_index=True,
    key="traces_table",
    on_select="rerun",
    selection_mode="single-row",
    column_config={
        "trace": st.column_config.TextColumn(width="small"),
        "request": st.column_config.TextColumn(width="large"),
        "response": st.column_config.TextColumn(width="large"),
    },
)
pager = st.columns([1, 1, 2, 4])
pager[0].button(
    "Previous page",
    key="traces_prev",
    on_click=_previous_page,
    disabled=page_no == 1,
    icon=":material/chevron_left:",
)
pager[1].button(
    "Next page",
    key="traces_next",
    on_click=_next_page,
    args=(page.next_page_token,),
    disabled=page.next_page_token is None,
    icon=":material/chevron_right:",
)
selected = event.selection.rows if event is not None else []
if selected and selected[0] < len(rows):
    pager[2].page_link(
        nav.page_path("label.py"),
        label="Open selected trace in Label",
        icon=":material/rate_review:",
        query_params={"trace": rows[selected[0]]["trace"]},
    )
else:
    pager[2].caption("Select a row to open it in the Label page.")

# ---- import ----------------------------------------------------------------------------
st.subheader("Import traces")
st.caption(
    "JSON Lines or CSV, one trace per record with optional labels. The whole file is "
    "checked first; nothing is written until you press Import, and a file with any bad "
    "row imports nothing."
)
upload = st.file_uploader("File", type=["jsonl", "json", "csv"], key="traces_upload")


def _import(payload: bytes, filename: str, on_existing: Literal["error", "skip"]) -> None:
    try:
        result = import_upload(payload, filename, ctx.experiment_name, on_existing=on_existing)
    except AlignboardError as exc:
        ss["traces_import_error"] = str(exc)
        ss["traces_import_result"] = None
        return
    data.after_import()
    ss["traces_import_error"] = None
    ss["traces_import_result"] = (
        f"Imported {result.traces_written} traces and {result.labels_written} labels "
        f"from {filename} in {duration(result.seconds)}"
        + (f"; {result.skipped} already there were skipped." if result.skipped else ".")
    )


if upload is not None:
    payload = upload.getvalue()
    preview: UploadPreview | None
    try:
        preview = data.upload_preview(payload, upload.name, ctx.experiment_id)
    except AlignboardError as exc:
        preview = None
        st.error(str(exc))
    if preview is not None:
        m = st.columns(3)
        m[0].metric("Valid traces", preview.records)
        m[1].metric("Labels", preview.labels)
        m[2].metric("Rows with errors", len(preview.errors))
        if preview.errors:
            st.error(
                f"{len(preview.errors)} row(s) have errors; fix them and upload again. "
                "Nothing has been written."
            )
            st.dataframe(
                [{"line": line, "problem": reason} for line, reason in preview.errors],
                hide_index=True,
                key="traces_import_errors",
            )
        if preview.sample:
            st.caption(f"First {len(preview.sample)} valid record(s):")
            st.dataframe(
                [
                    {
                        "line": r["line"],
                        "id": r["id"],
                        "inputs": str(r["inputs"])[:200],
                        "outputs": str(r["outputs"])[:200],
                        "labels": len(r["labels"]),
                    }
                    for r in preview.sample
                ],
                hide_index=True,
                key="traces_import_sample",
            )
        on_existing = st.radio(
            "Records imported before (same id)",
            ["skip", "error"],
            format_func={"skip": "skip them", "error": "reject the file"}.get,
            horizontal=True,
            key="traces_on_existing",
        )
        st.button(
            f"Import {preview.records} traces",
            key="traces_import",
            type="primary",
            disabled=not preview.ok,
            on_click=_import,
            args=(payload, upload.name, on_existing),
        )
if ss["traces_import_error"]:
    st.error(ss["traces_import_error"])
elif ss["traces_import_result"]:
    st.success(ss["traces_import_result"])

# ---- export ----------------------------------------------------------------------------
st.subheader("Export labels")
e = st.columns([1, 2, 2], vertical_alignment="bottom")
formats: list[Literal["csv", "jsonl"]] = ["csv", "jsonl"]
fmt = e[0].selectbox("Format", formats, key="traces_export_fmt")
export_crit = e[1].selectbox("Criterion", [ANY, *crit_names], key="traces_export_criterion")
e[2].download_button(
    "Download labels",
    data=lambda: export_bytes(ctx.experiment_id, fmt, None if export_crit == ANY else export_crit),
    file_name=f"{ctx.experiment_name}-labels.{fmt}",
    mime="text/csv" if fmt == "csv" else "application/x-ndjson",
    key="traces_export",
    icon=":material/download:",
    on_click="ignore",
)

# ---- label next (active labeling) ------------------------------------------------------
NEW_QUEUE = "(new queue)"


def _fill_queue(criterion: str, queue: str, n: int, reviewers: tuple[str, ...]) -> None:
    try:
        picks = fill_queue(ctx.experiment_id, criterion, queue, n, reviewers=reviewers)
    except AlignboardError as exc:
        ss["traces_next_error"] = str(exc)
        ss["traces_next_result"] = None
        return
    data.after_fill_queue()
    ss["traces_next_error"] = None
    ss["traces_next_result"] = active_view.added_message(len(picks), queue)
    ss["traces_next_queue"] = queue  # the queue exists now: keep filling it
    ss["traces_next_new"] = ""


with st.expander("Label next: the most informative unlabeled traces", icon=":material/target:"):
    if not crit_names:
        st.info("Create a criterion first: the ranking is per criterion.")
    else:
        st.caption(
            "Traces where a label teaches most come first: two judge versions disagree, the "
            "judge's verdict differs from the humans' labels on the most similar traces, or "
            "the judge is unsure. Each row says why it was picked."
        )
        a = st.columns([2, 1, 2, 2], vertical_alignment="bottom")
        next_crit = a[0].selectbox("Criterion", crit_names, key="traces_next_criterion")
        n = int(a[1].number_input("N", min_value=1, max_value=500, step=1, key="traces_next_n"))
        existing = data.criterion_queues(ctx.experiment_id, next_crit)
        choice = a[2].selectbox("Queue", [NEW_QUEUE, *existing], key="traces_next_queue")
        default_name = f"{next_crit}-next"
        new_name = a[3].text_input(
            "New queue name",
            key="traces_next_new",
            placeholder=default_name,
            disabled=choice != NEW_QUEUE,
        )
        queue = (new_name.strip() or default_name) if choice == NEW_QUEUE else choice
        assign = st.multiselect(
            "Assign reviewers (optional; added to the queue's reviewers)",
            data.reviewers(ctx.experiment_id),
            key="traces_next_reviewers",
            accept_new_options=True,
        )
        view: active_view.LabelNext | None
        try:
            view = data.label_next(ctx.experiment_id, next_crit, queue, n)
        except AlignboardError as exc:
            view = None
            st.error(str(exc))
        if view is not None:
            st.caption(view.summary)
            for note in view.notes:
                st.info(note)
            if view.rows:
                st.dataframe(
                    view.table(),
                    hide_index=True,
                    key="traces_next_table",
                    column_config={
                        "rank": st.column_config.NumberColumn(width="small"),
                        "trace": st.column_config.TextColumn(width="small"),
                        "why": st.column_config.TextColumn("why it was picked", width="large"),
                        "score": st.column_config.NumberColumn(format="%.2f", width="small"),
                        "request": st.column_config.TextColumn(width="medium"),
                        "response": st.column_config.TextColumn(width="medium"),
                    },
                )
            st.button(
                view.button_label,
                key="traces_next_add",
                type="primary",
                disabled=not view.rows,
                on_click=_fill_queue,
                args=(next_crit, queue, n, tuple(assign)),
                icon=":material/playlist_add:",
            )
    if ss["traces_next_error"]:
        st.error(ss["traces_next_error"])
    elif ss["traces_next_result"]:
        st.success(ss["traces_next_result"])
