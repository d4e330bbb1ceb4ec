"""``system.exec``: options, process start, output capture and the outcome rules.

This follows the semantics of CoCalc's ``execute-code`` module. A command with
whitespace and no arguments switches to bash. Bash scripts are written to a fresh
``/tmp/cocalc-XXXXXX/a.sh`` and run as ``bash <file>``, with ``ulimit -t`` when a
timeout is set. The process leads its own process group, which gets SIGKILL when
``timeout`` seconds pass. ``max_output`` counts UTF-16 code units and adds the
truncation suffix. The error strings for a non-zero exit, a kill and a failed start
are CoCalc's. Processes run with asyncio on the server's event loop.
"""

from __future__ import annotations

import asyncio
import codecs
import errno as errno_module
import json
import logging
import math
import os
import secrets
import shlex
import shutil
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cocalc_magics.server.errors import MethodError
from cocalc_magics.server.processes import kill_group

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
ASYNC_DEFAULT_MAX_OUTPUT = 1048576
STDERR_QUOTE_LIMIT = 1024
READ_CHUNK = 65536
# A process whose output is still held open by a background child is closed out
# this long after the process itself ended.
PIPE_GRACE_S = 1.0
SCRIPT_ALPHABET = string.ascii_letters + string.digits
LAUNCHER = Path(__file__).with_name("exec_launcher.py")


@dataclass
class ExecSpec:
    """A parsed ``system.exec`` request, ready to start."""

    command: str
    args: list[str]
    bash: bool
    cwd: str
    env: dict[str, str]
    timeout_s: float
    max_output: int | None
    err_on_exit: bool
    ulimit_timeout: bool
    async_call: bool
    argv: list[str] = field(default_factory=list)
    script_dir: Path | None = None

    @property
    def described_command(self) -> str:
        """The command as CoCalc quotes it in the non-zero exit error."""
        if self.bash:
            return self.command
        return f"'{self.command}' (args={' '.join(self.args)})"

    @property
    def killed_text(self) -> str:
        """The command as CoCalc names it after a kill: program, space, arguments."""
        return f"{self.argv[0]} {' '.join(self.argv[1:])}"


class SpawnError(Exception):
    """The process could not be started; ``details`` is a Node-style error object."""

    def __init__(self, details: dict[str, Any]):
        super().__init__(details.get("code"))
        self.details = details

    @property
    def json_text(self) -> str:
        return json.dumps(self.details, separators=(",", ":"))


@dataclass
class Outcome:
    """The end of a process: its exit code, and whether the timeout killed it."""

    exit_code: int
    killed_by_timeout: bool


def parse_exec_options(opts: dict[str, Any], home: Path) -> ExecSpec:
    """Check and normalise the options object of a ``system.exec`` call."""
    command = opts.get("command")
    if not isinstance(command, str) or command == "":
        raise MethodError.thrown(
            "system.exec needs 'command', a non-empty string such as \"ls -la\""
        )
    args = opts.get("args") or []
    if not isinstance(args, list):
        raise MethodError.thrown("system.exec 'args' must be a list of strings")
    args = [str(arg) for arg in args]

    timeout = opts.get("timeout", DEFAULT_TIMEOUT_S)
    if timeout is None:
        timeout = DEFAULT_TIMEOUT_S
    if (
        not isinstance(timeout, (int, float))
        or isinstance(timeout, bool)
        or timeout < 0
    ):
        raise MethodError.thrown(
            f"system.exec 'timeout' must be a number of seconds >= 0, not {timeout!r}"
        )
    max_output = opts.get("max_output")
    if max_output is not None and (
        not isinstance(max_output, int)
        or isinstance(max_output, bool)
        or max_output < 0
    ):
        raise MethodError.thrown(
            f"system.exec 'max_output' must be a whole number of characters, "
            f"not {max_output!r}"
        )
    env = opts.get("env") or {}
    if not isinstance(env, dict):
        raise MethodError.thrown("system.exec 'env' must be an object of strings")
    if opts.get("compute_server_id"):
        raise MethodError.thrown(
            "compute servers are not available on the local cocalc-magics server; "
            "leave out compute_server_id or send 0"
        )
    # NOTE: ``aggregate`` (merging identical concurrent calls), ``uid``, ``gid`` and
    # ``verbose`` are accepted and ignored; every call runs its own process.

    spec = ExecSpec(
        command=command,
        args=args,
        bash=bool(opts.get("bash", False)),
        cwd=resolve_cwd(opts, home),
        env={str(k): env_value(v) for k, v in env.items() if v is not None},
        timeout_s=float(timeout),
        max_output=max_output,
        err_on_exit=opts.get("err_on_exit", True) is not False,
        ulimit_timeout=opts.get("ulimit_timeout", True) is not False,
        async_call=bool(opts.get("async_call", False)),
    )
    choose_mode(spec)
    return spec


def env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def resolve_cwd(opts: dict[str, Any], home: Path) -> str:
    """Apply CoCalc's rules: ``path`` relative to home, a non-empty ``cwd`` wins."""
    base = opts.get("home") or str(home)
    path = opts.get("path")
    directory = str(base) if not path else os.path.join(str(base), str(path))
    cwd = opts.get("cwd")
    if cwd:
        directory = str(cwd)
    return directory


def choose_mode(spec: ExecSpec) -> None:
    """Pick direct or bash mode, in CoCalc's order of rules."""
    if not spec.args and any(char.isspace() for char in spec.command):
        spec.bash = True
    elif spec.bash and spec.args:
        spec.command = " ".join(
            shlex.quote(part) for part in [spec.command, *spec.args]
        )
        spec.args = []
    if not spec.bash:
        spec.argv = [spec.command, *spec.args]


def write_script(spec: ExecSpec) -> None:
    """Write the bash script to a fresh ``/tmp/cocalc-XXXXXX/a.sh``."""
    while True:
        suffix = "".join(secrets.choice(SCRIPT_ALPHABET) for _ in range(6))
        directory = Path("/tmp") / f"cocalc-{suffix}"
        try:
            directory.mkdir(mode=0o700)
            break
        except FileExistsError:
            continue
    script = spec.command
    if spec.timeout_s and spec.ulimit_timeout:
        script = f"ulimit -t {math.ceil(spec.timeout_s)}\n{script}"
    path = directory / "a.sh"
    path.write_text(script, encoding="utf-8")
    spec.script_dir = directory
    spec.argv = ["bash", str(path)]


def remove_script(spec: ExecSpec) -> None:
    if spec.script_dir is not None:
        shutil.rmtree(spec.script_dir, ignore_errors=True)


def spawn_error_details(error: OSError, argv: list[str]) -> dict[str, Any]:
    """Describe a failed start the way Node describes a spawn error."""
    number = error.errno or errno_module.EIO
    return {
        "errno": -number,
        "code": errno_module.errorcode.get(number, "EIO"),
        "syscall": f"spawn {argv[0]}",
        "path": argv[0],
        "spawnargs": argv[1:],
    }


async def start_process(
    spec: ExecSpec, env: dict[str, str], quotas: dict[str, Any]
) -> asyncio.subprocess.Process:
    """Start the process as leader of a new session, with the project's limits."""
    if spec.bash:
        write_script(spec)
    argv = spec.argv
    if quotas:
        argv = limited_argv(spec, env, quotas)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=spec.cwd,
            env=env,
            start_new_session=True,
        )
    except OSError as error:
        remove_script(spec)
        raise SpawnError(spawn_error_details(error, spec.argv)) from error
    return process


def limited_argv(
    spec: ExecSpec, env: dict[str, str], quotas: dict[str, Any]
) -> list[str]:
    """Wrap the command in the launcher that applies the admin quotas.

    The launcher starts fine even when the command does not exist, so that case is
    checked here first, to keep the spawn error of an unlimited start.
    """
    if "/" in spec.argv[0]:
        candidate = os.path.join(spec.cwd, spec.argv[0])
        program = candidate if os.access(candidate, os.X_OK) else None
    else:
        program = shutil.which(spec.argv[0], path=env.get("PATH"))
    if program is None or not os.path.isdir(spec.cwd):
        remove_script(spec)
        missing = FileNotFoundError(errno_module.ENOENT, "No such file or directory")
        raise SpawnError(spawn_error_details(missing, spec.argv))

    options = []
    if quotas.get("memory"):
        options += ["--memory-bytes", str(int(quotas["memory"] * 1024 * 1024))]
    if quotas.get("cores"):
        available = sorted(os.sched_getaffinity(0))
        count = max(1, min(len(available), math.ceil(quotas["cores"])))
        options += ["--cpus", ",".join(str(cpu) for cpu in available[:count])]
    return [sys.executable, "-I", "-S", str(LAUNCHER), *options, "--", *spec.argv]


class OutputBuffer:
    """Decoded text of one stream, capped at ``limit`` UTF-16 code units.

    CoCalc counts characters as JavaScript does, so a character outside the Basic
    Multilingual Plane counts twice. Bytes past the cap are read and dropped, so
    that the process never blocks on a full pipe.
    """

    def __init__(self, limit: int | None):
        self.limit = limit
        self.parts: list[str] = []
        self.length = 0
        # Set when output was dropped, also when a cut fell inside a surrogate pair
        # and left the text one unit short of the cap.
        self.cut = False
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def reached_limit(self) -> bool:
        return self.cut or (self.limit is not None and self.length >= self.limit)

    def feed(self, data: bytes, final: bool = False) -> None:
        self.append(self.decoder.decode(data, final))

    def append(self, chunk: str) -> None:
        if not chunk or self.reached_limit:
            return
        size = utf16_length(chunk)
        if self.limit is not None and self.length + size > self.limit:
            chunk = cut_utf16(chunk, self.limit - self.length)
            size = utf16_length(chunk)
            self.cut = True
        self.parts.append(chunk)
        self.length += size

    def final_text(self) -> str:
        """Return the text, with CoCalc's suffix if the cap was reached (success path)."""
        if self.reached_limit:
            return f"{self.text} (truncated at {self.limit} characters)"
        return self.text


def utf16_length(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def cut_utf16(text: str, units: int) -> str:
    """Keep at most ``units`` UTF-16 code units, never splitting a character."""
    if text.isascii():
        return text[:units]
    kept = 0
    for index, char in enumerate(text):
        kept += 2 if ord(char) > 0xFFFF else 1
        if kept > units:
            return text[:index]
    return text


async def pump(stream: asyncio.StreamReader, buffer: OutputBuffer) -> None:
    while True:
        data = await stream.read(READ_CHUNK)
        if not data:
            buffer.feed(b"", final=True)
            return
        buffer.feed(data)


async def wait_for_process(
    process: asyncio.subprocess.Process,
    spec: ExecSpec,
    stdout: OutputBuffer,
    stderr: OutputBuffer,
) -> Outcome:
    """Collect output until the process ends or its timeout kills its group."""
    readers = asyncio.gather(pump(process.stdout, stdout), pump(process.stderr, stderr))
    killed = False
    try:
        await asyncio.wait_for(process.wait(), spec.timeout_s or None)
    except asyncio.TimeoutError:
        killed = True
        kill_group(process.pid)
        await process.wait()
    except asyncio.CancelledError:
        kill_group(process.pid)
        raise

    # A background child may still hold the pipes; close out after a grace period.
    try:
        await asyncio.wait_for(asyncio.shield(readers), PIPE_GRACE_S)
    except asyncio.TimeoutError:
        readers.cancel()
    remove_script(spec)

    # A death by signal has no exit code; CoCalc then reports 0.
    code = process.returncode or 0
    return Outcome(exit_code=max(code, 0), killed_by_timeout=killed)


def nonzero_exit_error(spec: ExecSpec, exit_code: int, stderr: str) -> MethodError:
    return MethodError(
        f"command '{spec.described_command}' exited with nonzero code {exit_code} "
        f"-- stderr='{truncate_quote(stderr)}'"
    )


def not_able_to_run_error(spec: ExecSpec, error: SpawnError) -> MethodError:
    return MethodError(
        f"command '{spec.described_command}' was not able to run "
        f"-- stderr='{truncate_quote(error.json_text)}'"
    )


def killed_error(spec: ExecSpec) -> MethodError:
    return MethodError(f"killed command '{spec.killed_text}'")


def truncate_quote(text: str) -> str:
    """Cut text to 1024 characters, ending with an ellipsis when cut, as CoCalc does."""
    if len(text) <= STDERR_QUOTE_LIMIT:
        return text
    return text[: STDERR_QUOTE_LIMIT - 1] + "…"


async def run_blocking(
    spec: ExecSpec,
    env: dict[str, str],
    quotas: dict[str, Any],
    leaders: set[int],
) -> dict[str, Any]:
    """Run a blocking exec and return its result, or raise its error string.

    The process's pid is in ``leaders`` while it runs.
    """
    try:
        process = await start_process(spec, env, quotas)
    except SpawnError as error:
        if spec.err_on_exit:
            raise nonzero_exit_error(spec, 1, error.json_text) from None
        raise not_able_to_run_error(spec, error) from None
    stdout = OutputBuffer(spec.max_output)
    stderr = OutputBuffer(spec.max_output)
    leaders.add(process.pid)
    try:
        outcome = await wait_for_process(process, spec, stdout, stderr)
    finally:
        leaders.discard(process.pid)
    if outcome.killed_by_timeout:
        raise killed_error(spec)
    if spec.err_on_exit and outcome.exit_code != 0:
        raise nonzero_exit_error(spec, outcome.exit_code, stderr.text)
    return {
        "type": "blocking",
        "stdout": stdout.final_text(),
        "stderr": stderr.final_text(),
        "exit_code": outcome.exit_code,
    }
