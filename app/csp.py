"""Content-Security-Policy: a strict default and a per-page hook to extend it.

A page that needs a third-party source (Razorpay's checkout.js) puts it in
`g.csp_extra` ({directive: [sources]}); `apply(response)` then writes the default
policy extended with those sources, or extends a policy that is already set. The
global security layer should call `apply` (or `merge` with `g.csp_extra`) so pages
keep their extras whatever sets the header.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from flask import g
from werkzeug.wrappers import Response

HEADER = "Content-Security-Policy"

DEFAULT: dict[str, list[str]] = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "frame-src": ["'none'"],
    "form-action": ["'self'"],
    "base-uri": ["'none'"],
    "object-src": ["'none'"],
    "frame-ancestors": ["'none'"],
}


def origin(url: str) -> str:
    """scheme://host[:port] of a URL (a CSP source expression)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def parse(policy: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for chunk in policy.split(";"):
        words = chunk.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


def render(directives: Mapping[str, Iterable[str]]) -> str:
    return "; ".join(" ".join([name, *sources]) for name, sources in directives.items())


def merge(policy: str, extra: Mapping[str, Iterable[str]]) -> str:
    """Add sources to a policy's directives ('none' goes once something is allowed)."""
    directives = parse(policy)
    for name, sources in extra.items():
        current = [
            s
            for s in directives.get(name, directives.get("default-src", ["'self'"]))
            if s != "'none'"
        ]
        for source in sources:
            if source not in current:
                current.append(source)
        directives[name] = current
    return render(directives)


def allow(**extra: Iterable[str]) -> None:
    """Ask for extra sources on this response, e.g. allow(script_src=[...])."""
    current: dict[str, list[str]] = g.setdefault("csp_extra", {})
    for name, sources in extra.items():
        bucket = current.setdefault(name.replace("_", "-"), [])
        bucket.extend(s for s in sources if s not in bucket)


def apply(response: Response) -> Response:
    """Set (or extend) the header with this request's extras; no extras, no change."""
    extra = g.get("csp_extra")
    if not extra:
        return response
    base = response.headers.get(HEADER) or render(DEFAULT)
    response.headers[HEADER] = merge(base, extra)
    return response
