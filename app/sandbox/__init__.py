"""The sandbox gateway's hosted payment page (registered only when the sandbox is on)."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
)
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from app.gateways.sandbox import (
    SCENARIOS,
    SUBSCRIBE_SCENARIOS,
    SandboxGateway,
    SandboxProcessor,
)
from app.i18n import N_

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")

# The scenarios' words (app/gateways/sandbox.py knows no language); pay.html translates them.
SCENARIO_WORDS = (
    N_("Pay successfully"),
    N_("card 4242 4242 4242 4242"),
    N_("Card declined"),
    N_("card 4000 0000 0000 0002"),
    N_("Insufficient funds"),
    N_("card 4000 0000 0000 9995"),
    N_("3-D Secure challenge, then success"),
    N_("card 4000 0027 6000 3184"),
    N_("3-D Secure challenge, then failure"),
    N_("card 4000 0084 0000 1629"),
    N_("Abandon checkout"),
    N_("close the page and go back to the shop"),
    N_("Pay successfully; later charges of the saved card are declined"),
    N_("card 4000 0000 0000 0341"),
    # subscribe.html
    N_("Pay and renew"),
    N_("Every renewal is paid."),
    N_("Pay, then decline one renewal"),
    N_("The first renewal is declined; the retry succeeds."),
    N_("Decline"),
    N_("The first payment is declined."),
)


def _processor() -> SandboxProcessor:
    gateway = current_app.extensions["kassa_gateways"]["sandbox"]
    gateway = getattr(gateway, "inner", gateway)  # unwrap the resilience layer
    assert isinstance(gateway, SandboxGateway)
    return gateway.processor


@bp.get("/pay/<session_id>")
def pay(session_id: str) -> Response:
    """The hosted page: the customer picks what their 'card' does."""
    row = _processor().get(session_id)
    if row is None:
        abort(404)
    response = make_response(
        render_template("sandbox/pay.html", session=row, scenarios=SCENARIOS, form=FlaskForm())
    )
    # Back after paying must ask again (and show the outcome), not replay the payable form.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/pay/<session_id>")
def submit(session_id: str) -> Response | str:
    """Run the chosen scenario (3-D Secure ones go through a challenge first)."""
    form = FlaskForm()
    if not form.validate_on_submit():
        abort(400)
    scenario = request.form.get("scenario", "")
    processor = _processor()
    if processor.get(session_id) is None:
        abort(404)
    if scenario in ("3ds_succeed", "3ds_fail"):
        return redirect(f"/sandbox/pay/{session_id}/challenge?scenario={scenario}", code=303)
    try:
        target = processor.complete(session_id, scenario)
    except ValueError:
        abort(400)
    return redirect(target, code=303)


@bp.route("/pay/<session_id>/challenge", methods=["GET", "POST"])
def challenge(session_id: str) -> Response | str:
    """A 3-D Secure challenge: the customer completes or fails authentication."""
    row = _processor().get(session_id)
    if row is None:
        abort(404)
    form = FlaskForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        outcome = "3ds_succeed" if request.form.get("result") == "complete" else "3ds_fail"
        return redirect(_processor().complete(session_id, outcome), code=303)
    return render_template("sandbox/challenge.html", session=row, form=form)


@bp.route("/subscribe/<sub_id>", methods=["GET", "POST"])
def subscribe(sub_id: str) -> Response | str:
    """The hosted subscribe page: the customer picks what their card does now and later."""
    processor = _processor()
    row = processor.get_subscription(sub_id)
    if row is None:
        abort(404)
    form = FlaskForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        try:
            return redirect(processor.subscribe(sub_id, request.form.get("scenario", "")), 303)
        except ValueError:
            abort(400)
    return render_template(
        "sandbox/subscribe.html", sub=row, scenarios=SUBSCRIBE_SCENARIOS, form=form
    )


@bp.route("/billing/<sub_id>", methods=["GET", "POST"])
def billing(sub_id: str) -> Response | str:
    """The sandbox's billing portal: update the card (the next retry succeeds), or cancel
    (told to Kassa by webhook only, as a gateway's portal does)."""
    processor = _processor()
    row = processor.get_subscription(sub_id)
    if row is None:
        abort(404)
    form = FlaskForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        action = request.form.get("action")
        if action == "update_card":
            processor.fail_next_renewals(sub_id, 0)
        elif action == "cancel":
            processor.cancel_subscription(sub_id, at_period_end=True)
        else:
            abort(400)
        return redirect(f"/sandbox/billing/{sub_id}", 303)
    return render_template("sandbox/billing.html", sub=row, form=form)
