"""Who may change the documents: curators and readers.

With Streamlit's login (an `[auth]` section in `.streamlit/secrets.toml`) configured, only
curators (RAG_CURATORS: e-mail addresses, `@domain`s, group names) may add or delete documents;
everyone else who is logged in reads and asks. Without it the app serves this machine only
(127.0.0.1) and whoever runs it may change the documents, unrecorded per person. The command
line acts as its operating-system user. The check lives in the functions that change documents,
so hiding the widgets is not what keeps a reader out.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass, field

from rag.config import Settings
from rag.errors import RagError

LOGIN = "login"  # a person logged in through OIDC (st.user)
LOCAL = "local"  # the app without login configured: someone on this machine
OS = "os"  # the command line: the operating-system user
SYSTEM = "system"  # the app itself (the first-run index of the corpus folder)


class NotAllowed(RagError):
    """A change to the documents by someone who may not make it."""

    exit_code = 1


@dataclass(frozen=True)
class Actor:
    """Who asks for a change: never a stored role, always the identity it is decided from."""

    kind: str
    email: str = ""
    name: str = ""
    groups: tuple[str, ...] = field(default_factory=tuple)
    email_verified: bool | None = None

    @property
    def who(self) -> str:
        """The name recorded in the change log (an e-mail address, an OS user, or '' for local)."""
        return self.email or self.name


def local_actor() -> Actor:
    """Someone using the app on this machine, without login."""
    return Actor(LOCAL)


def system_actor() -> Actor:
    """The app itself, indexing the corpus folder on first start."""
    return Actor(SYSTEM, name="app")


def os_actor() -> Actor:
    """The operating-system user running the command line (user@host)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER in a container
        user = "unknown"
    return Actor(OS, name=f"{user}@{socket.gethostname()}")


def login_actor(user: dict, settings: Settings) -> Actor | None:
    """The Actor for Streamlit's `st.user` claims, or None when nobody is logged in."""
    if not user.get("is_logged_in"):
        return None
    groups = user.get(settings.groups_claim) or ()
    if isinstance(groups, str):
        groups = tuple(g for g in groups.replace(",", " ").split() if g)
    verified = user.get("email_verified")
    return Actor(
        LOGIN,
        email=str(user.get("email") or "").strip(),
        name=str(user.get("name") or user.get("preferred_username") or user.get("sub") or ""),
        groups=tuple(str(g) for g in groups),
        email_verified=None if verified is None else verified in (True, "true", "True", 1),
    )


def curator_entries(settings: Settings) -> list[str]:
    """RAG_CURATORS as a list of lower-cased entries."""
    return [e.strip().lower() for e in settings.curators.replace(";", ",").split(",") if e.strip()]


def is_curator(actor: Actor, settings: Settings) -> bool:
    """Does RAG_CURATORS name this logged-in person (e-mail, its domain, or one of its groups)?"""
    if actor.kind != LOGIN:
        return False
    entries = curator_entries(settings)
    groups = {g.lower() for g in actor.groups}
    email = actor.email.lower()
    # An address the provider says is unverified names nobody; groups still count.
    trusted = bool(email) and "@" in email and actor.email_verified is not False
    for entry in entries:
        if "@" not in entry:
            if entry in groups:
                return True
        elif trusted and (email == entry or (entry.startswith("@") and email.endswith(entry))):
            return True
    return False


def auth_settings() -> dict:
    """The `[auth]` section of Streamlit's secrets (empty when login is not configured)."""
    import streamlit as st

    try:
        if not st.secrets.load_if_toml_exists():
            return {}
        section = st.secrets.get("auth")
    except Exception:  # noqa: BLE001 - an unreadable secrets file means no login, which fails closed below
        return {}
    return dict(section) if section else {}


def login_configured() -> bool:
    """Is Streamlit's login configured (an `[auth]` section in the secrets)?"""
    return bool(auth_settings())


def may_change(actor: Actor | None, settings: Settings) -> bool:
    """May `actor` add, replace or delete documents?"""
    if actor is None:
        return False
    if actor.kind == LOGIN:
        return is_curator(actor, settings)
    if actor.kind == OS:
        return True  # whoever runs `rag` can write the index folder anyway
    # The app without a logged-in person: only when login is not configured at all.
    return actor.kind in (LOCAL, SYSTEM) and not login_configured()


def require_curator(actor: Actor | None, settings: Settings) -> Actor:
    """`actor` when it may change documents; else NotAllowed with a Dutch sentence."""
    if may_change(actor, settings):
        return actor
    who = actor.who if actor is not None and actor.who else "iemand die niet is ingelogd"
    raise NotAllowed(
        f"Not allowed: {who} is not a curator (RAG_CURATORS); ask a curator to make this change.",
        "U mag geen documenten toevoegen of verwijderen; dat kunnen alleen beheerders van de bronnen. "
        "Vraag een beheerder om het document toe te voegen.",
    )
