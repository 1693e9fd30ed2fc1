"""A bare Flask endpoint for the webhook baseline: reads the body, answers JSON; no
database, no signature. Served by the same gunicorn.conf.py as the real app."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/webhooks/<gateway>")
def receive(gateway: str):  # type: ignore[no-untyped-def]
    """Accept anything."""
    request.get_data(cache=False)
    return jsonify(received=True, duplicate=False), 200


@app.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    """Alive."""
    return jsonify(status="ok")
