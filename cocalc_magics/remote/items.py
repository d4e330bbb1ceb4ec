"""Turn the output items of ``system.jupyterExecute`` into a clean list of outputs.

CoCalc's stateless Jupyter API returns the content of each Jupyter output message
without its ``msg_type`` or ``output_type``, so this module distinguishes the kinds
by their keys. A stream has ``name`` and ``text``, and a display or result has
``data``. An error has ``ename``/``evalue``/``traceback``, a truncation notice is a
stream whose ``text`` is a list, and ``{"wait": ...}`` marks a ``clear_output()``.
Items that do carry ``output_type`` (nbformat style) are read by the same rules, so
both shapes give the same outputs.

The normalised list keeps the original order and merges what the server leaves
split: adjacent chunks of the same stream, repeated truncation notices, and
successive updates of one display id. Nothing here talks to IPython; ``render``
does the displaying.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

logger = logging.getLogger(__name__)

OutputKind = Literal["stream", "display", "error", "notice", "unknown"]

STREAM_NAMES = ("stdout", "stderr")

# MIME types whose payload is base64 text in a Jupyter MIME bundle.
BINARY_MIME_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/bmp",
        "application/pdf",
    }
)

# Both truncation notices of the server (cell limit and global limit) start so.
TRUNCATION_PREFIX = "Output truncated"

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Output:
    """One normalised output of a remote run.

    Attributes
    ----------
    kind
        ``"stream"``, ``"display"``, ``"error"``, ``"notice"`` (a truncation notice
        of the server) or ``"unknown"`` (an item of no known shape).
    sources
        Indices into the raw item list of every item merged into this output.
    name
        Stream name (``"stdout"`` or ``"stderr"``) of a stream or notice.
    text
        Stream text, or the notice text.
    data, metadata
        MIME bundle and its metadata of a display.
    ename, evalue, traceback
        Fields of an error. The traceback lines keep their ANSI colour codes.
    item
        The raw item of an unknown output.
    """

    kind: OutputKind
    sources: list[int] = field(default_factory=list)
    name: str | None = None
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    ename: str = ""
    evalue: str = ""
    traceback: list[str] = field(default_factory=list)
    item: Any = None

    @property
    def index(self) -> int:
        """Index of the raw item whose content this output shows (the last merged)."""
        return self.sources[-1]

    @property
    def repeat(self) -> int:
        """Number of raw items merged into this output."""
        return len(self.sources)


@dataclass
class NormalizedOutputs:
    """Outputs of one run in display order, with what normalising changed.

    Attributes
    ----------
    outputs
        The outputs to show, in the order the kernel sent them.
    cleared
        Number of items dropped because a later ``{"wait": ...}`` item marked a
        ``clear_output()`` call.
    """

    outputs: list[Output]
    cleared: int = 0


def normalize_items(items: Iterable[Any]) -> NormalizedOutputs:
    """Classify raw output items and merge the pieces that belong together.

    Parameters
    ----------
    items
        The list returned by ``system.jupyterExecute``. Entries that are not
        dictionaries become ``"unknown"`` outputs instead of raising.

    Returns
    -------
    NormalizedOutputs
    """
    outputs: list[Output] = []
    cleared = 0
    display_positions: dict[str, int] = {}

    for index, item in enumerate(items):
        if _is_clear_marker(item):
            # The server already drops what came before clear_output() in the same
            # run; dropping again keeps a reply that did not do so consistent.
            cleared += sum(output.repeat for output in outputs)
            outputs = []
            display_positions = {}
            continue

        output = classify_item(index, item)
        display_id = _display_id(item) if output.kind == "display" else None
        if display_id is not None and display_id in display_positions:
            # NOTE: update_display_data and a second display() with the same id
            # look alike without msg_type. Treating both as an update shows the
            # final content once, where the display first appeared.
            earlier = outputs[display_positions[display_id]]
            earlier.sources.append(index)
            earlier.data = output.data
            earlier.metadata = output.metadata
            continue
        if display_id is not None:
            display_positions[display_id] = len(outputs)

        if outputs and _can_merge(outputs[-1], output):
            outputs[-1].sources.append(index)
            outputs[-1].text += output.text
            continue
        outputs.append(output)

    return NormalizedOutputs(outputs=_collapse_notices(outputs), cleared=cleared)


def classify_item(index: int, item: Any) -> Output:
    """Build the :class:`Output` for one raw item, by the keys it carries."""
    if not isinstance(item, dict):
        return Output("unknown", [index], item=item)

    if "ename" in item or "traceback" in item:
        return _error_output(index, item)

    data = item.get("data")
    if isinstance(data, dict):
        metadata = item.get("metadata")
        return Output(
            "display",
            [index],
            data=_join_text_values(data),
            metadata=dict(metadata) if isinstance(metadata, dict) else {},
        )

    name = item.get("name")
    text = item.get("text")
    if name in STREAM_NAMES and isinstance(text, str):
        return Output("stream", [index], name=name, text=text)
    if name in STREAM_NAMES and _is_string_list(text):
        joined = "".join(text)
        if joined.startswith(TRUNCATION_PREFIX):
            return Output("notice", [index], name=name, text=joined)
        # nbformat stores multi-line stream text as a list of lines.
        return Output("stream", [index], name=name, text=joined)

    logger.debug("Output item %d has no known shape: keys %s", index, sorted(item))
    return Output("unknown", [index], item=item)


def strip_ansi(text: str) -> str:
    """Remove ANSI colour and cursor codes, as found in Jupyter tracebacks."""
    return ANSI_ESCAPE.sub("", text)


def format_unknown_item(item: Any, max_chars: int = 10_000) -> str:
    """Format an item of no known shape as JSON text, cut to ``max_chars``."""
    try:
        text = json.dumps(item, ensure_ascii=False, sort_keys=True, default=repr)
    except ValueError:
        # Circular structures cannot come from JSON, but a caller may pass one.
        text = repr(item)
    if len(text) > max_chars:
        text = f"{text[:max_chars]}… ({len(text):,} characters in all)"
    return text


def _error_output(index: int, item: dict[str, Any]) -> Output:
    traceback = item.get("traceback")
    if isinstance(traceback, str):
        traceback = traceback.splitlines()
    elif not _is_string_list(traceback):
        traceback = []
    return Output(
        "error",
        [index],
        ename=str(item.get("ename") or "Error"),
        evalue=str(item.get("evalue") or ""),
        traceback=list(traceback),
    )


def _join_text_values(data: dict[str, Any]) -> dict[str, Any]:
    # nbformat may store a text value as a list of lines. JSON MIME types keep
    # lists, because there a list is the value itself.
    joined = {}
    for mime, value in data.items():
        if _is_string_list(value) and not _is_json_mime(mime):
            value = "".join(value)
        joined[mime] = value
    return joined


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or mime.endswith("+json")


def _is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(part, str) for part in value)


def _is_clear_marker(item: Any) -> bool:
    if not isinstance(item, dict) or "wait" not in item:
        return False
    return set(item) <= {"wait", "output_type", "metadata"}


def _display_id(item: dict[str, Any]) -> str | None:
    transient = item.get("transient")
    if not isinstance(transient, dict):
        return None
    display_id = transient.get("display_id")
    return str(display_id) if display_id is not None else None


def _can_merge(previous: Output, output: Output) -> bool:
    return (
        previous.kind == "stream"
        and output.kind == "stream"
        and previous.name == output.name
    )


def _collapse_notices(outputs: list[Output]) -> list[Output]:
    # After a cap is passed the server replaces every later non-error item by
    # the same notice, so one notice per distinct text is enough.
    first_notice: dict[str, Output] = {}
    collapsed = []
    for output in outputs:
        if output.kind != "notice":
            collapsed.append(output)
            continue
        if output.text in first_notice:
            first_notice[output.text].sources.extend(output.sources)
            continue
        first_notice[output.text] = output
        collapsed.append(output)
    return collapsed
