"""Login in the app: who is using it (from `st.user`, never from session state), the login screen,
the account block in the sidebar, and the refusal to serve other machines without login."""

from __future__ import annotations

import ipaddress

import streamlit as st

from rag import access
from rag.config import Settings
from rag.ui.common import escape_markdown

LOCAL_ONLY = (
    "Er is geen login ingesteld: deze app draait alleen op deze computer. Wijzigingen aan de documenten "
    "gelden voor deze computer en worden niet per persoon vastgelegd."
)
READER = (
    "U kunt de documenten bekijken en er vragen over stellen. Documenten toevoegen of verwijderen kunnen "
    "alleen beheerders van de bronnen."
)


def current_actor(settings: Settings) -> access.Actor | None:
    """Who is using this session: the logged-in person (from the signed login cookie, via `st.user`), the
    local user when login is not configured, or None (login configured, nobody logged in)."""
    if not access.login_configured():
        return access.local_actor()
    return access.login_actor(st.user.to_dict(), settings)


def is_curator(settings: Settings) -> bool:
    """May this session add and delete documents (decided afresh from `st.user` on every call)?"""
    return access.may_change(current_actor(settings), settings)


def _providers() -> list[str | None]:
    """The login providers: None for one unnamed provider, else the names of the `[auth.NAME]` sections."""
    named = [name for name, value in access.auth_settings().items() if isinstance(value, dict)]
    return named or [None]


def require_login(settings: Settings) -> None:
    """With login configured and nobody logged in: a login screen, and the page stops here."""
    if not access.login_configured() or current_actor(settings) is not None:
        return
    st.title("Onderwijs en jeugdhulp — vraag het de bronnen")
    st.write("Log in om vragen te stellen over de onderzoeksdocumenten.")
    for provider in _providers():
        label = "Inloggen" if provider is None else f"Inloggen met {provider}"
        if st.button(label, type="primary", key=f"login_{provider or 'default'}"):
            st.login(provider) if provider else st.login()
    st.stop()


def refuse_exposure() -> None:
    """Without login the app serves this machine only: on another address it says so and stops."""
    if access.login_configured():
        return
    address = st.get_option("server.address")
    try:
        loopback = bool(address) and (address == "localhost" or ipaddress.ip_address(address).is_loopback)
    except ValueError:
        loopback = False
    if address is not None and not loopback:
        st.error(
            f"Deze app is ingesteld op adres {address}, maar zonder login mag hij alleen op deze computer "
            "draaien (127.0.0.1). Stel de login in (zie de README) of start hem op 127.0.0.1."
        )
        st.stop()


def sidebar(settings: Settings) -> None:
    """Who is logged in, as curator or reader, and a logout button."""
    actor = current_actor(settings)
    if actor is None or actor.kind != access.LOGIN:
        return
    role = "beheerder" if access.may_change(actor, settings) else "lezer"
    with st.sidebar:
        st.caption(f"Ingelogd als {escape_markdown(actor.who or actor.name)} ({role})")
        if st.button("Uitloggen", key="logout"):
            st.logout()

