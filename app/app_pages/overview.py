"""Overview: the experiment at a glance."""

from __future__ import annotations

import streamlit as st

from app.components import data, nav, shell, workers_notice
from core.views.formatting import when_ms
from core.views.overview import DEMO_NOTE

ctx = shell.require_context()
ov = data.overview(ctx.experiment_id)

st.title("Overview")
st.caption(f"Experiment {ctx.experiment_name} (id {ctx.experiment_id})")
workers_notice.overview_line()
if ov.demo_uses:
    st.warning(
        "**The demo model is in use in this experiment.** " + DEMO_NOTE, icon=":material/science:"
    )

cols = st.columns(4)
cols[0].metric("Traces", f"{ov.traces:,}")
cols[1].metric("Criteria", len(ov.criteria))
cols[2].metric("Reviewers", len(ov.reviewers))
cols[3].metric("Registered judges", len(ov.judges))

st.subheader("Labels")
if not ov.criteria:
    st.info("No criteria yet: create one with `alignboard criterion create`.")
for c in ov.criteria:
    with st.container(border=True):
        st.markdown(f"**{c.criterion}** · {c.kind.replace('_', '/')}")
        m = st.columns(4)
        m[0].metric(
            "Labeled traces", c.labeled_traces, help="Traces with at least one human label."
        )
        m[1].metric(
            "Unlabeled",
            max(ov.traces - c.labeled_traces, 0),
        )
        m[2].metric(
            "Labeled by 2+ reviewers",
            c.multi_labeled,
            help="What reviewer agreement is computed on.",
        )
        m[3].metric("Judged traces", c.judged_traces, help="Traces with a judge verdict.")
        if c.per_reviewer:
            st.dataframe(
                [{"reviewer": r, "traces labeled": n} for r, n in c.per_reviewer.items()],
                hide_index=True,
            )

st.subheader("Judges and versions")
if not ov.judges:
    st.caption(
        "No registered judge yet. An alignment registers each judge it produces as a new version."
    )
else:
    st.dataframe(
        [
            {
                "judge": j.name,
                "latest version": j.latest_version,
                "versions": j.versions,
                "aliases": ", ".join(f"{a} -> v{v}" for a, v in j.aliases.items()),
                "optimizer": j.latest_optimizer or "",
            }
            for j in ov.judges
        ],
        hide_index=True,
    )

st.subheader("Latest runs")
if not ov.runs:
    st.caption("No runs yet.")
else:
    st.dataframe(
        [
            {
                "run": r.name,
                "status": r.status,
                "started": f"{when_ms(r.started_ms, utc=True)} UTC" if r.started_ms else "",
                "optimizer": r.optimizer or "",
                "judge": r.judge or "",
                "models": ", ".join(r.models) + (" (demo)" if r.uses_demo else ""),
                "run id": r.run_id,
            }
            for r in ov.runs
        ],
        hide_index=True,
    )

st.divider()
links = st.columns(3)
links[0].page_link(nav.page_path("label.py"), label="Start labeling", icon=":material/rate_review:")
links[1].page_link(
    nav.page_path("traces.py"), label="Browse and import traces", icon=":material/table_rows:"
)
links[2].page_link(
    nav.page_path("agreement.py"), label="Check agreement", icon=":material/handshake:"
)
