"""Dry runs of a fan-out: how many projects would be touched, and how many started.

A dry run reads each project's state with the hub's ``projects.state``, which,
unlike any call to the project endpoint, does not start a stopped project. It uses
the same bounded pool and pacing as a real run, and sends nothing else.
"""

from __future__ import annotations

import concurrent.futures
import html
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cocalc_magics.api import CoCalcError
from cocalc_magics.fanout.pacing import Pacer
from cocalc_magics.fanout.results import Operation
from cocalc_magics.fanout.runner import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_RATE,
    clone_connection,
    describe_error,
)
from cocalc_magics.fanout.targets import ProjectTarget, resolve_projects

if TYPE_CHECKING:
    from cocalc_magics.api import Connection

__all__ = ["FanoutPlan", "plan_fanout"]


@dataclass
class FanoutPlan:
    """Outcome of a dry run: the projects a fan-out would touch, and their states.

    ``states`` maps each project id to its state (``opened`` means stopped; None
    for a project that never ran). ``errors`` maps project ids whose state could
    not be read to the error text; such a project would most likely fail.
    """

    operation: Operation
    targets: list[ProjectTarget]
    states: dict[str, str | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    start_stopped: bool = True

    @property
    def not_running(self) -> list[ProjectTarget]:
        """Projects whose state was read and is not ``running``."""
        return [
            target
            for target in self.targets
            if target.project_id in self.states
            and self.states[target.project_id] != "running"
        ]

    @property
    def to_start(self) -> list[ProjectTarget]:
        """Projects the run would start first (exec and start operations)."""
        if self.operation.kind == "start":
            return self.not_running
        if self.operation.kind == "exec" and self.start_stopped:
            return self.not_running
        return []

    def summary(self) -> str:
        """Return the dry run's outcome in one or two sentences."""
        count = len(self.targets)
        projects = "project" if count == 1 else "projects"
        text = (
            f"Dry run of {self.operation.describe()}: {count} {projects} would be "
            "touched"
        )
        kind = self.operation.kind
        if kind == "start" or (kind == "exec" and self.start_stopped):
            text += f"; {len(self.to_start)} of them would have to be started"
        elif kind == "exec":
            text += (
                f"; {len(self.not_running)} of them are not running and would fail, "
                "because starting stopped projects is off"
            )
        elif kind == "stop":
            running = count - len(self.not_running) - len(self.errors)
            text += f"; {running} of them are running"
        text += "."
        if self.errors:
            text += f" The state of {len(self.errors)} could not be read (see .errors)."
        return text + " Only projects.state was called; nothing was started or run."

    def __repr__(self) -> str:
        lines = [self.summary()]
        for target in self.targets:
            state = self.errors.get(target.project_id) or self.states.get(
                target.project_id
            )
            title = f" {target.title}" if target.title else ""
            lines.append(f"  {target.project_id}{title}: {state or 'never started'}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = []
        for target in self.targets:
            state = self.errors.get(target.project_id) or self.states.get(
                target.project_id
            )
            rows.append(
                "<tr>"
                f"<td><code>{html.escape(target.project_id)}</code></td>"
                f"<td>{html.escape(target.title or '')}</td>"
                f"<td>{html.escape(state or 'never started')}</td>"
                "</tr>"
            )
        return (
            f"<p>{html.escape(self.summary())}</p><table><thead><tr><th>project</th>"
            f"<th>title</th><th>state</th></tr></thead><tbody>{''.join(rows)}</tbody>"
            "</table>"
        )


def plan_fanout(
    connection: Connection,
    projects: Any,
    operation: Operation,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_rate: float | None = DEFAULT_MAX_RATE,
    pacer: Pacer | None = None,
) -> FanoutPlan:
    """Read the state of every project of a fan-out without starting any.

    Parameters are as for :func:`~cocalc_magics.fanout.run_fanout`; whether an
    exec would start stopped projects comes from ``operation.options
    ["start_stopped"]`` (default True).
    """
    targets = resolve_projects(projects, connection)
    pacer = pacer if pacer is not None else Pacer(max_rate)
    plan = FanoutPlan(
        operation,
        targets,
        start_stopped=operation.options.get("start_stopped", True),
    )
    local = threading.local()
    connections: list[Connection] = []
    lock = threading.Lock()

    def read_state(target: ProjectTarget) -> None:
        worker = getattr(local, "connection", None)
        if worker is None:
            worker = local.connection = clone_connection(connection)
            with lock:
                connections.append(worker)
        try:
            state = pacer.call(
                lambda: worker.project_state(target.project_id), idempotent=True
            )
        except CoCalcError as error:
            with lock:
                plan.errors[target.project_id] = describe_error(error)
            return
        with lock:
            plan.states[target.project_id] = state.state

    workers = min(concurrency, len(targets))
    try:
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="cocalc-fanout-plan"
        ) as executor:
            list(executor.map(read_state, targets))
    finally:
        for worker in connections:
            worker.close()
    return plan
