"""The one redaction function, and logs that go through it (text and JSON lines)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from matokit.logs import setup_logging
from matokit.redact import MASK, redact, register_secret
from tests.conftest import SENTINEL_TOKEN

CASES = [
    (
        f"https://m.example/index.php?module=API&token_auth={SENTINEL_TOKEN}&x=1",
        "token_auth=***&x=1",
    ),
    (f"token_auth={SENTINEL_TOKEN}", "token_auth=***"),
    (f'{{"requests": [], "token_auth": "{SENTINEL_TOKEN}"}}', '"token_auth": "***"'),
    (f"Authorization: Bearer {SENTINEL_TOKEN}", "Bearer ***"),
    (f"urls%5B0%5D=method%3DX%26token_auth%3D{SENTINEL_TOKEN}", "token_auth%3D***"),
    (f"https://ops:{SENTINEL_TOKEN}@m.example/index.php", "https://***@m.example/index.php"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_token_auth_values_are_masked_even_unregistered(text, expected):
    out = redact(text)
    assert SENTINEL_TOKEN not in out
    assert expected in out


def test_registered_secret_is_masked_anywhere():
    register_secret(SENTINEL_TOKEN)
    assert redact(f"oops {SENTINEL_TOKEN} in a message") == f"oops {MASK} in a message"


def test_explicit_secret_argument():
    assert redact("abc secretvalue def", ["secretvalue"]) == f"abc {MASK} def"


def _log_lines(fmt: str) -> str:
    stream = io.StringIO()
    setup_logging(
        fmt=fmt, level=logging.DEBUG, context={"profile": "p", "command": "c"}, stream=stream
    )
    log = logging.getLogger("matokit.test")
    log.info(
        "request sent",
        extra={
            "http_method": "POST",
            "status": 200,
            "duration_ms": 12.5,
            "url": f"https://x/?token_auth={SENTINEL_TOKEN}",
        },
    )
    log.warning("saw %s", SENTINEL_TOKEN)
    return stream.getvalue()


def test_json_logs_are_one_object_per_line_with_context():
    register_secret(SENTINEL_TOKEN)
    lines = _log_lines("json").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["level"] == "info" and first["logger"] == "matokit.test"
    assert first["message"] == "request sent"
    assert first["profile"] == "p" and first["command"] == "c"
    assert first["http_method"] == "POST" and first["status"] == 200
    assert first["ts"].endswith("Z")
    assert SENTINEL_TOKEN not in "\n".join(lines)


def test_text_logs_are_redacted():
    register_secret(SENTINEL_TOKEN)
    text = _log_lines("text")
    assert "matokit: info: request sent" in text
    assert SENTINEL_TOKEN not in text


def test_text_logs_show_control_characters_escaped():
    stream = io.StringIO()
    setup_logging(fmt="text", stream=stream)
    logging.getLogger("matokit.test").warning("Matomo said %s", "\x1b]0;PWNED\x07")
    assert stream.getvalue() == "matokit: warning: Matomo said \\x1b]0;PWNED\\x07\n"
