"""The HTTP side: the two bridge endpoints and CoCalc's envelope rules.

Built on tornado because tornado already comes with ipykernel (so it adds nothing
to install), runs on asyncio (so exec processes and Jupyter kernels share one event
loop with the HTTP server) and handles HTTP/1.1, keep-alive and body limits itself.

Every application outcome is HTTP 200: the method's value as JSON, or a one-key
``{"error": "..."}`` object. Only the layers around CoCalc's code give other
statuses, and this module reproduces those of the web framework CoCalc uses: 400
``Invalid JSON``, 413 ``Body exceeded 1mb limit`` and an HTML 404 for other paths.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable
from typing import Any

import tornado.web

from cocalc_magics.server import auth
from cocalc_magics.server.errors import MethodError, transport_error
from cocalc_magics.server.hub_methods import Hub, call_hub_method, valid_uuid
from cocalc_magics.server.project_methods import call_project_method
from cocalc_magics.server.projects import ProjectManager
from cocalc_magics.server.store import Store

logger = logging.getLogger(__name__)

BODY_LIMIT = 1024 * 1024
DEFAULT_TIMEOUT_MS = 15000
# The bridge waits at most this long for a starting project to listen.
INTEREST_CAP_S = 90.0
# How often the last-use time of a key is written, at most.
KEY_ACTIVITY_INTERVAL_S = 60.0


class ServerState:
    """Everything the request handlers share."""

    def __init__(self, store: Store, projects: ProjectManager):
        self.store = store
        self.projects = projects
        self.hub = Hub(store=store, projects=projects)
        self.key_activity: dict[int, float] = {}

    def authenticate(self, header: str | None, invalid_text: str) -> auth.Caller:
        key = auth.parse_authorization(header)
        caller = auth.lookup_key(self.store, key) if key else None
        if caller is None:
            raise MethodError(invalid_text)
        self.record_activity(caller.key_id)
        return caller

    def record_activity(self, key_id: int) -> None:
        now = time.monotonic()
        if now - self.key_activity.get(key_id, -KEY_ACTIVITY_INTERVAL_S) >= (
            KEY_ACTIVITY_INTERVAL_S
        ):
            self.key_activity[key_id] = now
            self.store.touch_api_key(key_id)


def bridge_timeout_s(body: dict[str, Any]) -> float:
    """Read the bridge ``timeout`` (milliseconds, default 15000) as seconds."""
    value = body.get("timeout")
    if value is None:
        return DEFAULT_TIMEOUT_MS / 1000
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise MethodError(
            f"timeout must be positive number of milliseconds, not {value!r}"
        )
    if value <= 0:
        raise MethodError(f"timeout must be positive (got {value})")
    return value / 1000


def method_name(body: dict[str, Any]) -> str:
    """Return ``name``, failing as CoCalc's ``name.split(".")`` fails on bad names."""
    name = body.get("name")
    if isinstance(name, str):
        return name
    if name is None:
        kind = "null" if "name" in body else "undefined"
        raise MethodError(
            f"TypeError: Cannot read properties of {kind} (reading 'split')"
        )
    raise MethodError("TypeError: name.split is not a function")


def method_args(body: dict[str, Any]) -> list:
    """Return ``args`` (default ``[]``), failing as spreading a non-list fails in JS."""
    if "args" not in body:
        return []
    args = body["args"]
    if isinstance(args, list):
        return args
    if args is None:
        raise MethodError(
            "TypeError: object null is not iterable (cannot read property "
            "Symbol(Symbol.iterator))"
        )
    if isinstance(args, dict):
        raise MethodError(
            "TypeError: Spread syntax requires ...iterable[Symbol.iterator] to be a "
            "function"
        )
    raise MethodError(
        f"TypeError: args must be a list, not {type(args).__name__} "
        f"{json.dumps(args)} (cannot read property Symbol(Symbol.iterator))"
    )


async def with_bridge_timeout(
    work: Awaitable[Any], seconds: float, subject: str, name: str
) -> Any:
    """Wait for a method's result, but never cancel it when the bridge gives up."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.wait_for(asyncio.shield(task), seconds)
    except asyncio.TimeoutError:
        task.add_done_callback(log_late_failure)
        raise transport_error("timeout", subject, name, "408") from None


def log_late_failure(task: asyncio.Future) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, MethodError):
        logger.error("method failed after its bridge timeout", exc_info=error)


class BridgeHandler(tornado.web.RequestHandler):
    """Common request parsing and replies of both endpoints."""

    def initialize(self, state: ServerState) -> None:
        self.state = state

    def check_xsrf_cookie(self) -> None:
        # Keys travel in a header and cookies are never accepted, so there is no
        # cookie-based request to forge.
        return

    def compute_etag(self) -> None:
        return None

    def parse_body(self) -> dict[str, Any] | None:
        """Parse the request as CoCalc's framework does; None after an error reply."""
        body = self.request.body
        if len(body) > BODY_LIMIT:
            self.reply_text(413, "Body exceeded 1mb limit")
            return None
        if self.request.method != "POST":
            return {}
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return {}
        if not body.strip():
            return {}
        try:
            parsed = json.loads(body, parse_constant=reject_constant)
        except (ValueError, UnicodeDecodeError):
            self.reply_text(400, "Invalid JSON")
            return None
        return parsed if isinstance(parsed, dict) else {}

    def reply_text(self, status: int, text: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text)

    def reply_json(self, value: Any) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(value, ensure_ascii=False).encode("utf-8"))

    async def answer(self) -> None:
        body = self.parse_body()
        if body is None:
            return
        try:
            result = await self.dispatch(body)
        except MethodError as error:
            logger.debug("%s: %s", self.request.path, error.text)
            self.reply_json({"error": error.text})
            return
        except Exception as error:
            logger.exception("unexpected failure in %s", self.request.path)
            self.reply_json({"error": f"Error: {type(error).__name__}: {error}"})
            return
        self.reply_json(result)

    async def dispatch(self, body: dict[str, Any]) -> Any:
        raise NotImplementedError

    # The handlers do not check the HTTP method. Every method gets a reply, and only
    # POST carries parameters.
    async def post(self) -> None:
        await self.answer()

    get = put = delete = patch = options = post


def reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not valid JSON")


class HubHandler(BridgeHandler):
    """``POST /api/conat/hub``: account keys only."""

    async def dispatch(self, body: dict[str, Any]) -> Any:
        caller = self.state.authenticate(
            self.request.headers.get("Authorization"), auth.HUB_INVALID_KEY
        )
        if caller.project_id is not None:
            raise MethodError(auth.HUB_INVALID_KEY)
        name = method_name(body)
        args = method_args(body)
        seconds = bridge_timeout_s(body)
        subject = f"hub.account.{caller.account_id}.api"
        work = call_hub_method(self.state.hub, caller.account_id, name, args)
        return await with_bridge_timeout(work, seconds, subject, name)


class ProjectHandler(BridgeHandler):
    """``POST /api/conat/project``: account keys with project_id, or project keys."""

    async def dispatch(self, body: dict[str, Any]) -> Any:
        caller = self.state.authenticate(
            self.request.headers.get("Authorization"), auth.PROJECT_INVALID_KEY
        )
        project_id = self.target_project(caller, body)
        seconds = bridge_timeout_s(body)

        # Touch the project and start it; the wait for a start we asked for is not
        # part of the bridge timeout.
        projects = self.state.projects
        projects.touch(project_id)
        runtime = projects.runtime(project_id)
        if runtime.state == "starting":
            # Waiting for a start that someone else requested is part of the
            # bridge timeout, so the method gets what is left.
            started = time.monotonic()
            await self.wait_for_listener(runtime, body, seconds)
            seconds = max(seconds - (time.monotonic() - started), 0.001)
        elif runtime.state != "running":
            await runtime.start()

        name = method_name(body)
        compute_server_id = body.get("compute_server_id", 0)
        subject = f"project.{project_id}.{json.dumps(compute_server_id)}.api.-"
        if compute_server_id != 0 or isinstance(compute_server_id, bool):
            # NOTE: CoCalc waits up to min(timeout, 90 s) for a listener before this
            # error. This server has no compute servers and replies at once.
            raise transport_error(
                f"request -- no subscribers matching '{subject}'", subject, name, "503"
            )
        args = method_args(body)
        if name == "system.test":
            first = args[0] if args and isinstance(args[0], dict) else {}
            args = [{**first, "project_id": project_id}, *args[1:]]
        work = call_project_method(runtime, name, args)
        return await with_bridge_timeout(work, seconds, subject, name)

    def target_project(self, caller: auth.Caller, body: dict[str, Any]) -> str:
        requested = body.get("project_id")
        if caller.project_id is not None:
            if "project_id" in body and requested is None:
                raise MethodError(
                    "must specify project_id or use project-specific api key"
                )
            if requested is not None and requested != caller.project_id:
                raise MethodError(
                    "project specific api key must match requested project"
                )
            return caller.project_id
        if requested is None:
            raise MethodError("must specify project_id or use project-specific api key")
        if not valid_uuid(requested):
            raise MethodError(
                "invalid account_id or project_id -- all must be valid uuid's"
            )
        if not self.state.store.is_collaborator(requested, caller.account_id):
            raise MethodError("user must be a collaborator on the project")
        return requested

    async def wait_for_listener(self, runtime: Any, body: dict, seconds: float) -> None:
        """Wait, within the bridge timeout, for a project that someone else started."""
        if await runtime.wait_until_listening(min(seconds, INTEREST_CAP_S)):
            return
        name = body.get("name") if isinstance(body.get("name"), str) else ""
        subject = f"project.{runtime.project_id}.0.api.-"
        raise transport_error(
            f"request -- no subscribers matching '{subject}'", subject, name, "503"
        )


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Log requests at debug level only, with path and status, never headers."""
    if logger.isEnabledFor(logging.DEBUG):
        request = handler.request
        logger.debug(
            "%s %s %s %.1f ms",
            handler.get_status(),
            request.method,
            request.path,
            1000 * request.request_time(),
        )


def make_app(state: ServerState) -> tornado.web.Application:
    return tornado.web.Application(
        [
            (r"/api/conat/hub", HubHandler, {"state": state}),
            (r"/api/conat/project", ProjectHandler, {"state": state}),
        ],
        log_function=log_request,
    )
