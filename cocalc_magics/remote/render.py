"""Show the outputs of a remote Jupyter run as if the cell had run locally.

Rendering has two steps. :func:`plan_outputs` decides what to show within the
size limits, with no side effects, and :func:`publish_steps` hands the result to
IPython: stream text goes to ``sys.stdout``/``sys.stderr``, MIME bundles go through
``IPython.display.publish_display_data`` with their metadata.

Size limits keep one cell from flooding the notebook frontend. The defaults of
:class:`OutputLimits` are:

- 1,000,000 bytes of stream text per cell. Longer text shows its head and tail
  around a marker that counts the omitted lines and bytes. Jupyter Server limits
  IOPub stream data to 1,000,000 bytes/s averaged over a 3 s window by default
  (``ZMQChannelsWebsocketConnection.iopub_data_rate_limit`` and
  ``rate_limit_window`` in ``jupyter_server/services/kernels/connection/channels.py``),
  so one cell of that size stays under it.
- 5,000,000 bytes per display output and 10,000,000 bytes for all displays of a
  cell. A larger MIME value is withheld, and a placeholder names its MIME type, its
  size and how to get it from the result object, or the local file it was saved to.
- 500 displays per cell, because Jupyter Server also limits IOPub messages to
  1000 per second by default (``iopub_msg_rate_limit``, same file).

The result object keeps every raw item, so withheld payloads and omitted text
stay available.
"""

from __future__ import annotations

import base64
import binascii
import html
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .items import (
    BINARY_MIME_TYPES,
    NormalizedOutputs,
    Output,
    format_unknown_item,
)

logger = logging.getLogger(__name__)

MIME_SUFFIXES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/svg+xml": ".svg",
    "application/pdf": ".pdf",
    "text/html": ".html",
    "text/markdown": ".md",
    "text/latex": ".tex",
    "text/plain": ".txt",
    "application/json": ".json",
}

# CoCalc interrupts a run that passes its per-run time limit with SIGINT.
INTERRUPT_HINT = (
    "The remote run was interrupted, most likely by the server's time limit per "
    "run (30 s when no limits are sent, timeout_ms_per_cell otherwise). A session "
    "replay counts as one run. Move long work to a file or to a command run in "
    "the project."
)

# Name under which withheld payloads can always be reached, also without --out.
DEFAULT_RESULT_NAME = "cocalc_magics.remote.last_result()"


@dataclass(frozen=True)
class OutputLimits:
    """Size limits for showing the outputs of one remote cell.

    A limit of ``0`` means no limit. Sizes are bytes of UTF-8 text, which for
    base64 image data equals its character count.

    Attributes
    ----------
    max_stream_bytes
        Stream text shown per cell. Longer text shows its head and tail.
    max_output_bytes
        Size of one display output (all its MIME values together).
    max_cell_bytes
        Size of all display outputs of a cell together.
    max_displays
        Number of display outputs shown per cell.
    save_dir
        Folder where withheld payloads are written, or ``None`` to keep them only
        in the result object.
    """

    max_stream_bytes: int = 1_000_000
    max_output_bytes: int = 5_000_000
    max_cell_bytes: int = 10_000_000
    max_displays: int = 500
    save_dir: str | Path | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_stream_bytes",
            "max_output_bytes",
            "max_cell_bytes",
            "max_displays",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"Invalid output limit {name}={value!r}: use a whole number "
                    "of bytes (or displays), or 0 for no limit."
                )


@dataclass
class WithheldPayload:
    """A MIME value that was not sent to the frontend.

    Attributes
    ----------
    index
        Index of the raw item in ``RemoteResult.items``.
    mime
        MIME type of the value.
    size
        Size of the value in bytes (base64 text for binary types).
    reason
        Why it was withheld, as shown to the user.
    path
        Local file the payload was saved to, if any.
    """

    index: int
    mime: str
    size: int
    reason: str
    path: Path | None = None


@dataclass
class Step:
    """One thing to show: stream text, a MIME bundle or a remote error."""

    kind: Literal["stream", "display", "error"]
    name: str = "stdout"
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    error: Output | None = None


@dataclass
class RenderPlan:
    """Decision of :func:`plan_outputs`: the steps to show and the values withheld.

    Attributes
    ----------
    steps
        The steps in display order.
    withheld
        MIME values not shown because of a size limit or invalid base64.
    omitted_stream_bytes, omitted_stream_lines
        Stream text left out between the head and the tail.
    """

    steps: list[Step]
    withheld: list[WithheldPayload] = field(default_factory=list)
    omitted_stream_bytes: int = 0
    omitted_stream_lines: int = 0


def plan_outputs(
    normalized: NormalizedOutputs,
    limits: OutputLimits | None = None,
    *,
    result_name: str | None = None,
) -> RenderPlan:
    """Decide what to show of the outputs, within the size limits.

    Parameters
    ----------
    normalized
        Outputs from :func:`~cocalc_magics.remote.items.normalize_items`.
    limits
        Size limits, :class:`OutputLimits` defaults when ``None``.
    result_name
        Python expression that names the result object, used in placeholders
        (for example the ``--out`` variable). Defaults to the last result.

    Returns
    -------
    RenderPlan
    """
    limits = limits or OutputLimits()
    access = result_name or DEFAULT_RESULT_NAME
    plan = RenderPlan(steps=[])
    cut = _cut_streams(normalized.outputs, limits.max_stream_bytes)
    budget = _DisplayBudget(limits)

    for position, output in enumerate(normalized.outputs):
        if output.kind == "stream":
            _add_stream(plan, position, cut, access)
        elif output.kind == "display":
            _add_display(plan, output, budget, access, limits)
        elif output.kind == "error":
            plan.steps.append(Step("error", error=output))
        elif output.kind == "notice":
            plan.steps.append(Step("stream", name="stderr", text=_notice_text(output)))
        else:
            text = f"Unrecognized output item: {format_unknown_item(output.item)}"
            plan.steps.append(Step("display", data={"text/plain": text}))

    if budget.hidden_by_count:
        plan.steps.append(
            Step(
                "stream",
                name="stderr",
                text=(
                    f"{budget.hidden_by_count:,} more display outputs are not shown, "
                    f"because one cell shows at most {limits.max_displays:,}. "
                    f"Their raw items are in {access}.items.\n"
                ),
            )
        )
    return plan


def publish_steps(steps: list[Step], *, show_errors: bool, kernel: str = "") -> None:
    """Send the planned steps to the frontend through IPython's display system.

    Parameters
    ----------
    steps
        Steps from :func:`plan_outputs`.
    show_errors
        Print remote errors to ``sys.stderr`` in place. Leave it off when the
        caller raises :class:`~cocalc_magics.remote.result.RemoteKernelError`,
        whose traceback already shows them.
    kernel
        Kernel name, for the header of a printed remote traceback.
    """
    from IPython.display import publish_display_data

    for step in steps:
        if step.kind == "stream":
            write_stream(step.name, step.text)
        elif step.kind == "display":
            # Publishing flushes pending stream text first (in ipykernel), which
            # keeps stream text and displays in the kernel's order.
            publish_display_data(data=step.data, metadata=step.metadata)
        elif show_errors and step.error is not None:
            # NOTE: without show_errors the raised exception shows the errors when
            # the cell ends, after any output that followed them remotely. A
            # Python kernel sends nothing after an uncaught error.
            lines = format_traceback(step.error, kernel)
            write_stream("stderr", "\n".join(lines) + "\n")


def format_traceback(error: Output, kernel: str = "") -> list[str]:
    """Build the traceback lines of a remote error, ANSI colours kept.

    A header line says the traceback comes from the remote kernel, because its
    file names and line numbers refer to the remote cell.
    """
    where = f"the remote {kernel} kernel" if kernel else "the remote kernel"
    header = f"\x1b[1;31mError raised on {where}:\x1b[0m"
    lines = [header, *error.traceback]
    if not error.traceback:
        lines.append(f"\x1b[0;31m{error.ename}\x1b[0m: {error.evalue}")
    if error.ename == "KeyboardInterrupt":
        lines.append(INTERRUPT_HINT)
    return lines


def write_stream(name: str, text: str) -> None:
    """Write text to ``sys.stdout`` or ``sys.stderr`` and flush it.

    Flushing after each write keeps stdout and stderr in the kernel's order,
    because ipykernel buffers each stream separately.
    """
    stream = sys.stderr if name == "stderr" else sys.stdout
    try:
        stream.write(text)
    except UnicodeEncodeError:
        # Only a stream opened with a narrow encoding gets here. Replacing the
        # characters it cannot encode beats losing the whole output.
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, "replace").decode(encoding))
    stream.flush()


def decode_payload(mime: str, value: Any) -> bytes | str | Any:
    """Decode a MIME value: base64 of binary types becomes bytes, others stay as is.

    Raises
    ------
    ValueError
        If the value of a binary type is not valid base64.
    """
    if mime in BINARY_MIME_TYPES and isinstance(value, str):
        try:
            return base64.b64decode("".join(value.split()), validate=True)
        except binascii.Error as error:
            raise ValueError(
                f"The {mime} payload is not valid base64: {error}"
            ) from None
    return value


def format_size(size: int) -> str:
    """Format a byte count for people: ``"15.0 MB"``, ``"812 bytes"``."""
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB"
    if size >= 1_000:
        return f"{size / 1_000:.1f} kB"
    return f"{size} bytes"


def value_size(value: Any) -> int:
    """Size in bytes of a MIME value as it travels in a JSON message."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    return len(format_unknown_item(value, max_chars=sys.maxsize).encode("utf-8"))


# Stream text: keep a head and a tail of the whole cell's text, drop the middle.


@dataclass
class _StreamPart:
    name: str
    head: str
    tail: str = ""
    omitted_bytes: int = 0
    omitted_lines: int = 0


@dataclass
class _StreamCut:
    parts: dict[int, _StreamPart]
    omitted_bytes: int = 0
    omitted_lines: int = 0
    marker_position: int | None = None


def _cut_streams(outputs: list[Output], max_bytes: int) -> _StreamCut:
    encoded = {
        position: output.text.encode("utf-8", "surrogatepass")
        for position, output in enumerate(outputs)
        if output.kind == "stream"
    }
    total = sum(len(text) for text in encoded.values())
    if not max_bytes or total <= max_bytes:
        parts = {
            position: _StreamPart(output.name or "stdout", output.text)
            for position, output in enumerate(outputs)
            if position in encoded
        }
        return _StreamCut(parts)

    head_left = max_bytes // 2
    head_sizes = {}
    for position, text in encoded.items():
        head_sizes[position] = min(len(text), head_left)
        head_left -= head_sizes[position]

    tail_left = max_bytes - max_bytes // 2
    tail_sizes = {}
    for position in reversed(list(encoded)):
        room = len(encoded[position]) - head_sizes[position]
        tail_sizes[position] = min(room, tail_left)
        tail_left -= tail_sizes[position]

    cut = _StreamCut({})
    for position, text in encoded.items():
        name = outputs[position].name or "stdout"
        part = _cut_text(name, text, head_sizes[position], tail_sizes[position])
        if part.omitted_bytes and cut.marker_position is None:
            cut.marker_position = position
        cut.omitted_bytes += part.omitted_bytes
        cut.omitted_lines += part.omitted_lines
        cut.parts[position] = part
    return cut


def _cut_text(name: str, text: bytes, head_size: int, tail_size: int) -> _StreamPart:
    if head_size + tail_size >= len(text):
        return _StreamPart(name, text.decode("utf-8", "surrogatepass"))

    # Cut at line ends where the kept text has any, so no line shows half, and
    # never inside a multi-byte character.
    head_end = _char_start(text, head_size)
    newline = text.rfind(b"\n", 0, head_end)
    if newline >= 0:
        head_end = newline + 1

    tail_start = _char_start(text, len(text) - tail_size, forward=True)
    if tail_start < len(text) and text[tail_start - 1 : tail_start] != b"\n":
        newline = text.find(b"\n", tail_start, len(text) - 1)
        if newline >= 0:
            tail_start = newline + 1
    tail_start = max(tail_start, head_end)

    middle = text[head_end:tail_start]
    lines = middle.count(b"\n") + (0 if middle.endswith(b"\n") else 1)
    return _StreamPart(
        name,
        text[:head_end].decode("utf-8", "surrogatepass"),
        text[tail_start:].decode("utf-8", "surrogatepass"),
        omitted_bytes=len(middle),
        omitted_lines=lines,
    )


def _char_start(text: bytes, index: int, *, forward: bool = False) -> int:
    # UTF-8 continuation bytes look like 0b10xxxxxx.
    step = 1 if forward else -1
    while 0 < index < len(text) and text[index] & 0xC0 == 0x80:
        index += step
    return index


def _add_stream(plan: RenderPlan, position: int, cut: _StreamCut, access: str) -> None:
    part = cut.parts[position]
    if part.head:
        plan.steps.append(Step("stream", name=part.name, text=part.head))
    if position == cut.marker_position:
        plan.omitted_stream_bytes = cut.omitted_bytes
        plan.omitted_stream_lines = cut.omitted_lines
        marker = (
            f"\n... {cut.omitted_lines:,} lines ({cut.omitted_bytes:,} bytes) of "
            f"output omitted here. The full text is in {access}.stdout and "
            f"{access}.stderr ...\n\n"
        )
        plan.steps.append(Step("stream", name="stderr", text=marker))
    if part.tail:
        plan.steps.append(Step("stream", name=part.name, text=part.tail))


# Display outputs: withhold MIME values that do not fit the limits.


class _DisplayBudget:
    def __init__(self, limits: OutputLimits) -> None:
        self.limits = limits
        self.used_bytes = 0
        self.shown = 0
        self.hidden_by_count = 0

    def select(self, sizes: dict[str, int]) -> dict[str, str]:
        """Return the reason for each MIME type that must be withheld."""
        limits = self.limits
        withheld: dict[str, str] = {}
        kept_sizes = dict(sizes)

        # The largest values go first, so a small text/plain fallback survives.
        for mime in sorted(sizes, key=sizes.get, reverse=True):
            output_bytes = sum(kept_sizes.values())
            if limits.max_output_bytes and output_bytes > limits.max_output_bytes:
                withheld[mime] = (
                    f"larger than the {format_size(limits.max_output_bytes)} "
                    "limit per output"
                )
                del kept_sizes[mime]
        for mime in sorted(kept_sizes, key=kept_sizes.get, reverse=True):
            cell_bytes = self.used_bytes + sum(kept_sizes.values())
            if limits.max_cell_bytes and cell_bytes > limits.max_cell_bytes:
                limit = format_size(limits.max_cell_bytes)
                withheld[mime] = f"the cell's outputs passed the {limit} limit per cell"
                del kept_sizes[mime]

        self.used_bytes += sum(kept_sizes.values())
        return withheld


def _add_display(
    plan: RenderPlan,
    output: Output,
    budget: _DisplayBudget,
    access: str,
    limits: OutputLimits,
) -> None:
    if limits.max_displays and budget.shown >= limits.max_displays:
        budget.hidden_by_count += 1
        return
    budget.shown += 1

    data = _clean_binary_values(output.data)
    sizes = {mime: value_size(value) for mime, value in data.items()}
    reasons = budget.select(sizes)
    reasons.update(_invalid_base64(data, reasons))

    visible = {mime: value for mime, value in data.items() if mime not in reasons}
    metadata = {
        key: value for key, value in output.metadata.items() if key not in reasons
    }
    if visible:
        if "text/plain" not in visible:
            # Terminals and text exports show only text/plain.
            visible["text/plain"] = f"<{', '.join(visible)} output>"
        plan.steps.append(Step("display", data=visible, metadata=metadata))

    withheld = [
        _withhold(output.index, mime, sizes[mime], reason, data[mime], limits)
        for mime, reason in reasons.items()
    ]
    if withheld:
        plan.withheld.extend(withheld)
        plan.steps.append(_placeholder(withheld, access))


def _clean_binary_values(data: dict[str, Any]) -> dict[str, Any]:
    # Base64 may arrive wrapped in lines, but frontends expect one unbroken string.
    cleaned = {}
    for mime, value in data.items():
        if mime in BINARY_MIME_TYPES and isinstance(value, str):
            value = "".join(value.split())
        cleaned[mime] = value
    return cleaned


def _invalid_base64(data: dict[str, Any], withheld: dict[str, str]) -> dict[str, str]:
    reasons = {}
    for mime, value in data.items():
        if mime not in BINARY_MIME_TYPES or mime in withheld:
            continue
        try:
            decode_payload(mime, value)
        except ValueError:
            reasons[mime] = "not valid base64"
        if not isinstance(value, str):
            reasons[mime] = "not a base64 string"
    return reasons


def _withhold(
    index: int,
    mime: str,
    size: int,
    reason: str,
    value: Any,
    limits: OutputLimits,
) -> WithheldPayload:
    withheld = WithheldPayload(index=index, mime=mime, size=size, reason=reason)
    if limits.save_dir is None or reason.startswith("not "):
        return withheld
    try:
        withheld.path = save_payload(value, mime, Path(limits.save_dir), index)
    except OSError as error:
        logger.warning(
            "Failed to save the withheld %s payload to %s: %s",
            mime,
            limits.save_dir,
            error,
        )
    return withheld


def save_payload(value: Any, mime: str, folder: Path, index: int) -> Path:
    """Write a MIME value to a new file in ``folder`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    suffix = MIME_SUFFIXES.get(mime, ".bin")
    path = folder / f"cocalc-output-{stamp}-{index}{suffix}"
    count = 1
    while path.exists():
        count += 1
        path = folder / f"cocalc-output-{stamp}-{index}-{count}{suffix}"

    payload = decode_payload(mime, value)
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    elif isinstance(payload, str):
        path.write_text(payload, encoding="utf-8")
    else:
        path.write_text(format_unknown_item(payload, sys.maxsize), encoding="utf-8")
    return path


def _placeholder(withheld: list[WithheldPayload], access: str) -> Step:
    lines = []
    for payload in withheld:
        where = f"{access}.payload({payload.index}, {payload.mime!r})"
        if payload.path is not None:
            where += f", or the file {payload.path}"
        lines.append(
            f"[{payload.mime} output of {format_size(payload.size)} not shown: "
            f"{payload.reason}. Get it with {where}.]"
        )
    text = "\n".join(lines)
    items = "".join(f"<li>{html.escape(line[1:-1])}</li>" for line in lines)
    return Step(
        "display",
        data={"text/plain": text, "text/html": f"<ul>{items}</ul>"},
    )


def _notice_text(output: Output) -> str:
    text = output.text.rstrip("\n")
    if output.repeat > 1:
        text += (
            f". The server replaced {output.repeat:,} outputs of the remote kernel "
            "with this notice."
        )
    return f"{text}\n"
