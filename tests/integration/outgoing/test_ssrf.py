"""SSRF: an endpoint URL never reaches loopback, private or link-local addresses, also
through DNS and through redirects, unless a development setting (or an allowed network)
lets it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from app.payments.audit import Actor
from app.payments.errors import ValidationFailed
from app.payments.outgoing import endpoints
from app.payments.outgoing.http import Sender, TargetPolicy, TargetRefused
from tests.integration.outgoing.receiver import Answer, Receiver

MERCHANT = Actor("user", "1")


def fake_dns(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("name not known")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/hooks", "loopback"),
        ("http://[::1]/hooks", "loopback"),
        ("http://10.0.0.5/hooks", "private"),
        ("http://192.168.1.10/hooks", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:10.0.0.1]/hooks", "private"),
        ("http://100.64.0.1/hooks", "private"),
        ("http://0.0.0.0/hooks", "not a public"),
        ("http://internal.example.test/hooks", "private"),  # a name resolving to 10.1.2.3
        ("http://mixed.example.test/hooks", "private"),  # one public, one private address
        ("http://localhost:9/hooks", "loopback"),
    ],
)
def test_private_targets_are_refused(url: str, why: str) -> None:
    dns = fake_dns(
        {
            "internal.example.test": ["10.1.2.3"],
            "mixed.example.test": ["93.184.215.14", "10.9.9.9"],
            "localhost": ["127.0.0.1"],
        }
    )
    with pytest.raises(TargetRefused, match=why):
        TargetPolicy(resolve=dns).check_url(url)


def test_public_targets_and_allowed_networks_pass() -> None:
    dns = fake_dns({"hooks.example.com": ["93.184.215.14"]})
    TargetPolicy(resolve=dns).check_url("https://hooks.example.com/kassa")
    import ipaddress

    allowed = TargetPolicy(allowed_networks=(ipaddress.ip_network("10.0.0.0/8"),))
    allowed.check_url("http://10.0.0.5/hooks")
    TargetPolicy(allow_private=True).check_url("http://127.0.0.1/hooks")
    with pytest.raises(TargetRefused, match="credentials"):
        TargetPolicy(resolve=dns).check_url("https://user:pw@hooks.example.com/")


def test_the_sender_checks_the_resolved_address_before_connecting(receiver: Receiver) -> None:
    """A name that resolves to loopback at send time is refused; nothing arrives."""
    port = receiver.url.split(":")[2].split("/")[0]
    sender = Sender(TargetPolicy(resolve=fake_dns({"hooks.example.test": ["127.0.0.1"]})), 1.0)
    result = sender.post(f"http://hooks.example.test:{port}/hooks", {}, b"{}")
    assert result.status is None
    assert result.error == "refused: hooks.example.test resolves to 127.0.0.1, a loopback address"
    assert receiver.received == []


def test_a_redirect_to_a_private_address_is_refused(receiver: Receiver) -> None:
    import ipaddress

    # The receiver's own network is allowed; where it redirects to is not.
    sender = Sender(TargetPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),)), 1.0)
    receiver.answer(Answer(307, {"Location": "http://169.254.169.254/latest/meta-data/"}))
    result = sender.post(receiver.url, {}, b"{}")
    assert result.status is None
    assert result.error == "refused: 169.254.169.254 is a link-local address"
    assert result.redirects == ["http://169.254.169.254/latest/meta-data/"]
    # A redirect to an allowed place is followed (the body is posted again).
    receiver.answer(Answer(308, {"Location": receiver.url + "/moved"}), Answer(204))
    result = sender.post(receiver.url, {}, b"{}")
    assert result.status == 204 and len(receiver.received) == 3


def test_saving_a_private_url_is_a_clear_error(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    with app.test_request_context(), pytest.raises(ValidationFailed) as raised:
        endpoints.create_endpoint("http://169.254.169.254/", None, None, MERCHANT)
    assert "link-local" in raised.value.message
    assert raised.value.details[0]["field"] == "url"
    dev = make_app(OUTGOING_WEBHOOK_ALLOW_PRIVATE=True)
    with dev.test_request_context():
        endpoint, _ = endpoints.create_endpoint("http://127.0.0.1:9/hooks", None, None, MERCHANT)
        assert endpoint.enabled


def test_production_refuses_the_development_setting() -> None:
    from app.config import check_production

    with pytest.raises(RuntimeError, match="OUTGOING_WEBHOOK_ALLOW_PRIVATE"):
        check_production({"KASSA_ENV": "production", "OUTGOING_WEBHOOK_ALLOW_PRIVATE": True})
