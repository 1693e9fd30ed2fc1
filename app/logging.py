"""Log set-up: JSON lines with a request id, and a filter that keeps secrets and card data out.

`RedactingFilter` is reusable on any handler (gunicorn's, Celery's, a test's): it rewrites
the message, string and mapping `extra` fields and the formatted traceback of every record
that passes through it. `redact(text)` is the same scrubbing for a single string.

What it removes:
- Authorization header values and webhook signature headers (Stripe-Signature,
  Kassa-Signature, X-Razorpay-Signature) and bare `t=...,v1=<hex>` signatures;
- API secrets: sk_live_/sk_test_/rk_*/whsec_/rzp_live_/rzp_test_ keys and client secrets;
- e-mail addresses (the local part is masked, the domain kept for debugging);
- card numbers: any run of 13-19 digits (spaces or dashes allowed) that passes the Luhn
  check, kept as its last four digits.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO

# Filled by app.observability for each request (and left "-" in jobs and CLI commands).
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_SECRET_KEYS = re.compile(
    r"(?i)(authorization|proxy-authorization|stripe-signature|kassa-signature|"
    r"x-razorpay-signature|paypal-transmission-sig|signature|password|secret|api[_-]?key|cookie|csrf[_-]?token)"
)
_HEADER_VALUE = re.compile(
    r"(?i)\b((?:proxy-)?authorization|cookie)(\"?'?\s*[:=]\s*\"?'?)((?:bearer|basic)\s+)?"
    r"[^\s\"',;}]+"
)
_SIGNATURE_HEADER = re.compile(
    r"(?i)\b(stripe-signature|kassa-signature|x-razorpay-signature)(\"?'?\s*[:=]\s*\"?'?)"
    r"[^\s\"'}]+"
)
_SIGNATURE = re.compile(r"\bt=\d+,\s*v\d=[0-9a-fA-F]{16,}(?:,\s*v\d=[0-9a-fA-F]{16,})*")
_HEX_SIGNATURE = re.compile(r"\bv1=[0-9a-fA-F]{32,}")
_API_SECRET = re.compile(
    r"\b(sk_live_|sk_test_|rk_live_|rk_test_|whsec_|rzp_live_|rzp_test_)[A-Za-z0-9_]+"
)
# Stripe-style client secrets: pi_123_secret_abc, seti_..._secret_..., cs_..._secret_...
_CLIENT_SECRET = re.compile(r"\b([a-z]{2,5}_[A-Za-z0-9]+)_secret_[A-Za-z0-9]+")
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
)
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")

REDACTED = "[REDACTED]"


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return f"[CARD ****{digits[-4:]}]"
    return match.group(0)


def redact(text: str) -> str:
    """Remove secrets, signatures, card numbers and e-mail local parts from one string."""
    if not text:
        return text
    text = _HEADER_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _SIGNATURE_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _SIGNATURE.sub(REDACTED, text)
    text = _HEX_SIGNATURE.sub("v1=" + REDACTED, text)
    text = _API_SECRET.sub(lambda m: m.group(1) + REDACTED, text)
    text = _CLIENT_SECRET.sub(lambda m: m.group(1) + "_secret_" + REDACTED, text)
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    if any(ch.isdigit() for ch in text):
        text = _DIGIT_RUN.sub(_card, text)
    return text


def redact_value(key: str | None, value: Any, depth: int = 0) -> Any:
    """Redact one `extra` value: secret-named keys entirely, strings by pattern, recursively."""
    if key is not None and _SECRET_KEYS.search(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if depth > 4:
        return value
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(None, v, depth + 1) for v in value]
    return value


# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
}


class CleanRecord(logging.LogRecord):
    """A record built by our own code from constants, numbers and checked values only (the
    access log line: method, URL rule, status, duration, request id): nothing in it can
    carry a secret, so the redacting filter passes it as is and the JSON formatter writes
    it without the general machinery. Make one with `clean_record()`."""

    request_id: str


def clean_record(
    name: str, level: int, message: str, request_id: str, fields: Mapping[str, Any]
) -> CleanRecord:
    """A CleanRecord with `message` (no %-args) and `fields` as its `extra`."""
    record = CleanRecord(name, level, __file__, 0, message, None, None)
    record.request_id = request_id
    record.__dict__.update(fields)
    return record


class RedactingFilter(logging.Filter):
    """Scrub every record that passes: message, extra fields and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            type(record) is CleanRecord
            and not record.exc_info
            and not record.exc_text
            and not record.stack_info
        ):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and not key.startswith("_"):
                setattr(record, key, redact_value(key, value))
        if record.exc_info:
            # Format once here so the traceback (which may quote a secret) is scrubbed;
            # formatters print exc_text when exc_info is gone.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RequestIdFilter(logging.Filter):
    """Stamp each record with the current request id (or "-")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


_JSON_DATEFMT = "%Y-%m-%dT%H:%M:%S%z"


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    class KassaJsonFormatter(JsonFormatter):
        """python-json-logger's lines; CleanRecords (one per request) take a short cut to
        the same output: no field parsing, no merging, the time string made once a second."""

        _second: tuple[int, str] = (-1, "")

        def format(self, record: logging.LogRecord) -> str:
            if (
                type(record) is not CleanRecord
                or record.exc_info
                or record.exc_text
                or record.stack_info
            ):
                return super().format(record)
            data: dict[str, Any] = {
                "time": self._time(record),
                "level": record.levelname,
                "logger": record.name,
                "message": record.msg,
                "request_id": record.request_id,
            }
            for key, value in record.__dict__.items():
                if key not in _STANDARD:
                    data[key] = value
            return json.dumps(data)

        def _time(self, record: logging.LogRecord) -> str:
            second = int(record.created)
            cached = self._second
            if cached[0] != second:
                cached = (second, self.formatTime(record, self.datefmt))
                self._second = cached
            return cached[1]

    return KassaJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt=_JSON_DATEFMT,
    )


def text_formatter() -> logging.Formatter:
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is at the time (test runners swap it), and never makes
    a thread wait for another thread's write.

    logging holds the handler's lock across format, write and flush; the write releases the
    GIL, so under load every request thread that logs queues on that lock while the GIL
    changes hands back and forth (with 64 concurrent webhook senders the access line cost
    about 0.3 ms of CPU per request, mostly in context switches). Here each thread formats
    its own record and appends the line to a buffer (a lock held for the append only); the
    thread that finds no write in progress writes everything buffered, in order, until the
    buffer is empty. No line is reordered or left behind; under load a line may reach the
    stream a moment after its logging call returned, written by another thread.
    """

    _kassa = True  # ours: configure() replaces it on a second call

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._pending_lock = threading.Lock()
        self._writing = False

    def handle(self, record: logging.LogRecord) -> Any:
        rv = self.filter(record)  # our filters only touch the record itself
        if rv:
            self.emit(rv if isinstance(rv, logging.LogRecord) else record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - logging's own error path
            self.handleError(record)
            return
        with self._pending_lock:
            self._pending.append(line)
            if self._writing:
                return  # the writing thread takes it on its next round
            self._writing = True
        self._write_pending(record)

    def flush(self) -> None:
        with self._pending_lock:
            lead = bool(self._pending) and not self._writing
            if lead:
                self._writing = True
        if lead:
            self._write_pending(None)
        super().flush()

    def _write_pending(self, record: logging.LogRecord | None) -> None:
        try:
            while True:
                with self._pending_lock:
                    lines, self._pending = self._pending, []
                    if not lines:
                        self._writing = False
                        return
                try:
                    stream = self.stream
                    stream.write("".join(lines))
                    stream.flush()
                except Exception:  # noqa: BLE001 - logging's own error path
                    if record is not None:
                        self.handleError(record)
        except BaseException:
            with self._pending_lock:
                self._writing = False
            raise

    @property
    def stream(self) -> Any:
        return self._stream if self._stream is not None else sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        self._stream = value


def configure(level: str = "INFO", json_lines: bool = False, stream: Any = None) -> logging.Handler:
    """Install one handler on the root logger (replacing ours from an earlier call)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_kassa", False):
            root.removeHandler(handler)
    handler = _StderrHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(json_formatter() if json_lines else text_formatter())
    root.addHandler(handler)
    if root.level == logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(level)
    # SDKs log every API call at INFO (URLs, ids): keep them for LOG_LEVEL=DEBUG only.
    for sdk in ("stripe", "razorpay", "urllib3"):
        logging.getLogger(sdk).setLevel(
            logging.DEBUG if str(level).upper() == "DEBUG" else logging.WARNING
        )
    # gunicorn's own error log goes through the same filter.
    for name in ("gunicorn.error",):
        for h in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in h.filters):
                h.addFilter(RedactingFilter())
    return handler
