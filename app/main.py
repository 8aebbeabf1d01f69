"""alignboard dashboard: the router. Pages live in ``app/app_pages/`` (see ``components.nav``)."""

from __future__ import annotations

import streamlit as st

from app.components import nav, shell

# A local favicon: a ":material/..." icon would be fetched from a font CDN (fails offline).
st.set_page_config(page_title="alignboard", page_icon=str(nav.FAVICON), layout="wide")
page = st.navigation(nav.build_pages())
nav.leave_root(page)
shell.render_sidebar()
spec = nav.spec_of(page)
if spec is not None and spec.needs_reviewer:
    # With login configured only the logged-in user may label: ask before the page runs.
    ctx = shell.context()
    if ctx is not None and not ctx.reviewer:
        st.title(spec.title)
        shell.require_reviewer(ctx, spec.needs_reviewer)
page.run()
