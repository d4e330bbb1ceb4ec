"""The result of one remote Jupyter run, and the error raised for a remote exception.

:class:`RemoteResult` keeps every raw output item, so a payload withheld from the
frontend stays available, and gives the text of the run without ANSI codes.
:class:`RemoteKernelError` makes a remote exception fail the local cell: IPython
calls its ``_render_traceback_`` and ipykernel names the error output after the
exception class, so each remote ``ename`` gets a subclass of that name.
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .items import NormalizedOutputs, Output, format_unknown_item, strip_ansi
from .render import (
    OutputLimits,
    WithheldPayload,
    decode_payload,
    format_size,
    format_traceback,
    plan_outputs,
    publish_steps,
    save_payload,
)

HTML_EXCERPT_CHARS = 2_000


@dataclass(repr=False)
class RemoteResult:
    """Outputs of code run on a remote Jupyter kernel.

    Attributes
    ----------
    items
        The raw output items, exactly as ``system.jupyterExecute`` returned them.
    outputs
        The same items classified and merged, in order.
    kernel
        Name of the kernel that ran the code.
    input
        The code that ran.
    session
        Name of the session whose history was replayed first, or ``None``.
    history_length
        Number of earlier inputs replayed before ``input``.
    path
        Working directory sent with the call, relative to the project's home.
    duration_s
        Wall time of the call in seconds, kernel start and replay included.
    project_id
        Project the code ran in, when known.
    cleared
        Number of items removed by a ``clear_output()`` in the remote code.
    withheld
        MIME values that were not sent to the frontend, with the reason.
    """

    items: list[Any]
    outputs: list[Output]
    kernel: str
    input: str = ""
    session: str | None = None
    history_length: int = 0
    path: str | None = None
    duration_s: float = 0.0
    project_id: str | None = None
    cleared: int = 0
    withheld: list[WithheldPayload] = field(default_factory=list)

    @classmethod
    def from_items(
        cls, items: list[Any], normalized: NormalizedOutputs, **fields: Any
    ) -> RemoteResult:
        """Build a result from raw items and their normalised outputs."""
        return cls(
            items=items,
            outputs=normalized.outputs,
            cleared=normalized.cleared,
            **fields,
        )

    @property
    def errors(self) -> list[Output]:
        """Error outputs of the remote kernel, in order."""
        return [output for output in self.outputs if output.kind == "error"]

    @property
    def ok(self) -> bool:
        """Whether the remote code ran without raising."""
        return not self.errors

    @property
    def stdout(self) -> str:
        """All text the remote code wrote to stdout."""
        return self._stream_text("stdout")

    @property
    def stderr(self) -> str:
        """All text the remote code wrote to stderr."""
        return self._stream_text("stderr")

    @property
    def text(self) -> str:
        """Text of every output in order, without ANSI codes.

        Streams give their text, displays their ``text/plain`` value, errors their
        traceback and truncation notices their message.
        """
        return "".join(_output_text(output) for output in self.outputs)

    @property
    def data(self) -> list[dict[str, Any]]:
        """MIME bundles of the display outputs, in order, nothing withheld."""
        return [output.data for output in self.outputs if output.kind == "display"]

    def payload(self, index: int, mime: str) -> bytes | str | Any:
        """Return one MIME value of a raw item, decoded from base64 for images.

        Parameters
        ----------
        index
            Index in :attr:`items`, as shown in the placeholder of a withheld value.
        mime
            MIME type, for example ``"image/png"``.
        """
        item = self.items[index] if 0 <= index < len(self.items) else None
        data = item.get("data") if isinstance(item, dict) else None
        if not isinstance(data, dict) or mime not in data:
            raise KeyError(
                f"Output item {index} has no {mime} data. "
                f"Items with data: {self._items_with_data()}."
            )
        value = data[mime]
        if isinstance(value, list) and all(isinstance(part, str) for part in value):
            value = "".join(value)
        return decode_payload(mime, value)

    def save_payload(self, index: int, mime: str, folder: str | Path = ".") -> Path:
        """Write one MIME value of a raw item to a new file and return its path."""
        self.payload(index, mime)
        return save_payload(self.items[index]["data"][mime], mime, Path(folder), index)

    def show(
        self,
        output_limits: OutputLimits | None = None,
        *,
        result_name: str | None = None,
    ) -> None:
        """Display the outputs again, for example with larger size limits.

        Remote errors are printed as text, not raised.
        """
        normalized = NormalizedOutputs(self.outputs, self.cleared)
        plan = plan_outputs(normalized, output_limits, result_name=result_name)
        publish_steps(plan.steps, show_errors=True, kernel=self.kernel)

    def exception(self) -> RemoteKernelError | None:
        """Build the exception that represents the remote errors, or return ``None``."""
        errors = self.errors
        if not errors:
            return None
        error_class = remote_error_class(errors[-1].ename)
        return error_class(errors, kernel=self.kernel, result=self)

    def raise_for_error(self) -> None:
        """Raise :class:`RemoteKernelError` if the remote code raised."""
        error = self.exception()
        if error is not None:
            raise error

    def __repr__(self) -> str:
        status = "ok" if self.ok else f"error={self.errors[-1].ename}"
        session = f" session={self.session!r}" if self.session else ""
        withheld = f" withheld={len(self.withheld)}" if self.withheld else ""
        return (
            f"<RemoteResult kernel={self.kernel!r}{session} {status} "
            f"items={len(self.items)} duration={self.duration_s:.2f}s{withheld}>"
        )

    def _repr_html_(self) -> str:
        status = (
            "ok" if self.ok else f"{self.errors[-1].ename}: {self.errors[-1].evalue}"
        )
        rows = [
            ("kernel", self.kernel),
            ("session", self.session or "none"),
            ("replayed inputs", str(self.history_length)),
            ("status", status),
            ("output items", str(len(self.items))),
            ("duration", f"{self.duration_s:.2f} s"),
        ]
        rows.extend(
            (
                f"withheld item {payload.index}",
                f"{payload.mime}, {format_size(payload.size)}",
            )
            for payload in self.withheld
        )
        table = "".join(
            f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
            f"<td style='text-align:left'>{html.escape(value)}</td></tr>"
            for name, value in rows
        )
        text = self.text
        excerpt = text[:HTML_EXCERPT_CHARS]
        more = (
            f"\n… {len(text) - len(excerpt):,} more characters"
            if len(text) > len(excerpt)
            else ""
        )
        return f"<table>{table}</table><pre>{html.escape(excerpt + more)}</pre>"

    def _stream_text(self, name: str) -> str:
        return "".join(
            output.text
            for output in self.outputs
            if output.kind == "stream" and output.name == name
        )

    def _items_with_data(self) -> str:
        indices = [
            str(index)
            for index, item in enumerate(self.items)
            if isinstance(item, dict) and isinstance(item.get("data"), dict)
        ]
        return ", ".join(indices) or "none"


class RemoteKernelError(Exception):
    """An exception raised by code on a remote Jupyter kernel.

    The subclass for a remote error has the remote ``ename`` as its name, so the
    notebook's error output reads ``ZeroDivisionError`` and not this class name.
    ``str(error)`` is the remote ``evalue``.

    Attributes
    ----------
    ename, evalue
        Name and message of the last remote error.
    errors
        Every remote error output of the run.
    kernel
        Name of the remote kernel.
    result
        The :class:`RemoteResult` of the run.
    """

    def __init__(
        self,
        errors: list[Output],
        *,
        kernel: str = "",
        result: RemoteResult | None = None,
    ) -> None:
        last = errors[-1]
        super().__init__(last.evalue)
        self.ename = last.ename
        self.evalue = last.evalue
        self.errors = errors
        self.kernel = kernel
        self.result = result

    def __str__(self) -> str:
        return self.evalue

    def _render_traceback_(self) -> list[str]:
        lines: list[str] = []
        for error in self.errors:
            lines.extend(format_traceback(error, self.kernel))
        return lines


@functools.lru_cache(maxsize=256)
def remote_error_class(ename: str) -> type[RemoteKernelError]:
    """Return the :class:`RemoteKernelError` subclass named after a remote error."""
    name = ename.strip() or "RemoteKernelError"
    return type(
        name,
        (RemoteKernelError,),
        {
            "__module__": __name__,
            "__doc__": f"{name} raised on a remote Jupyter kernel.",
        },
    )


def _output_text(output: Output) -> str:
    if output.kind in ("stream", "notice"):
        return output.text
    if output.kind == "display":
        value = output.data.get("text/plain", "")
        text = value if isinstance(value, str) else format_unknown_item(value)
        return text if text.endswith("\n") else text + "\n"
    if output.kind == "error":
        lines = output.traceback or [f"{output.ename}: {output.evalue}"]
        return strip_ansi("\n".join(lines)) + "\n"
    return format_unknown_item(output.item) + "\n"
