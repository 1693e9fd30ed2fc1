"""Helpers for the security tests: constants, form parsing, login, checkout."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

SECRET_KEY = "security-tests-secret-key-0123456789abcdef-unique"
SANDBOX_SECRET = "sandbox-webhook-secret-for-security-tests-42"
OWNER_EMAIL = "owner.person@merchant.example"
OWNER_PASSWORD = "plum orchard tractor 1987"


# --------------------------------------------------------------------------- HTML helpers


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("name") and a.get("name") not in self.inputs:
            self.inputs[str(a["name"])] = a.get("value") or ""


def form_inputs(html: str) -> dict[str, str]:
    parser = _Inputs()
    parser.feed(html)
    return parser.inputs


def csrf_from(html: str) -> str:
    token = form_inputs(html).get("csrf_token")
    if token:
        return token
    match = re.search(r'X-CSRFToken&#34;: &#34;([^&]+)&#34;|"X-CSRFToken": "([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


def login(
    client: Any,
    email: str = OWNER_EMAIL,
    password: str = OWNER_PASSWORD,
    next_url: str | None = None,
) -> Any:
    page = client.get("/auth/login" + (f"?next={next_url}" if next_url else ""))
    data = {
        "email": email,
        "password": password,
        "csrf_token": csrf_from(page.get_data(as_text=True)),
    }
    if next_url is not None:
        data["next"] = next_url
    return client.post("/auth/login", data=data)


def start_checkout(client: Any, product: str = "tee-usd", **fields: Any) -> Any:
    page = client.get(f"/products/{product}")
    data = {
        "email": "shopper.one@example.com",
        "name": "Sam Shopper",
        "quantity": "1",
        "gateway": "sandbox",
        "csrf_token": csrf_from(page.get_data(as_text=True)),
    }
    data.update({k: str(v) for k, v in fields.items()})
    return client.post(f"/products/{product}", data=data)
