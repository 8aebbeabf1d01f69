"""AppTest runs share one process: Streamlit's caches must not leak between tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clear_streamlit_caches():
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()
