"""Streamlit entry point: page setup, sidebar and navigation. The pages live in src/rag/ui/."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

try:
    import rag.ui  # noqa: F401
except ModuleNotFoundError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from rag.ui import account, common, page_file

st.set_page_config(
    page_title="Onderwijs en jeugdhulp — vraag het de bronnen", page_icon="📘", layout="centered"
)

# The menu, in order; a new page is one more line here.
PAGES = [
    st.Page(page_file("chat"), title="Chat", icon=":material/chat:", url_path="chat", default=True),
    st.Page(page_file("sources"), title="Bronnen", icon=":material/description:", url_path="bronnen"),
    st.Page(page_file("evaluation"), title="Evaluatie", icon=":material/analytics:", url_path="evaluatie"),
]

settings = common.load_settings()
account.refuse_exposure()  # without login: this machine only
common.warm_up(settings)
account.require_login(settings)  # with login: nothing but the login button until logged in
page = st.navigation(PAGES)
page.run()
common.sidebar(settings)  # after the page, so its own sidebar buttons ("Nieuw gesprek") come first
account.sidebar(settings)
