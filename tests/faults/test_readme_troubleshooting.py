"""Every "message contains" text of README.md's Troubleshooting table is real.

Each backquoted text in the first column must occur in the package's source, so
that a user who searches the README for the message they got finds its row, and
the README cannot keep a message that the code no longer produces. A message
that the code builds from parts at run time (an HTTP status, a byte count) is
produced instead, by the real code against a loopback fake server.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGE = REPOSITORY / "cocalc_magics"


def troubleshooting_rows() -> list[str]:
    text = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    section = text.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    # The first row is the header; the separator row starts with "| ---".
    return [row for row in rows[1:] if not row.startswith("| ---")]


def quoted_messages() -> list[str]:
    messages = []
    for row in troubleshooting_rows():
        first_cell = row.split("|")[1]
        messages += re.findall(r"`([^`]+)`", first_cell)
    return messages


def package_source() -> str:
    return "\n".join(
        path.read_text(encoding="utf-8") for path in sorted(PACKAGE.rglob("*.py"))
    )


def normalized(text: str) -> str:
    # Messages in the source may be split over string literals and lines.
    joined = re.sub(r"\"\s*\n\s*(f?r?)\"", "", text)
    return re.sub(r"\s+", " ", joined)


def test_the_table_has_rows():
    assert len(quoted_messages()) >= 10


def settings_without_key(tmp_path: Path) -> str:
    from cocalc_magics.api import resolve_settings

    settings = resolve_settings(
        "http://127.0.0.1:9", environ={}, config_path=tmp_path / "absent.toml"
    )
    return "\n".join(settings.describe())


def gateway_timeout(tmp_path: Path) -> str:
    from cocalc_magics.api import Connection, HTTPStatusError
    from tests.support.fake_server import FakeCoCalc, Reply

    with FakeCoCalc() as fake:
        fake.script("system.ping", Reply.html(504, "<html>Gateway Time-out</html>"))
        connection = Connection(
            host=fake.url, api_key=fake.api_key, project_id=fake.project_id
        )
        with pytest.raises(HTTPStatusError) as raised:
            connection.project_call("system.ping", [])
    return str(raised.value)


def body_too_large(tmp_path: Path) -> str:
    from cocalc_magics.api import CoCalcError, Connection

    connection = Connection(
        host="http://127.0.0.1:9", api_key="sk-readme-000000000000", project_id=None
    )
    with pytest.raises(CoCalcError) as raised:
        connection.hub_call("system.ping", ["z" * (1024 * 1024 + 1)])
    return str(raised.value)


# Messages built at run time, with the code that builds them.
PRODUCED = {
    "API key: not set": settings_without_key,
    "HTTP 504": gateway_timeout,
    "above CoCalc's limit of 1048576 bytes": body_too_large,
}


def test_produced_messages_are_rows_of_the_table():
    assert set(PRODUCED) <= set(quoted_messages())


@pytest.mark.parametrize("message", quoted_messages())
def test_message_occurs_in_the_source(message, tmp_path):
    if message in PRODUCED:
        assert message in PRODUCED[message](tmp_path)
        return
    source = normalized(package_source())
    # "…" in the README stands for a variable part, such as a host and port.
    parts = [part.strip() for part in message.split("…") if part.strip()]
    for part in parts:
        assert part in source, f"README's {message!r} is not in cocalc_magics/"
