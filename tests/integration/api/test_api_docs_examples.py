"""docs/API.md's quick start works as written, and /api/docs renders examples, not Markdown."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from flask import Flask

ROOT = Path(__file__).resolve().parents[3]


def _first_curl(markdown: str) -> list[str]:
    block = markdown.split("```sh", 1)[1].split("```", 1)[0]
    command = block[block.index("curl ") :]
    command = command[: command.index("\n#")]
    return shlex.split(command.replace("\\\n", " "))


def test_the_quick_start_checkout_example_succeeds_as_written(make_app: Any) -> None:
    app: Flask = make_app()
    args = _first_curl((ROOT / "docs" / "API.md").read_text())
    url = args[2]
    headers = dict(args[i + 1].split(": ", 1) for i, a in enumerate(args) if a == "-H")
    body = json.loads(args[args.index("-d") + 1])
    path = url.removeprefix("http://127.0.0.1:5000")
    response = app.test_client().post(path, json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["data"]["payment"]["status"] == "incomplete"
    assert ".venv/bin/flask --app wsgi create-api-key" in (ROOT / "docs" / "API.md").read_text()


def test_api_docs_render_code_and_a_copyable_example_per_operation(make_app: Any) -> None:
    app: Flask = make_app()
    html = app.test_client().get("/api/docs").get_data(as_text=True)
    prose = re.sub(r"<pre.*?</pre>", "", html, flags=re.DOTALL)
    assert "`" not in prose  # Markdown code spans are rendered as <code>
    assert "browser to <code>checkout_url</code>" in html
    operations = html.count('class="operation"')
    examples = re.findall(r'<pre id="example-[^"]+"[^>]*><code>(.*?)</code></pre>', html, re.DOTALL)
    assert operations > 5 and len(examples) == operations
    assert any("Authorization: Bearer $KASSA_KEY" in e for e in examples)
    assert all(e.startswith("curl -s") for e in examples)
    assert 'data-copy="#example-' in html
