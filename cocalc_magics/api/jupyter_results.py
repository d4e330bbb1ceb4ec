"""Results of the Jupyter helpers: stateless execution, kernel specs, running kernels.

``system.jupyterExecute`` returns the content of each Jupyter output message without
``output_type``: the kind shows only in the keys (``name``/``text`` for a stream,
``data`` for a result or display, ``ename``/``traceback`` for an error). Truncation
notices carry ``text`` as a list of strings. :func:`normalize_output` turns any of
these, with or without ``output_type``, into an nbformat v4 output dictionary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cocalc_magics.api.results import ResultDisplay, expect_dict

__all__ = [
    "JupyterResult",
    "KernelSpec",
    "RunningKernel",
    "item_text",
    "normalize_output",
    "normalize_outputs",
]

_TRUNCATION_NOTICE_START = "Output truncated since it exceeded the"


def item_text(item: dict) -> str:
    """Return the ``text`` of a stream item, joining it when it is a list."""
    text = item.get("text", "")
    if isinstance(text, list):
        return "".join(str(part) for part in text)
    return str(text)


def normalize_output(item: Any) -> dict | None:
    """Return the nbformat v4 output for one ``system.jupyterExecute`` item.

    Results and displays both become ``display_data``, because CoCalc removes the
    execution count that distinguishes them. An item of no known shape becomes a
    ``display_data`` with its JSON as ``text/plain``, so nothing is dropped.
    ``{"wait": ...}`` markers left by ``clear_output`` return None.
    """
    if not isinstance(item, dict):
        return _unknown_output(item)

    if "traceback" in item or "ename" in item:
        traceback = item.get("traceback") or []
        if isinstance(traceback, str):
            traceback = traceback.splitlines()
        return {
            "output_type": "error",
            "ename": str(item.get("ename", "Error")),
            "evalue": str(item.get("evalue", "")),
            "traceback": [str(line) for line in traceback],
        }
    if "data" in item and isinstance(item["data"], dict):
        return {
            "output_type": "display_data",
            "data": item["data"],
            "metadata": item.get("metadata") or {},
        }
    if "text" in item and item.get("name") in ("stdout", "stderr"):
        return {"output_type": "stream", "name": item["name"], "text": item_text(item)}
    if set(item) == {"wait"}:
        return None
    return _unknown_output(item)


def _unknown_output(item: Any) -> dict:
    text = json.dumps(item, ensure_ascii=False, default=str)
    return {"output_type": "display_data", "data": {"text/plain": text}, "metadata": {}}


def normalize_outputs(items: list) -> list[dict]:
    """Normalize every item, merge adjacent streams of the same name, and collapse
    repeated truncation notices into one."""
    outputs: list[dict] = []
    for item in items:
        output = normalize_output(item)
        if output is None:
            continue
        notice = _is_notice(output)
        if notice and not output["text"].endswith("\n"):
            # A notice has no newline of its own; keep it on a line by itself.
            output["text"] += "\n"

        previous = outputs[-1] if outputs else None
        if (
            output["output_type"] == "stream"
            and previous is not None
            and previous["output_type"] == "stream"
            and previous["name"] == output["name"]
        ):
            if notice and previous["text"].endswith(output["text"]):
                continue
            if notice and not previous["text"].endswith("\n"):
                previous["text"] += "\n"
            previous["text"] += output["text"]
            continue
        outputs.append(output)
    return outputs


def _is_notice(output: dict) -> bool:
    return output["output_type"] == "stream" and output["text"].startswith(
        _TRUNCATION_NOTICE_START
    )


@dataclass(repr=False)
class JupyterResult(ResultDisplay):
    """Outputs of one ``system.jupyterExecute`` call, in the order they came.

    ``items`` are the raw items as CoCalc sent them; :attr:`outputs` gives them as
    nbformat outputs.
    """

    items: list
    kernel: str
    project_id: str | None
    duration_s: float
    outputs: list[dict] = field(init=False)

    def __post_init__(self) -> None:
        self.outputs = normalize_outputs(self.items)

    @property
    def error(self) -> dict | None:
        """The first error output (``ename``, ``evalue``, ``traceback``), if any."""
        for output in self.outputs:
            if output["output_type"] == "error":
                return output
        return None

    @property
    def stdout(self) -> str:
        """All stdout stream text, joined."""
        return self._stream_text("stdout")

    @property
    def stderr(self) -> str:
        """All stderr stream text, joined."""
        return self._stream_text("stderr")

    def _stream_text(self, name: str) -> str:
        return "".join(
            output["text"]
            for output in self.outputs
            if output["output_type"] == "stream" and output["name"] == name
        )

    def _display_fields(self) -> list[tuple[str, Any]]:
        error = self.error
        return [
            ("kernel", self.kernel),
            ("outputs", len(self.outputs)),
            ("error", f"{error['ename']}: {error['evalue']}" if error else None),
            ("stdout", self.stdout),
            ("stderr", self.stderr),
            ("duration_s", round(self.duration_s, 3)),
            ("project_id", self.project_id),
        ]

    def _display_blocks(self) -> list[tuple[str, str]]:
        return [("stdout", self.stdout), ("stderr", self.stderr)]


@dataclass(repr=False)
class RunningKernel(ResultDisplay):
    """A kernel process the project started (``system.listJupyterKernels``)."""

    pid: int
    kernel_name: str
    connection_file: str | None

    @classmethod
    def from_reply(cls, entry: dict) -> RunningKernel:
        return cls(
            pid=int(entry.get("pid", 0)),
            kernel_name=str(entry.get("kernel_name", "")),
            connection_file=entry.get("connectionFile"),
        )

    def _display_fields(self) -> list[tuple[str, Any]]:
        return [
            ("pid", self.pid),
            ("kernel_name", self.kernel_name),
            ("connection_file", self.connection_file),
        ]


@dataclass(repr=False)
class KernelSpec(ResultDisplay):
    """An installed kernel (``editor.jupyterKernels``); ``raw`` is the whole spec.

    ``disabled`` mirrors ``metadata.cocalc.disabled``: CoCalc's own UI hides such
    kernels.
    """

    name: str
    display_name: str
    language: str | None
    raw: dict
    disabled: bool = False

    @classmethod
    def from_reply(cls, spec: Any) -> KernelSpec:
        spec = expect_dict(spec, "editor.jupyterKernels")
        cocalc = (spec.get("metadata") or {}).get("cocalc") or {}
        return cls(
            name=str(spec.get("name", "")),
            display_name=str(spec.get("display_name") or spec.get("name", "")),
            language=spec.get("language"),
            raw=spec,
            disabled=bool(cocalc.get("disabled", False)),
        )

    def _display_fields(self) -> list[tuple[str, Any]]:
        return [
            ("name", self.name),
            ("display_name", self.display_name),
            ("language", self.language),
            ("disabled", self.disabled or None),
        ]
