"""Client-side sessions for CoCalc's stateless Jupyter API.

``system.jupyterExecute`` starts a fresh kernel for every call, so a session keeps
the inputs that ran without error and sends them as ``history`` on the next call,
where the server replays them as one cell before the new input. The server keeps
nothing, so the replay costs time on every call and repeats every side effect.

A session watches both. The replay of the history takes at most about as long as
the last successful call, because that call ran the same inputs (its history and
its input) plus a kernel start. When that estimate nears the server's time limit
per run (30 s when no ``limits`` are sent), the session warns: a replay cut short
fails silently and later inputs miss its state. It also warns, by a heuristic on
the code's text, when an input that will be replayed seems to write files, use the
network, draw random numbers or read the clock. Printing is no such effect, because
the server discards the output of the replayed history.

Sessions live in memory, per (site, project, kernel, name).
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

logger = logging.getLogger(__name__)

# Per-run time limit of system.jupyterExecute when a call sends no `limits`.
DEFAULT_TIME_LIMIT_S = 30.0

# Share of the time limit at which a replay estimate triggers a warning.
WARN_FRACTION = 0.8

# CoCalc rejects request bodies over 1 MB, and the history travels in the body.
MAX_HISTORY_CHARS = 900_000

SIDE_EFFECT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern, re.MULTILINE))
    for label, pattern in (
        (
            "write or delete files",
            (
                r"open\([^)]*['\"][wax]\+?b?['\"]|\.write(_text|_bytes)?\(|"
                r"\.to_(csv|excel|parquet|json|pickle|hdf|feather)\(|savefig\(|"
                r"\b(np|numpy)\.save|"
                r"\b(os\.(remove|unlink|rename|mkdir|makedirs|rmdir)|shutil\.)|"
                r"\.(mkdir|unlink|touch)\(|\bpickle\.dump|\bjson\.dump\("
            ),
        ),
        (
            "use the network",
            (
                r"\b(requests|httpx|aiohttp|urllib|socket|smtplib|ftplib)\b|urlopen|"
                r"\b(wget|curl)\b|http\.client"
            ),
        ),
        (
            "draw random numbers",
            r"\brandom\b|\brand(n|int)?\s*\(|\bsecrets\.|\buuid\d?\(|\bset\.seed\b",
        ),
        (
            "read the clock or sleep",
            (
                r"\btime\.(time|sleep|monotonic|perf_counter)|"
                r"\bdatetime\.(now|today|utcnow)|\bdate\.today|\bSys\.time\(|\bnow\(\)"
            ),
        ),
        (
            "run shell commands",
            (
                r"^\s*!|^%%(bash|sh|script)|\bsubprocess\b|"
                r"\bos\.(system|popen)\b|\bsystem\("
            ),
        ),
    )
)


class SessionKey(NamedTuple):
    """Identity of a session: site URL, project id, kernel name and session name."""

    site: str
    project_id: str
    kernel: str
    name: str


@dataclass
class CallRecord:
    """One call made for a session.

    Attributes
    ----------
    duration_s
        Wall time of the call in seconds.
    history_length
        Number of inputs replayed before the new input.
    ok
        Whether the new input ran without a remote error.
    finished_at
        Time the call returned, seconds since the epoch.
    """

    duration_s: float
    history_length: int
    ok: bool
    finished_at: float


@dataclass
class Session:
    """History of successful inputs, replayed on every call of the session.

    Attributes
    ----------
    key
        Site, project, kernel and name of the session.
    inputs
        Inputs that ran without error, oldest first.
    calls
        Every call made for the session since it was created or reset.
    time_limit_s
        Server's time limit per run, which a replay must stay under.
    """

    key: SessionKey
    inputs: list[str] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    _replay_bound_s: float | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """Name of the session."""
        return self.key.name

    @property
    def history(self) -> list[str]:
        """Copy of the inputs to send as ``history`` on the next call."""
        return list(self.inputs)

    @property
    def replay_estimate_s(self) -> float | None:
        """Estimated upper bound of the next replay, in seconds, or ``None``.

        It is the wall time of the call that added the last input: that call ran
        every input of the current history once, plus a kernel start.
        """
        return self._replay_bound_s if self.inputs else None

    def record_call(self, code: str, duration_s: float, ok: bool) -> list[str]:
        """Record a finished call, keep its input if it succeeded, return warnings.

        Parameters
        ----------
        code
            The input that ran.
        duration_s
            Wall time of the call in seconds.
        ok
            Whether the input ran without a remote error. A failed input is not
            kept, because the server would replay its error silently.

        Returns
        -------
        list of str
            Warnings for the user, or an empty list.
        """
        history_length = len(self.inputs)
        self.calls.append(CallRecord(duration_s, history_length, ok, time.time()))
        if not ok:
            return []

        self.inputs.append(code)
        self._replay_bound_s = duration_s
        logger.debug(
            "Session %r now has %d inputs; last call took %.2f s",
            self.name,
            len(self.inputs),
            duration_s,
        )
        warnings = [self._side_effect_warning(code)]
        warnings.append(self._time_warning())
        warnings.append(self._size_warning())
        return [warning for warning in warnings if warning]

    def reset(self) -> None:
        """Forget every input and call, so the next call starts a clean kernel."""
        self.inputs.clear()
        self.calls.clear()
        self._replay_bound_s = None

    def describe(self) -> str:
        """Describe the session in a few lines of text."""
        return "\n".join([*self._summary_lines(), *self._input_lines()])

    def __repr__(self) -> str:
        return (
            f"<Session {self.name!r} kernel={self.key.kernel!r} "
            f"inputs={len(self.inputs)} calls={len(self.calls)}>"
        )

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(repr(self) if cycle else self.describe())

    def _repr_html_(self) -> str:
        summary = "".join(
            f"<div>{html.escape(line)}</div>" for line in self._summary_lines()
        )
        rows = "".join(
            f"<li><code>{html.escape(line.strip())}</code></li>"
            for line in self._input_lines()
        )
        return f"{summary}<ul>{rows}</ul>" if rows else summary

    def _summary_lines(self) -> list[str]:
        where = f"project {self.key.project_id}, {self.key.site}"
        counts = (
            f"{_count(len(self.inputs), 'input')} replayed on each call, "
            f"{_count(len(self.calls), 'call')} so far "
            f"({self._failed_calls()} with an error)."
        )
        lines = [f"Session {self.name!r} on kernel {self.key.kernel} ({where})", counts]
        if self.calls:
            last = self.calls[-1]
            lines.append(
                f"Last call: {last.duration_s:.1f} s with "
                f"{_count(last.history_length, 'input')} replayed first."
            )
        estimate = self.replay_estimate_s
        if estimate is not None:
            lines.append(
                f"Replay estimate: at most about {estimate:.1f} s of the "
                f"{self.time_limit_s:.0f} s time limit per run (measured: the call "
                "that added the last input)."
            )
        if any(detect_side_effects(code) for code in self.inputs):
            lines.append(
                "Inputs marked below seem to have side effects that a replay "
                "repeats (a guess from the code's text)."
            )
        return lines

    def _input_lines(self) -> list[str]:
        lines = []
        for number, code in enumerate(self.inputs, start=1):
            effects = detect_side_effects(code)
            note = f"   [{', '.join(effects)}]" if effects else ""
            lines.append(f"  [{number}] {_first_line(code)}{note}")
        return lines

    def _side_effect_warning(self, code: str) -> str:
        effects = detect_side_effects(code)
        if not effects:
            return ""
        return (
            f"Input {len(self.inputs)} of session {self.name!r} seems to "
            f"{_join_words(effects)} (a guess from the code's text). The server "
            "keeps no state, so every later call of the session replays this input "
            "and repeats those effects. Use %cocalc session "
            f"{self.name} --reset to start over."
        )

    def _time_warning(self) -> str:
        estimate = self._replay_bound_s
        if estimate is None or estimate < WARN_FRACTION * self.time_limit_s:
            return ""
        return (
            f"Replaying session {self.name!r} ({_count(len(self.inputs), 'input')}) "
            "may take "
            f"up to about {estimate:.1f} s, close to the server's limit of "
            f"{self.time_limit_s:.0f} s per run. A replay that is cut short fails "
            "silently, and later inputs then miss its variables. Save slow results "
            f"to files, or reset the session with %cocalc session {self.name} --reset."
        )

    def _size_warning(self) -> str:
        size = sum(len(code) for code in self.inputs)
        if size < MAX_HISTORY_CHARS:
            return ""
        return (
            f"The history of session {self.name!r} has {size:,} characters and is "
            "sent with every call. CoCalc rejects request bodies over 1 MB, so "
            f"reset the session with %cocalc session {self.name} --reset."
        )

    def _failed_calls(self) -> int:
        return sum(1 for call in self.calls if not call.ok)


class SessionStore:
    """Sessions of this Python process, per (site, project, kernel, name)."""

    def __init__(self) -> None:
        self._sessions: dict[SessionKey, Session] = {}

    def get(self, key: SessionKey, *, create: bool = True) -> Session | None:
        """Return the session for ``key``, creating it unless ``create`` is false."""
        session = self._sessions.get(key)
        if session is None and create:
            session = self._sessions[key] = Session(key)
        return session

    def find(
        self,
        site: str,
        project_id: str,
        name: str,
        kernel: str | None = None,
    ) -> list[Session]:
        """Return the sessions of that name in a project, of any kernel by default."""
        return [
            session
            for key, session in self._sessions.items()
            if (key.site, key.project_id, key.name) == (site, project_id, name)
            and kernel in (None, key.kernel)
        ]

    def reset(
        self,
        site: str,
        project_id: str,
        name: str,
        kernel: str | None = None,
    ) -> int:
        """Reset the matching sessions and return how many there were."""
        sessions = self.find(site, project_id, name, kernel)
        for session in sessions:
            session.reset()
        return len(sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)


def detect_side_effects(code: str) -> list[str]:
    """Guess from the code's text which side effects a replay would repeat.

    This is a heuristic on the text: it misses effects hidden in called functions
    and can flag code that only mentions a name.
    """
    return [label for label, pattern in SIDE_EFFECT_PATTERNS if pattern.search(code)]


def _first_line(code: str, max_chars: int = 70) -> str:
    lines = [line for line in code.strip().splitlines() if line.strip()]
    if not lines:
        return "(empty)"
    text = lines[0] if len(lines) == 1 else f"{lines[0]} … (+{len(lines) - 1} lines)"
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def _join_words(words: list[str]) -> str:
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def _count(number: int, noun: str) -> str:
    """Return ``"1 input"`` or ``"3 inputs"``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
