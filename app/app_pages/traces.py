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
from core.labeling.queues import add_traces, create_queue, get_queue
from core.views import active as active_view
from core.views.formatting import duration

PAGE_SIZE = 25
SHOW = {"All": None, "Unlabeled": False, "Labeled": True}
ANY = "(any)"

ctx = shell.require_context()
init_page_state(
    "traces",
    {
        "tokens": [None],
        "gen": 0,
        "queue_error": None,
        "queue_result": None,
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
    ss["traces_gen"] += 1


def _next_page(token: str) -> None:
    ss["traces_tokens"] = [*ss["traces_tokens"], token]
    ss["traces_gen"] += 1


def _previous_page() -> None:
    ss["traces_tokens"] = ss["traces_tokens"][:-1] or [None]
    ss["traces_gen"] += 1


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
    table = data.trace_table(
        ctx.experiment_id,
        crit,
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
total = f" of {table.total:,}" if table.total is not None else ""
st.caption(
    f"Page {page_no} · {len(table.rows)} traces shown{total}"
    + (f" · label, reviewers and judge columns for {crit.name}" if crit else "")
    + ". Select rows to put them into a queue; copy a cell to copy a full trace id."
)
rows = table.table()
event = st.dataframe(
    rows,
    hide_index=True,
    # A new key per page and filter: a selection never points at another page's rows.
    key=f"traces_table_{ss['traces_gen']}",
    on_select="rerun",
    selection_mode="multi-row",
    column_config={
        # A full id is "tr-" and 32 hex digits: wide enough never to cut it.
        "trace": st.column_config.TextColumn("trace id", width=300),
        "open": st.column_config.LinkColumn(
            "open", display_text="Open in Label", width=115, help="Open the trace in Label"
        ),
        "request": st.column_config.TextColumn(width="large"),
        "response": st.column_config.TextColumn(width="large"),
        "label": st.column_config.TextColumn(help="The consolidated human label"),
        "reviewers": st.column_config.TextColumn(help="Who labeled the trace"),
        "judge": st.column_config.TextColumn(help="The judge's latest verdict"),
    },
)
pager = st.columns([1.5, 1.5, 3, 3])
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
    args=(table.next_page_token,),
    disabled=table.next_page_token is None,
    icon=":material/chevron_right:",
)
picked = [i for i in (event.selection.rows if event is not None else []) if i < len(rows)]
selected_ids = [rows[i]["trace"] for i in picked]
if len(selected_ids) == 1:
    pager[2].page_link(
        nav.page_path("label.py"),
        label="Open selected trace in Label",
        icon=":material/rate_review:",
        query_params={"trace": selected_ids[0]},
    )
else:
    pager[2].caption("Select rows to queue them, or one to open it in the Label page.")


# ---- queue from selection --------------------------------------------------------------


def _queue_done(message: str) -> None:
    data.after_queue_write()
    ss["traces_queue_error"] = None
    ss["traces_queue_result"] = message
    ss["traces_gen"] += 1  # clear the selection


def _create_queue_from(ids: tuple[str, ...]) -> None:
    name = (ss.get("traces_sel_name") or "").strip()
    criteria = list(ss.get("traces_sel_criteria") or [])
    who = [r.strip() for r in ss.get("traces_sel_reviewers") or [] if r and r.strip()]
    problem = None
    if not name:
        problem = "Name the new queue."
    elif not criteria:
        problem = "Pick at least one criterion the queue's reviewers label."
    elif not who:
        problem = "Assign at least one reviewer: a queue without reviewers is never worked."
    if problem:
        ss["traces_queue_error"], ss["traces_queue_result"] = problem, None
        return
    try:
        q = create_queue(ctx.experiment_id, name, criteria, who)
        n = add_traces(q, ids)
    except AlignboardError as exc:
        ss["traces_queue_error"], ss["traces_queue_result"] = str(exc), None
        return
    _queue_done(f"Created queue {name} with {n} traces for {', '.join(who)}.")


def _add_to_queue(ids: tuple[str, ...]) -> None:
    name = ss.get("traces_sel_queue")
    if not name:
        ss["traces_queue_error"], ss["traces_queue_result"] = "Pick a queue.", None
        return
    try:
        n = add_traces(get_queue(ctx.experiment_id, name), ids)
    except AlignboardError as exc:
        ss["traces_queue_error"], ss["traces_queue_result"] = str(exc), None
        return
    _queue_done(f"Added {n} traces to queue {name}.")


if selected_ids:
    with st.container(border=True):
        st.markdown(f"**{len(selected_ids)} selected trace(s)**")
        make, add = st.tabs(["Create queue from selection", "Add to existing queue"])
        with make:
            c = st.columns([2, 3, 3], vertical_alignment="bottom")
            c[0].text_input("Queue name", key="traces_sel_name", placeholder="e.g. week-12")
            c[1].multiselect(
                "Criteria",
                crit_names,
                default=[crit.name] if crit else None,
                key="traces_sel_criteria",
            )
            c[2].multiselect(
                "Reviewers (at least one)",
                data.reviewers(ctx.experiment_id),
                key="traces_sel_reviewers",
                accept_new_options=True,
                placeholder="pick or type names",
            )
            st.button(
                "Create queue from selection",
                key="traces_sel_create",
                type="primary",
                on_click=_create_queue_from,
                args=(tuple(selected_ids),),
                icon=":material/playlist_add:",
            )
        with add:
            names = data.review_queues(ctx.experiment_id)
            a = st.columns([3, 2], vertical_alignment="bottom")
            a[0].selectbox(
                "Queue", names, key="traces_sel_queue", index=None, placeholder="pick a queue"
            )
            a[1].button(
                "Add to queue",
                key="traces_sel_add",
                on_click=_add_to_queue,
                args=(tuple(selected_ids),),
                disabled=not names,
                icon=":material/playlist_add:",
            )
if ss["traces_queue_error"]:
    st.error(ss["traces_queue_error"])
elif ss["traces_queue_result"]:
    st.success(ss["traces_queue_result"])

# ---- import ----------------------------------------------------------------------------
st.subheader("Import traces")
st.caption(
    "JSON Lines or CSV, one trace per record with optional labels. The whole file is "
    "checked first; nothing is written until you press Import, and a file with any bad "
    "row imports nothing."
)
upload = st.file_uploader("File", type=["jsonl", "json", "csv"], key="traces_upload")
NO_QUEUE = "(no queue)"
NEW_IMPORT_QUEUE = "(new queue)"


def _import(
    payload: bytes, filename: str, on_existing: Literal["error", "skip"], create: bool
) -> None:
    choice = ss.get("traces_import_queue") or NO_QUEUE
    queue = None
    who: list[str] = []
    if choice == NEW_IMPORT_QUEUE:
        queue = (ss.get("traces_import_queue_name") or "").strip()
        who = list(ss.get("traces_import_reviewers") or [])
        if not queue:
            ss["traces_import_error"] = "Name the new queue. Nothing was written."
            ss["traces_import_result"] = None
            return
    elif choice != NO_QUEUE:
        queue = choice
    try:
        result = import_upload(
            payload,
            filename,
            ctx.experiment_name,
            on_existing=on_existing,
            create_criteria=create,
            queue=queue,
            reviewers=who,
        )
    except AlignboardError as exc:
        ss["traces_import_error"] = str(exc)
        ss["traces_import_result"] = None
        return
    data.after_import()
    if result.queue:
        data.after_queue_write()
    ss["traces_import_error"] = None
    ss["traces_import_result"] = (
        f"Imported {result.traces_written} traces and {result.labels_written} labels "
        f"from {filename} in {duration(result.seconds)}"
        + (f"; {result.skipped} already there were skipped." if result.skipped else ".")
        + (
            f" Created criteria {', '.join(result.criteria_created)}: check their "
            "instructions on the Setup page."
            if result.criteria_created
            else ""
        )
        + (f" Put {result.queued} traces into queue {result.queue}." if result.queue else "")
    )


if upload is not None:
    payload = upload.getvalue()
    create = bool(ss.get("traces_create_criteria", False))
    preview: UploadPreview | None
    try:
        preview = data.import_preview(payload, upload.name, ctx.experiment_id, create)
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
        if preview.new_criteria or preview.criteria_problems:
            st.markdown("**Criteria the file names that this experiment lacks**")
            if preview.new_criteria:
                st.dataframe(
                    preview.criteria_table(),
                    hide_index=True,
                    key="traces_import_criteria",
                )
            for problem in preview.criteria_problems:
                st.error(problem)
            st.checkbox(
                "Create missing criteria",
                key="traces_create_criteria",
                help="Creates each criterion above with the inferred kind before importing. "
                "Without instructions in the file they get a placeholder: edit it.",
                disabled=bool(preview.criteria_problems),
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
        q = st.columns([2, 2, 3], vertical_alignment="bottom")
        queue_choice = q[0].selectbox(
            "Put the imported traces into a queue",
            [NO_QUEUE, NEW_IMPORT_QUEUE, *data.review_queues(ctx.experiment_id)],
            key="traces_import_queue",
        )
        if queue_choice == NEW_IMPORT_QUEUE:
            q[1].text_input("New queue name", key="traces_import_queue_name")
            q[2].multiselect(
                "Reviewers (at least one)",
                data.reviewers(ctx.experiment_id),
                key="traces_import_reviewers",
                accept_new_options=True,
                placeholder="pick or type names",
            )
        st.button(
            f"Import {preview.records} traces",
            key="traces_import",
            type="primary",
            disabled=not preview.ok,
            on_click=_import,
            args=(payload, upload.name, on_existing, create),
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
            "Assign reviewers (a new queue needs at least one; added to an existing queue's)",
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
