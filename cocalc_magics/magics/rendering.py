"""How the magics show results: text streams, cut output, notices and tables.

Remote stdout and stderr go to ``sys.stdout`` and ``sys.stderr`` as plain text, so
a notebook shows them as ``stream`` outputs. Stderr stays distinguishable, ANSI
colours are kept, and HTML sent by a remote command is shown as text, never as
markup. Output above the display budget is cut in the middle with a marker;
the full text stays in the result object.

Notices and tables are ``display_data`` with ``text/plain`` (and escaped
``text/html`` for tables), so they survive in a saved notebook and in a terminal.
"""

from __future__ import annotations

import html
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from IPython.display import display

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class CutText:
    """A text cut to a byte budget for display."""

    text: str
    omitted_lines: int
    omitted_bytes: int

    @property
    def was_cut(self) -> bool:
        return self.omitted_bytes > 0


def cut_to_budget(text: str, budget: int) -> CutText:
    """Keep the head and tail of ``text`` within ``budget`` UTF-8 bytes.

    The cut falls on line boundaries when the kept parts contain a newline, and
    the marker ``... N lines (M bytes) omitted ...`` replaces the middle.
    """
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= budget:
        return CutText(text, 0, 0)

    half = max(budget // 2, 1)
    head = data[:half]
    if b"\n" in head:
        head = head[: head.rindex(b"\n") + 1]
    tail = data[-half:]
    if b"\n" in tail[:-1]:
        tail = tail[tail.index(b"\n") + 1 :]

    middle = data[len(head) : len(data) - len(tail)]
    omitted_lines = middle.count(b"\n")
    marker = f"... {omitted_lines} lines ({len(middle)} bytes) omitted ...\n"
    if head and not head.endswith(b"\n"):
        marker = "\n" + marker
    shown = _decode(head) + marker + _decode(tail)
    return CutText(shown, omitted_lines, len(middle))


def _decode(data: bytes) -> str:
    # A cut can split a multi-byte character; the broken ends become U+FFFD.
    return data.decode("utf-8", "replace")


def printable(text: str) -> str:
    """Replace lone surrogates, which no output channel can encode, with U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def write_stream(stream: TextIO, text: str) -> None:
    """Write ``text`` to ``stream``, even when its encoding cannot show every char."""
    if not text:
        return

    text = printable(text)
    try:
        stream.write(text)
    except UnicodeEncodeError:
        # A terminal under the C locale: show escapes rather than fail the cell.
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
    stream.flush()


def split_budget(stdout: str, stderr: str, budget: int) -> tuple[int, int]:
    """Share a display budget in bytes between stdout and stderr."""
    stderr_size = len(stderr.encode("utf-8", "surrogatepass"))
    stderr_budget = min(stderr_size, budget // 2)
    stdout_budget = budget - stderr_budget
    stdout_size = len(stdout.encode("utf-8", "surrogatepass"))
    if stdout_size < stdout_budget:
        stderr_budget += stdout_budget - stdout_size
    return stdout_budget, stderr_budget


def show_notice(text: str) -> None:
    """Display a one-line notice from the extension (not from the remote command)."""
    display({"text/plain": text}, raw=True)


def show_table(
    rows: Sequence[Sequence[Any]], headers: Sequence[str], *, title: str
) -> None:
    """Display rows as an aligned text table and an HTML table."""
    cells = [[str(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row)]

    lines = [title, "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if not cells:
        lines.append("(none)")

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in cells
    )
    markup = (
        f"<p>{html.escape(title)}</p><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )
    display({"text/plain": "\n".join(lines), "text/html": markup}, raw=True)


def show_fields(fields: Sequence[tuple[str, Any]], *, title: str) -> None:
    """Display name/value pairs as a two-column table."""
    show_table(
        [(name, value) for name, value in fields], ("field", "value"), title=title
    )


def show_command_output(result, *, budget: int, variable: str) -> None:
    """Write a command's stdout and stderr, cut to ``budget`` bytes in total.

    When anything is cut, by this budget or by the server's ``max_output``, a
    notice names where the full text is.
    """
    stdout_budget, stderr_budget = split_budget(result.stdout, result.stderr, budget)
    shown_stdout = cut_to_budget(result.stdout, stdout_budget)
    shown_stderr = cut_to_budget(result.stderr, stderr_budget)
    write_stream(sys.stdout, shown_stdout.text)
    write_stream(sys.stderr, shown_stderr.text)
    show_output_notices(
        result,
        budget=budget,
        variable=variable,
        was_cut=shown_stdout.was_cut or shown_stderr.was_cut,
    )


def show_output_notices(result, *, budget: int, variable: str, was_cut: bool) -> None:
    """Say where the full output is when the display or the server cut it."""
    notices = []
    if was_cut:
        notices.append(
            f"Output cut to {budget} bytes for display; the full text is in "
            f"{variable}.stdout and {variable}.stderr."
        )
    server_cut = [
        name
        for name, cut in (
            ("stdout", result.stdout_truncated),
            ("stderr", result.stderr_truncated),
        )
        if cut
    ]
    if server_cut:
        notices.append(
            f"The server cut {' and '.join(server_cut)} at max_output characters; "
            "pass a larger --max-output to get more."
        )
    for notice in notices:
        show_notice(notice)
