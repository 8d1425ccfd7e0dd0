"""Store URLs: accept plain paths, and show a URL only with its password hidden.

Every place that prints or writes a store URL (run summaries, errors, the gate's summary, baseline
files, the HTML page) goes through :func:`redact`, so a PostgreSQL password never reaches a
terminal, a CI job summary or a committed file.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

# For text SQLAlchemy cannot parse: whatever sits between "user:" and the last "@" of the authority.
_CREDENTIALS = re.compile(r"^([^:/?#]+://[^:/@?#]*):[^/?#]*@")
# ... and an authority without "@" whose "port" is not a number ("postgresql://user:password").
_BARE_PAIR = re.compile(r"^([^:/?#]+://[^:/@?#]*):[^/?#@]*")


def normalize_url(url_or_path: str) -> str:
    """Accept a SQLAlchemy URL or a plain file path (taken as SQLite).

    ``postgresql://`` (and libpq's ``postgres://``) without a driver means psycopg 3, the driver
    of ``bitscale[postgres]`` (SQLAlchemy 2.0 would otherwise pick psycopg2).
    """
    if "://" not in url_or_path:
        return f"sqlite:///{url_or_path}"
    scheme, rest = url_or_path.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url_or_path


def redact(url: str) -> str:
    """``url`` as it may be shown or stored: the password replaced by ``***``."""
    try:
        parsed = sa.engine.make_url(url)
        # Without a password the text is safe as given (and SQLite paths keep their exact spelling).
        return url if parsed.password is None else parsed.render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown too, in an error message, still without secrets
        if _CREDENTIALS.match(url):
            return _CREDENTIALS.sub(r"\1:***@", url)
        return _BARE_PAIR.sub(r"\1:***", url)
