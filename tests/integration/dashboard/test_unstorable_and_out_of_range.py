"""The dashboard refuses text it cannot store and numbers and dates out of range with a
4xx page (or fragment), the same on SQLite and PostgreSQL. Issue 23, items 1 and 2."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from tests.integration.dashboard.conftest import hx_headers

BOTH = pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
TWENTY_DIGITS = "9" * 20


@BOTH
@pytest.mark.parametrize(
    "url",
    [
        "/dashboard/payments?q=%00",
        "/dashboard/payments?q=ord_%00",
        "/dashboard/webhooks?gateway=%00",
    ],
)
def test_a_nul_in_a_dashboard_query_is_a_400_page(
    signed_in: Callable[[str], FlaskClient], db_backend: str, url: str
) -> None:
    response = signed_in("owner").get(url)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "cannot be stored" in response.get_data(as_text=True)


@BOTH
def test_a_nul_in_a_dashboard_path_is_a_404(
    signed_in: Callable[[str], FlaskClient], db_backend: str
) -> None:
    response = signed_in("owner").get("/dashboard/payments/pay_%00")
    assert response.status_code == 404 and response.mimetype == "text/html"


@BOTH
@pytest.mark.parametrize(
    "url",
    [
        "/dashboard/payments?to=9999-12-31",
        "/dashboard/payments?from=9999-12-31",
        f"/dashboard/webhooks?before={TWENTY_DIGITS}",
        "/dashboard/webhooks?before=0",
    ],
)
def test_out_of_range_filters_are_a_400_page(
    signed_in: Callable[[str], FlaskClient], db_backend: str, url: str
) -> None:
    response = signed_in("owner").get(url)
    assert response.status_code == 400 and response.mimetype == "text/html"


@BOTH
def test_the_csv_export_refuses_a_date_out_of_range(
    signed_in: Callable[[str], FlaskClient], db_backend: str
) -> None:
    client = signed_in("owner")
    response = client.get("/dashboard/payments/export.csv?to=9999-12-31")
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "Content-Security-Policy" in response.headers  # our page, not gunicorn's
    ok = client.get("/dashboard/payments/export.csv?to=9999-12-30")
    assert ok.status_code == 200 and ok.mimetype == "text/csv"
    ok.close()


@BOTH
def test_a_filter_out_of_range_is_shown_on_the_form(
    signed_in: Callable[[str], FlaskClient], db_backend: str
) -> None:
    client = signed_in("owner")
    page = client.get("/dashboard/payments?to=9999-12-31")
    assert page.status_code == 400
    assert "Choose a date before 9999-12-31." in page.get_data(as_text=True)
    # htmx swaps only 2xx answers: its results fragment is a 200 (the dashboard's rule).
    response = client.get(
        "/dashboard/payments?to=9999-12-31", headers=hx_headers(client, "/dashboard/payments")
    )
    assert response.status_code == 200


@BOTH
def test_ids_beyond_an_integer_column_are_a_404(
    signed_in: Callable[[str], FlaskClient], db_backend: str
) -> None:
    client = signed_in("owner")
    assert client.get(f"/dashboard/payments/by-id/{TWENTY_DIGITS}").status_code == 404
    for big in (2**63, 2**31, 2**31 - 1):  # INTEGER ids: 32-bit on PostgreSQL
        assert client.get(f"/dashboard/payments/by-id/{big}").status_code == 404
        assert client.get(f"/dashboard/webhooks?before={big}").status_code in (200, 400)
    response = client.post(
        f"/dashboard/webhooks/{TWENTY_DIGITS}/reprocess",
        headers=hx_headers(client, "/dashboard/webhooks"),
    )
    assert response.status_code == 404
    page = client.post(
        f"/dashboard/webhooks/{TWENTY_DIGITS}/reprocess",
        data={"csrf_token": "x"},
    )
    assert page.status_code in (400, 404) and page.mimetype == "text/html"
