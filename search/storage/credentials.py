"""Storage URLs carry credentials: `redact` is for messages, `public_location` for what is
saved, `scrub` for a driver's own error text."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# Query keys whose values are credentials: password, passwd, sslpassword, pwd, secret,
# client_secret, token, api_key, auth, credentials, ... (any key containing these words).
_SECRET_KEY = re.compile(
    r"(?i)(^|[?&;])([^=&;?#]*(?:pass|pwd|secret|token|key|auth|credential)[^=&;?#]*)=([^&;]*)")
# What can follow the host in a location: the query, fragment or stray query parameters.
_AFTER_PATH = re.compile(r"[?#&;]")


@dataclass(frozen=True)
class _Url:
    """A URL split around its credentials; `rest` is host, port, path and query."""

    scheme: str  # with "://"
    user: str | None  # None: no user part at all
    password: str | None  # None: no password given
    rest: str


def _split_url(url: str) -> _Url | None:
    """The URL's parts, or None for a plain file path.

    The user part ends at the LAST "@": passwords are often pasted unencoded and may hold "@",
    "/", "?" or "#", while host names never hold "@". An "@" after a "/" in what would be the
    user name (e.g. in a query value: `.../db?application_name=a@b`) is not a user part.
    Choosing the last "@" may hide the host of a URL with "@" in its query too; hiding too much
    is the safe side.
    """
    scheme = _SCHEME.match(url)
    if not scheme:
        return None
    head, rest = url[:scheme.end()], url[scheme.end():]
    at = rest.rfind("@")
    if at < 0:
        return _Url(head, None, None, rest)
    userinfo = rest[:at]
    user, colon, password = userinfo.partition(":")
    if re.search(r"[/?#]", user):  # not a user name: the "@" is in the path or query
        return _Url(head, None, None, rest)
    return _Url(head, user, password if colon else None, rest[at + 1:])


def redact(url: str) -> str:
    """The URL for messages: the password and secret query values replaced by `***`.

    The user name stays (it is not secret and tells which account failed). A plain file path
    comes back unchanged.
    """
    parts = _split_url(url)
    if parts is None:
        return url
    userinfo = ""
    if parts.user is not None:
        userinfo = parts.user + (":***" if parts.password else
                                 ":" if parts.password is not None else "") + "@"
    return parts.scheme + userinfo + _SECRET_KEY.sub(r"\1\2=***", parts.rest)


def public_location(url: str) -> str:
    """What may be saved (exported provenance): scheme, host, port and database or path only.

    No user, no password, no query string: a saved file outlives the credentials' secrecy, and
    a query can carry `password=`/`sslpassword=`/tokens. A plain file path comes back as given.
    """
    parts = _split_url(url)
    if parts is None:
        return url
    return parts.scheme + _AFTER_PATH.split(parts.rest, maxsplit=1)[0]


def _secrets(url: str) -> list[str]:
    """The credential strings in `url`, longest first, to scrub from driver messages."""
    parts = _split_url(url)
    if parts is None:
        return []
    # Shorter strings would mangle the message more than hiding them protects.
    found = {m.group(3) for m in _SECRET_KEY.finditer(parts.rest) if len(m.group(3)) >= 3}
    password = parts.password or ""
    if len(password) >= 3:
        found.add(password)
    found.update(p for p in re.split(r"[@:/?#]", password) if len(p) >= 4)
    # SQLAlchemy splits an unencoded "p@ss@host" at the first "@" and reports the host as
    # "ss@host": hide every piece that follows an "@" in the password, with its "@".
    found.update(password[i + 1:] + "@" for i, c in enumerate(password[:-1]) if c == "@")
    return sorted(found, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` (a driver's message about `url`) with the URL's credentials replaced by ***."""
    for secret in _secrets(url):
        text = text.replace(secret, "***@" if secret.endswith("@") else "***")
    return re.sub(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+", lambda m: redact(m.group(0)), text)
