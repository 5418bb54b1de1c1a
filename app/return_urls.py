"""Where the browser may be sent after sign-in: the allowed return URLs and how one matches.

An allowed URL is absolute: https, http only on a loopback host, or a custom scheme of a native
client (`linkus://sso`). A return URL matches one when its scheme, host and port are equal and its
path starts with the allowed path at a segment boundary; user info, backslashes, control characters
and dot segments never match, so `https://pbx.example.com.evil.net/` or `https://user@evil/` can't
pass for `https://pbx.example.com/`. Pure functions, no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

MAX_URL_LENGTH = 2000
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*$")
# Schemes that are not an app's: never a place to send a one-time code.
_NOT_APP_SCHEMES = {
    "javascript",
    "data",
    "vbscript",
    "file",
    "blob",
    "about",
    "filesystem",
    "view-source",
    "ftp",
    "ws",
    "wss",
    "mailto",
    "tel",
    "sms",
    "chrome",
    "intent",
}
_DEFAULT_PORTS = {"https": 443, "http": 80}
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int | None
    path: str


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse(url: str) -> Target:
    """The parts that matching compares; ValueError when the URL is not safe to compare."""
    if not url or len(url) > MAX_URL_LENGTH or _UNSAFE.search(url):
        raise ValueError("must be a URL without spaces, control characters or backslashes")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme or not _SCHEME.match(scheme):
        raise ValueError("must be an absolute URL with a scheme")
    if "@" in parts.netloc:
        raise ValueError("must not carry user info (user@host)")
    port = parts.port  # ValueError for a port that is not a number in range
    host = (parts.hostname or "").rstrip(".") if parts.hostname else ""
    segments = unquote(parts.path).split("/")
    if any(s in (".", "..") for s in segments):
        raise ValueError("must not contain . or .. path segments")
    return Target(
        scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme), parts.path
    )


def check_allowed(url: str) -> str:
    """Validate one entry of `allowed_return_urls`; the URL unchanged, or ValueError saying why."""
    target = _parse(url)
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or a fragment (it is a prefix)")
    if target.scheme == "https":
        if not target.host:
            raise ValueError("an https URL needs a host")
    elif target.scheme == "http":
        if not target.host or not is_loopback(target.host):
            raise ValueError("http is allowed only for a loopback host (127.0.0.1, ::1, localhost)")
    elif target.scheme in _NOT_APP_SCHEMES:
        raise ValueError(f"the {target.scheme}: scheme can't receive a sign-in")
    elif not (target.host or target.path.strip("/")):
        raise ValueError("a custom-scheme URL needs a host or a path (e.g. linkus://sso)")
    return url


def _path_within(path: str, prefix: str) -> bool:
    if prefix in ("", "/"):
        return True
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + "/")


def matches(return_url: str, allowed: list[str]) -> bool:
    """Whether `return_url` falls under one of the allowed URLs (scheme, host, port, path)."""
    try:
        target = _parse(return_url)
    except ValueError:
        return False
    for entry in allowed:
        try:
            base = _parse(entry)
        except ValueError:
            continue
        if (
            target.scheme == base.scheme
            and target.host == base.host
            and target.port == base.port
            and _path_within(target.path or "/", base.path or "/")
        ):
            return True
    return False


def with_params(url: str, **params: str) -> str:
    """`url` with the parameters added to its query (before any fragment)."""
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
