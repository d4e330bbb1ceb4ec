"""The checks of ``%cocalc doctor``: settings, site, key scope and project.

Every check returns lines for the report and never raises a client error: a
failure becomes a ``[fail]`` line with the client's hint. The key appears only
in its masked form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cocalc_magics.magics.core import CoCalcMagics

OK, WARN, FAIL = "[ok]  ", "[warn]", "[fail]"


def run_checks(magics: CoCalcMagics, project_id: str | None) -> list[str]:
    """Run every check in order and return the report lines."""
    from cocalc_magics.api import CoCalcError

    lines = [f"cocalc_magics doctor for {magics.session.where()}"]
    try:
        connection = magics.session.connection
    except CoCalcError as error:
        return lines + [_failure("settings", error)]

    for line in connection.settings.describe():
        # describe() writes "<field>: not set; <how to set it>" for a missing value.
        mark = WARN if ": not set" in line else OK
        lines.append(f"{mark} {line}")
    missing = connection.settings.missing()
    if "api_key" in missing:
        return lines + [
            (
                f"{FAIL} no API key: set COCALC_API_KEY, or run %cocalc connect "
                "--prompt-key, or %cocalc local for the local server."
            )
        ]

    project_id = project_id or connection.project_id
    scope = _check_key(connection, lines)
    if scope is None:
        return lines
    if not project_id:
        return lines + [
            (
                f"{WARN} no project set: pass --project, set COCALC_PROJECT_ID, or run "
                "%cocalc connect --project PROJECT_ID."
            )
        ]
    if scope == "account":
        _check_project(connection, project_id, lines)
    if not any(line.startswith((WARN, FAIL)) for line in lines):
        lines.append("Nothing is missing.")
    return lines


def _check_key(connection, lines: list[str]) -> str | None:
    """Find whether the key is an account key or a project key; None on failure."""
    from cocalc_magics.api import AuthenticationError, CoCalcError

    try:
        scope = connection.hub_test()
        lines.append(f"{OK} site answers; account key (account {scope.account_id}).")
        return "account"
    except AuthenticationError as error:
        hub_error = error
    except CoCalcError as error:
        lines.append(_failure("site", error))
        return None

    # The hub rejects project keys with the same message as invalid keys, so a
    # call to the project endpoint distinguishes the two.
    try:
        scope = connection.test()
    except CoCalcError:
        lines.append(_failure("API key", hub_error))
        return None
    lines.append(
        f"{OK} site answers; project key for project {scope.project_id} "
        "(hub subcommands such as status, quotas and projects need an account key)."
    )
    return "project"


def _check_project(connection, project_id: str, lines: list[str]) -> None:
    from cocalc_magics.api import CoCalcError

    try:
        state = connection.project_state(project_id=project_id)
    except CoCalcError as error:
        lines.append(_failure(f"project {project_id}", error))
        return

    if state.state != "running":
        lines.append(
            f"{WARN} project {project_id} is {state.state or 'not running'}: "
            "%cocalc start starts it (a command also starts it)."
        )
        return

    try:
        ping = connection.ping(project_id=project_id)
    except CoCalcError as error:
        lines.append(_failure(f"project {project_id}", error))
        return
    lines.append(
        f"{OK} project {project_id} is running and answers in "
        f"{ping.round_trip_s * 1000:.0f} ms."
    )


def _failure(what: str, error) -> str:
    hint = f" Hint: {error.hint}" if getattr(error, "hint", None) else ""
    return f"{FAIL} {what}: {error.message}.{hint}"
