"""Where a ClickHouse sink connects: a server over HTTP(S), or a chDB data directory.

Pure: parsing a URL does no I/O, so settings are checked before anything connects, and
no error message ever shows a password. Names that are spliced into SQL text pass
:func:`validate_identifier` first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_DATABASE = "creatorpulse"
DEFAULT_HTTP_PORT = 8123
DEFAULT_HTTPS_PORT = 8443

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def validate_identifier(name: str, what: str = "database") -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise ``ValueError``.

    Database and table names are spliced into SQL text (ClickHouse cannot bind
    identifiers in DDL), so only names that need no quoting are accepted.
    """
    if not _IDENTIFIER.match(name):
        raise ValueError(
            f"{what} name {name!r} is not a plain identifier: use letters, digits and "
            "underscores, not starting with a digit (at most 128 characters)"
        )
    return name


@dataclass(frozen=True, slots=True)
class ClickHouseTarget:
    """Where the sink connects: a server over HTTP(S), or a chDB data directory."""

    kind: Literal["http", "chdb"]
    database: str = DEFAULT_DATABASE
    host: str = ""
    port: int = 0
    username: str = "default"
    password: str = field(default="", repr=False)
    secure: bool = False
    path: str = ""

    @property
    def embedded(self) -> bool:
        return self.kind == "chdb"

    def display_url(self) -> str:
        """The URL without its password, for logs and error messages."""
        if self.kind == "chdb":
            return f"chdb://{self.path}?database={self.database}"
        scheme = "https" if self.secure else "http"
        secret = ":***" if self.password else ""
        return f"{scheme}://{self.username}{secret}@{self.host}:{self.port}/{self.database}"


_URL_FORMS = "http(s)://user:pass@host:port/db or chdb:///absolute/path"


def parse_clickhouse_url(url: str) -> ClickHouseTarget:
    """Parse ``http(s)://user:pass@host:port/db`` or ``chdb:///abs/path[?database=db]``.

    Pure: no I/O. The database defaults to ``creatorpulse``. Raises ``ValueError``
    saying what to fix for anything else.
    """
    if not url or not url.strip():
        raise ValueError(f"ClickHouse URL is empty: expected {_URL_FORMS}")
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"ClickHouse URL {_redact(url)!r} cannot be parsed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return _parse_http(url, parts, secure=scheme == "https")
    if scheme == "chdb":
        return _parse_chdb(url, parts)
    shown = f"{scheme!r}" if scheme else "none"
    raise ValueError(
        f"ClickHouse URL {_redact(url)!r} has scheme {shown}: use http://, https:// "
        f"or chdb:// ({_URL_FORMS})"
    )


def _parse_http(url: str, parts: Any, *, secure: bool) -> ClickHouseTarget:
    shown = _redact(url)
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"ClickHouse URL {shown!r} has no host: use {_URL_FORMS}")
    try:
        port = parts.port
    except ValueError:
        raw = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        raise ValueError(
            f"ClickHouse URL {shown!r}: port {raw!r} is not a number between 1 and 65535"
        ) from None
    if port == 0:
        raise ValueError(f"ClickHouse URL {shown!r}: port must be between 1 and 65535")
    if port is None:
        port = DEFAULT_HTTPS_PORT if secure else DEFAULT_HTTP_PORT
    if parts.query:
        raise ValueError(
            f"ClickHouse URL {shown!r}: query parameters are not supported for http(s); "
            "put the database in the path (http://host:8123/mydb)"
        )
    if parts.fragment:
        raise ValueError(f"ClickHouse URL {shown!r}: remove the '#...' fragment")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) > 1:
        raise ValueError(
            f"ClickHouse URL {shown!r}: the path must be a single database name (/db), "
            f"got {parts.path!r}"
        )
    database = unquote(segments[0]) if segments else DEFAULT_DATABASE
    return ClickHouseTarget(
        kind="http",
        database=validate_identifier(database),
        host=host,
        port=port,
        username=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else "",
        secure=secure,
    )


def _parse_chdb(url: str, parts: Any) -> ClickHouseTarget:
    if parts.netloc:
        raise ValueError(
            f"ClickHouse URL {url!r}: chdb URLs take an absolute path and no host; "
            f"use three slashes, e.g. chdb:///var/lib/creatorpulse (got host {parts.netloc!r})"
        )
    path = unquote(parts.path)
    if not path or path.strip("/") == "":
        raise ValueError(f"ClickHouse URL {url!r} has no data directory: use chdb:///absolute/path")
    if not path.startswith("/"):
        raise ValueError(
            f"ClickHouse URL {url!r}: the chdb path must be absolute (chdb:///absolute/path)"
        )
    if parts.fragment:
        raise ValueError(f"ClickHouse URL {url!r}: remove the '#...' fragment")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"database"})
    if unknown:
        raise ValueError(
            f"ClickHouse URL {url!r}: unsupported query parameter(s) {', '.join(unknown)}; "
            "only ?database=name is understood"
        )
    values = query.get("database", [DEFAULT_DATABASE])
    if len(values) != 1:
        raise ValueError(f"ClickHouse URL {url!r}: give ?database= once")
    return ClickHouseTarget(
        kind="chdb", database=validate_identifier(values[0]), path=path.rstrip("/")
    )


def _redact(url: str) -> str:
    # Error messages echo the URL; the password must not end up in logs.
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)
