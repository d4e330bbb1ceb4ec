"""Resolution of the ``--projects`` option into the projects a fan-out runs in.

The option accepts four forms:

- a list of project ids, separated by commas or whitespace;
- an iterable of ids or of project objects (anything with a ``project_id``
  attribute, such as :class:`~cocalc_magics.api.ProjectInfo`, or a mapping with a
  ``"project_id"`` key), which is what ``{my_ids}`` on a magic line evaluates to;
- a file of ids, written ``@path`` or as the path of an existing file, with one id
  per line, blank lines ignored and ``#`` starting a comment;
- ``title:TEXT``, a search over the account's projects whose title contains TEXT
  (case-insensitive), through ``Connection.projects(title=...)``.

Resolution keeps the given order and drops repeated ids. A bad entry raises
:class:`ProjectsOptionError`, a ``ValueError`` whose message names the entry and
what to write instead, before any project is touched.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cocalc_magics.api import Connection

__all__ = [
    "ProjectTarget",
    "ProjectsOptionError",
    "parse_projects_option",
    "read_project_file",
    "resolve_projects",
]

logger = logging.getLogger(__name__)

TITLE_PREFIX = "title:"
_SEPARATORS = re.compile(r"[\s,;]+")


class ProjectsOptionError(ValueError):
    """The ``--projects`` value names no usable project; the message explains why."""


@dataclass(frozen=True)
class ProjectTarget:
    """One project of a fan-out: its id and, when known, its title."""

    project_id: str
    title: str | None = None


def parse_projects_option(text: str) -> tuple[str, Any]:
    """Classify the text of a ``--projects`` option without contacting a server.

    Returns
    -------
    tuple
        ``("title", search_text)``, ``("file", Path)`` or ``("ids", list_of_ids)``.

    Raises
    ------
    ProjectsOptionError
        If the text is empty, a file cannot be read, or an entry is not a UUID.
    """
    if not isinstance(text, str):
        raise TypeError(
            f"the --projects text must be a string, not {type(text).__name__}"
        )
    stripped = text.strip()
    if not stripped:
        raise ProjectsOptionError(
            "--projects is empty; give project ids, @FILE, or title:TEXT, "
            "for example --projects 'title:Lab 3'"
        )

    if stripped.lower().startswith(TITLE_PREFIX):
        search = stripped[len(TITLE_PREFIX) :].strip()
        if not search:
            raise ProjectsOptionError(
                "--projects title: needs the text to look for in project titles, "
                "for example --projects 'title:Lab 3'"
            )
        return "title", search

    if stripped.startswith("@"):
        return "file", Path(os.path.expanduser(stripped[1:].strip()))
    if _looks_like_path(stripped):
        return "file", Path(os.path.expanduser(stripped))

    return "ids", _parse_id_text(stripped)


def resolve_projects(
    projects: Any, connection: Connection | None = None
) -> list[ProjectTarget]:
    """Turn a ``--projects`` value into the list of projects to run in.

    Parameters
    ----------
    projects : str or iterable
        The option text (see the module docstring), or an iterable of project ids,
        project objects with a ``project_id`` attribute, or mappings with a
        ``"project_id"`` key.
    connection : Connection, optional
        Needed for ``title:`` searches. When given, the titles of projects named
        by id are looked up with one ``db.userQuery`` call. If that call fails,
        for example with a project-scoped key, the titles stay unknown.

    Raises
    ------
    ProjectsOptionError
        If the value names no project, or an entry is not a project id.
    """
    if isinstance(projects, str):
        kind, value = parse_projects_option(projects)
        if kind == "title":
            return _search_titles(value, connection)
        ids = read_project_file(value) if kind == "file" else value
        targets = [ProjectTarget(project_id) for project_id in ids]
    elif isinstance(projects, ProjectTarget):
        targets = [projects]
    elif isinstance(projects, Iterable) and not isinstance(projects, (bytes, Mapping)):
        targets = [_target_of(item, index) for index, item in enumerate(projects)]
    else:
        raise ProjectsOptionError(
            f"--projects got a value of type {type(projects).__name__}; give project "
            "ids, a list of ids or project objects, @FILE, or title:TEXT"
        )

    targets = _unique(targets)
    if not targets:
        raise ProjectsOptionError(
            "--projects names no project: the list or file is empty"
        )
    if connection is not None and any(target.title is None for target in targets):
        targets = _fill_titles(targets, connection)
    return targets


def read_project_file(path: Path) -> list[str]:
    """Read project ids from *path*: one per line, ``#`` comments, blank lines skipped.

    Only the first word of a line is the id, so a line such as
    ``<id>  Alice, group 2`` or ``<id>,alice@example.org`` is accepted.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectsOptionError(
            f"--projects file {str(path)!r} does not exist; write @PATH with a file "
            "of project ids, one per line"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ProjectsOptionError(
            f"--projects file {str(path)!r} cannot be read: {error}"
        ) from None

    ids = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        word = _SEPARATORS.split(content, maxsplit=1)[0]
        ids.append(_check_id(word, f"line {number} of {path}"))
    return ids


def _looks_like_path(text: str) -> bool:
    if os.sep in text or text.startswith("~"):
        return True
    # A bare file name in the working directory, such as "students.txt".
    return os.path.isfile(text)


def _parse_id_text(text: str) -> list[str]:
    # str() of a Python list or tuple of ids, as "{ids}" expansion produces it.
    if text[0] in "[(" and text[-1] in "])":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return [
                _check_id(v, f"item {i} of --projects") for i, v in enumerate(value)
            ]

    words = [word for word in _SEPARATORS.split(text) if word]
    return [_check_id(word, "--projects") for word in words]


def _check_id(value: str, where: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise ProjectsOptionError(
            f"{value!r} in {where} is not a project id (a UUID such as "
            "5f0d2a8e-1c2b-4d3e-9f00-123456789abc); to search titles write "
            "title:TEXT, and to read ids from a file write @PATH"
        ) from None


def _target_of(item: Any, index: int) -> ProjectTarget:
    where = f"item {index} of --projects"
    if isinstance(item, ProjectTarget):
        return item
    if isinstance(item, str):
        return ProjectTarget(_check_id(item, where))
    if isinstance(item, uuid.UUID):
        return ProjectTarget(str(item))
    if isinstance(item, Mapping):
        project_id = item.get("project_id")
        title = item.get("title")
    else:
        project_id = getattr(item, "project_id", None)
        title = getattr(item, "title", None)
    if not isinstance(project_id, str):
        raise ProjectsOptionError(
            f"{where} ({type(item).__name__}) has no project_id; give ids "
            "or objects such as the ProjectInfo rows of Connection.projects()"
        )
    return ProjectTarget(
        _check_id(project_id, where), title if isinstance(title, str) else None
    )


def _unique(targets: list[ProjectTarget]) -> list[ProjectTarget]:
    seen: dict[str, ProjectTarget] = {}
    for target in targets:
        known = seen.get(target.project_id)
        if known is None or (known.title is None and target.title is not None):
            seen[target.project_id] = target
    if len(seen) < len(targets):
        logger.info("--projects: dropped %d repeated ids", len(targets) - len(seen))
    return list(seen.values())


def _search_titles(search: str, connection: Connection | None) -> list[ProjectTarget]:
    if connection is None:
        raise ProjectsOptionError(
            f"--projects 'title:{search}' needs a connection to search the account's "
            "projects"
        )
    found = connection.projects(title=search)
    if not found:
        raise ProjectsOptionError(
            f"no project of this account has a title containing {search!r}; list "
            "them with %cocalc projects, or give project ids"
        )
    return _unique([ProjectTarget(info.project_id, info.title) for info in found])


def _fill_titles(
    targets: list[ProjectTarget], connection: Connection
) -> list[ProjectTarget]:
    from cocalc_magics.api import CoCalcError

    try:
        titles = {info.project_id: info.title for info in connection.projects()}
    except CoCalcError as error:
        logger.info("cannot look up project titles: %s", error)
        return targets
    return [
        target
        if target.title is not None
        else ProjectTarget(target.project_id, titles.get(target.project_id))
        for target in targets
    ]
