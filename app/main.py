"""alignboard dashboard: the router. Pages live in ``app/app_pages/`` (see ``components.nav``)."""

from __future__ import annotations

import streamlit as st

from app.components import nav, shell

st.set_page_config(page_title="alignboard", page_icon=":material/balance:", layout="wide")
page = st.navigation(nav.build_pages())
shell.render_sidebar()
page.run()
