"""The ``--projects`` option: ids, iterables, files, title searches and bad input."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from cocalc_magics.fanout import (
    ProjectsOptionError,
    ProjectTarget,
    parse_projects_option,
    resolve_projects,
)

A = "5f0d2a8e-1c2b-4d3e-9f00-123456789abc"
B = "6a1e3b9f-2d3c-4e4f-8a11-23456789abcd"
C = "7b2f4ca0-3e4d-4f50-9b22-3456789abcde"


def ids(targets: list[ProjectTarget]) -> list[str]:
    return [target.project_id for target in targets]


@pytest.mark.parametrize(
    "text",
    [
        f"{A},{B},{C}",
        f"{A} {B}\t{C}",
        f" {A}, {B} ;{C} ",
        f"['{A}', '{B}', '{C}']",
        f"('{A}', '{B}', '{C}')",
    ],
)
def test_id_lists_in_any_separator(text):
    assert ids(resolve_projects(text)) == [A, B, C]


def test_ids_are_normalised_to_lowercase():
    assert ids(resolve_projects(A.upper())) == [A]


def test_repeated_ids_dropped_keeping_order():
    assert ids(resolve_projects(f"{B} {A} {B} {C} {A}")) == [B, A, C]


@dataclass
class Info:
    project_id: str
    title: str


@pytest.mark.parametrize(
    "value",
    [
        [A, B],
        (A, B),
        iter([A, B]),
        [uuid.UUID(A), uuid.UUID(B)],
        [Info(A, "Alice"), Info(B, "Bob")],
        [{"project_id": A, "title": "Alice"}, {"project_id": B}],
        [ProjectTarget(A, "Alice"), B],
    ],
)
def test_iterables_of_ids_or_objects(value):
    assert ids(resolve_projects(value)) == [A, B]


def test_titles_come_from_objects():
    targets = resolve_projects([Info(A, "Alice"), {"project_id": B, "title": "Bob"}])
    assert [target.title for target in targets] == ["Alice", "Bob"]


def test_file_with_comments_and_extra_columns(tmp_path):
    path = tmp_path / "students.txt"
    path.write_text(
        "# Lab 3, group 2\n"
        f"{A}  Alice\n"
        "\n"
        f"{B},bob@example.org   # late submission\n"
        f"   {C}\n"
    )
    assert ids(resolve_projects(f"@{path}")) == [A, B, C]
    assert ids(resolve_projects(str(path))) == [A, B, C]


def test_bare_file_name_in_working_directory(tmp_path, monkeypatch):
    (tmp_path / "students.txt").write_text(f"{A}\n")
    monkeypatch.chdir(tmp_path)
    assert ids(resolve_projects("students.txt")) == [A]


def test_file_error_names_line(tmp_path):
    path = tmp_path / "students.txt"
    path.write_text(f"{A}\nalice\n")
    with pytest.raises(
        ProjectsOptionError, match=r"'alice' in line 2 of .*students.txt"
    ):
        resolve_projects(f"@{path}")


def test_missing_file_says_so(tmp_path):
    with pytest.raises(ProjectsOptionError, match="does not exist"):
        resolve_projects(f"@{tmp_path / 'nope.txt'}")


def test_empty_file_rejected(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("# nobody yet\n\n")
    with pytest.raises(ProjectsOptionError, match="names no project"):
        resolve_projects(f"@{path}")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "--projects is empty"),
        ("   ", "--projects is empty"),
        ("title:", "needs the text to look for"),
        ("lab3", "'lab3' in --projects is not a project id"),
        (f"{A} 1234", "'1234' in --projects is not a project id"),
        ([], "names no project"),
        ([A, 42], r"item 1 of --projects \(int\) has no project_id"),
        ([{"title": "x"}], r"item 0 of --projects \(dict\) has no project_id"),
        (42, "--projects got a value of type int"),
        ({"project_id": A}, "--projects got a value of type dict"),
    ],
)
def test_bad_values_raise_clear_errors(value, message):
    with pytest.raises(ProjectsOptionError, match=message):
        resolve_projects(value)


def test_not_an_id_suggests_title_and_file_forms():
    with pytest.raises(ProjectsOptionError) as caught:
        resolve_projects("Lab")
    assert "title:TEXT" in str(caught.value)
    assert "@PATH" in str(caught.value)


def test_parse_without_server():
    assert parse_projects_option("title: Lab 3 ") == ("title", "Lab 3")
    assert parse_projects_option("TITLE:x") == ("title", "x")
    assert parse_projects_option("@~/ids.txt") == ("file", Path.home() / "ids.txt")
    assert parse_projects_option(A) == ("ids", [A])


def test_title_search_needs_connection():
    with pytest.raises(ProjectsOptionError, match="needs a connection"):
        resolve_projects("title:Lab 3")


def test_title_search_over_account(connection):
    lab = [
        connection.create_project(f"Targets Lab 7 - {name}") for name in ("ann", "ben")
    ]
    connection.create_project("Targets Lab 8 - cy")

    targets = resolve_projects("title:targets lab 7", connection)

    assert sorted(ids(targets)) == sorted(lab)
    assert sorted(target.title for target in targets) == [
        "Targets Lab 7 - ann",
        "Targets Lab 7 - ben",
    ]


def test_title_search_without_match(connection):
    with pytest.raises(
        ProjectsOptionError, match="no project of this account has a title"
    ):
        resolve_projects("title:no such course 9z", connection)


def test_ids_get_titles_from_account(connection):
    project_id = connection.create_project("Targets titled")
    stranger = str(uuid.uuid4())

    targets = resolve_projects([project_id, stranger], connection)

    assert [target.title for target in targets] == ["Targets titled", None]
