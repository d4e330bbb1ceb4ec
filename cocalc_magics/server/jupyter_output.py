"""Limits, output items and directory changes of CoCalc's stateless Jupyter API.

These are the pure parts of ``system.jupyterExecute``: which limits apply to a call,
how the IOPub messages of one run become the output items CoCalc returns, and which
statement changes the working directory in a kernel's language. The kernel handling
itself is in :mod:`cocalc_magics.server.jupyter_kernel`.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from typing import Any

from .errors import MethodError

# Fields CoCalc deletes from every output message before returning it.
REMOVED_FIELDS = (
    "execution_count",
    "execution_state",
    "payload",
    "code",
    "status",
    "source",
)

CELL_LIMIT_NOTICE = (
    "Output truncated since it exceeded the cell output limit of {limit} characters"
)
GLOBAL_LIMIT_NOTICE = (
    "Output truncated since it exceeded the global output limit of {limit} characters"
)

LIMIT_KEYS = (
    "timeout_ms_per_cell",
    "max_output_per_cell",
    "max_output",
    "timeout_ms",
    "start_time",
    "total_output",
)


@dataclass(frozen=True)
class Limits:
    """Effective limits of one run (history or input), with 0 or None meaning none.

    Times are in milliseconds, ``start_time`` in milliseconds since the epoch and
    output sizes in characters of JSON.
    """

    timeout_ms_per_cell: float
    max_output_per_cell: float
    max_output: float
    timeout_ms: float | None
    start_time: float | None
    total_output: float


def resolve_limits(limits: dict | None, now_ms: float) -> Limits:
    """Fill in the limits of one run the way CoCalc does.

    Without ``limits`` a run gets 30 s, 1000000 and 5000000 characters, plus a total
    budget that starts now and therefore never triggers. With ``limits`` the missing
    keys become 60 s, 500000 and 4000000 characters, and the total budget applies
    only when the caller sends both ``timeout_ms`` and ``start_time``.

    Raises
    ------
    MethodError
        If ``limits`` is not an object or one of its values is not a number.
    """
    if limits is None:
        return Limits(30000, 1000000, 5000000, 30000, now_ms, 0)
    if not isinstance(limits, dict):
        raise MethodError.thrown(
            f'limits must be an object such as {{"timeout_ms_per_cell": 30000}}, '
            f"got {json.dumps(limits)}"
        )
    values = {key: _limit_number(limits, key) for key in LIMIT_KEYS}
    return Limits(
        timeout_ms_per_cell=_default(values["timeout_ms_per_cell"], 60000),
        max_output_per_cell=_default(values["max_output_per_cell"], 500000),
        max_output=_default(values["max_output"], 4000000),
        timeout_ms=values["timeout_ms"],
        start_time=values["start_time"],
        total_output=values["total_output"] or 0,
    )


def _default(value: float | None, default: float) -> float:
    return default if value is None else value


def _limit_number(limits: dict, key: str) -> float | None:
    value = limits.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MethodError.thrown(
            f"limits.{key} must be a number (milliseconds for times, characters "
            f"for output sizes), got {json.dumps(value)}"
        )
    if math.isnan(value) or value < 0:
        raise MethodError.thrown(f"limits.{key} must be 0 or more, got {value}")
    return value


def check_total_time(limits: Limits, now_ms: float) -> None:
    """Raise the total-time error if the budget that began at ``start_time`` is spent.

    Raises
    ------
    MethodError
        ``Error: Total time limit (=N seconds) exceeded``, N rounded half up as
        JavaScript's ``Math.round`` does.
    """
    if not limits.timeout_ms or limits.start_time is None:
        return
    if now_ms - limits.start_time >= limits.timeout_ms:
        seconds = math.floor(limits.timeout_ms / 1000 + 0.5)
        raise MethodError.thrown(f"Total time limit (={seconds} seconds) exceeded")


def json_length(value: Any) -> int:
    """Return the length of ``JSON.stringify(value)`` in JavaScript string units.

    CoCalc measures output with JavaScript, which counts UTF-16 code units, so a
    character outside the Basic Multilingual Plane counts twice.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def clean_content(content: Any) -> dict | None:
    """Strip one message content to an output item, or return None to skip it.

    Comm (widget) messages, and messages left empty once the execution fields and
    the empty objects are removed, give None.
    """
    if not isinstance(content, dict) or content.get("comm_id") is not None:
        return None
    item = {
        key: value
        for key, value in content.items()
        if key not in REMOVED_FIELDS and not (isinstance(value, dict) and not value)
    }
    return item or None


def collect_items(messages: list[tuple[str, dict]], limits: Limits) -> list[dict]:
    """Turn the messages of one run into output items, applying the output caps.

    ``messages`` are ``(msg_type, content)`` pairs in arrival order. A
    ``clear_output`` message drops the items collected so far in this run and is
    kept itself as ``{"wait": ...}``. Once the run's output passes a cap, each later
    item that is not an error becomes a truncation notice. Error items, those with
    a ``traceback``, are always kept.
    """
    items: list[dict] = []
    total_output = limits.total_output
    cell_output = 0
    for msg_type, content in messages:
        if msg_type == "clear_output":
            items = []
        item = clean_content(content)
        if item is None:
            continue

        size = json_length(item)
        total_output += size
        if limits.max_output_per_cell:
            cell_output += size

        if item.get("traceback") is not None:
            items.append(item)
        elif limits.max_output_per_cell and cell_output > limits.max_output_per_cell:
            items.append(_notice(CELL_LIMIT_NOTICE, limits.max_output_per_cell))
        elif limits.max_output and total_output > limits.max_output:
            items.append(_notice(GLOBAL_LIMIT_NOTICE, limits.max_output))
        else:
            items.append(item)
    return items


def _notice(template: str, limit: float) -> dict:
    # CoCalc writes the notice as a stream item with output_type and a list of lines,
    # unlike every other item.
    text = template.format(limit=_format_number(limit))
    return {"name": "stdout", "output_type": "stream", "text": [text]}


def _format_number(value: float) -> str:
    # JavaScript prints 500000.0 as 500000.
    return str(int(value)) if float(value).is_integer() else str(value)


def change_directory_code(language: str, path: str) -> str:
    """Return the statement that changes to ``path`` in a kernel's ``language``.

    Returns an empty string for SPARQL, which has no working directory.

    Raises
    ------
    ValueError
        If the language has no known statement. The message becomes the text of a
        stderr output item.
    """
    language = language.lower()
    if language == "sparql":
        return ""
    if language.startswith(("python", "sage")):
        return f"import os; os.chdir({path!r})"
    if language == "r":
        return f"setwd({_double_quoted(path)})"
    if language == "julia":
        return f"cd({_double_quoted(path).replace('$', chr(92) + '$')})"
    if language in ("octave", "matlab"):
        return f"cd('{path.replace(chr(39), chr(39) * 2)}')"
    if language == "javascript":
        return f"process.chdir({json.dumps(path)})"
    if language in ("bash", "sh"):
        return f"cd {shlex.quote(path)}"
    if language == "prolog":
        return f"working_directory(_, '{_escape(path, chr(39))}')."
    if language == "c" or language.startswith("c++"):
        return f"#include <unistd.h>\nchdir({_double_quoted(path)})\n"
    raise ValueError(
        "Error: unable to change directory: no change-directory statement is known "
        f"for the kernel language {language!r}, so the code runs in a temporary "
        "directory"
    )


def _escape(path: str, quote: str) -> str:
    return path.replace("\\", "\\\\").replace(quote, "\\" + quote)


def _double_quoted(path: str) -> str:
    return '"' + _escape(path, '"') + '"'
