"""File methods of a project and their confinement to the project's home."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.support.local_server import is_error


@pytest.fixture
def area(local_server):
    """A fresh folder name inside the default project's home."""
    return f"files-{uuid.uuid4().hex[:8]}"


def home_of(server):
    return server.data_dir / "projects" / server.project_id


def write(server, path, content):
    return server.project(
        "system.writeTextFileToProject", {"path": path, "content": content}
    )


def test_write_creates_parents_and_read_back(local_server, area):
    assert write(local_server, f"{area}/a/b/c.txt", "Grüße 🚀\n") is None
    text = local_server.project(
        "system.readTextFileFromProject", {"path": f"{area}/a/b/c.txt"}
    )
    assert text == "Grüße 🚀\n"
    assert (home_of(local_server) / area / "a/b/c.txt").read_text() == "Grüße 🚀\n"


def test_listing_shape(local_server, area):
    write(local_server, f"{area}/file.txt", "12345")
    write(local_server, f"{area}/.hidden", "")
    write(local_server, f"{area}/dir/inner.txt", "")
    os.symlink("file.txt", home_of(local_server) / area / "link")
    entries = local_server.project("system.listing", {"path": area})
    by_name = {entry["name"]: entry for entry in entries}
    assert set(by_name) == {"file.txt", "dir", "link"}
    assert by_name["file.txt"]["size"] == 5
    assert "isdir" not in by_name["file.txt"]
    assert by_name["dir"]["isdir"] is True
    assert by_name["dir"]["size"] == 1
    assert by_name["link"]["issymlink"] is True
    assert by_name["link"]["link_target"] == "file.txt"
    assert isinstance(by_name["file.txt"]["mtime"], float)
    hidden = local_server.project("system.listing", {"path": area, "hidden": True})
    assert ".hidden" in {entry["name"] for entry in hidden}


def test_listing_of_home_and_missing_dir(local_server):
    assert isinstance(local_server.project("system.listing", {}), list)
    reply = local_server.project("system.listing", {"path": "no-such-dir"})
    assert reply == {
        "error": "Error: ENOENT: no such file or directory, scandir 'no-such-dir'"
    }


def test_read_missing_file(local_server):
    reply = local_server.project("system.readTextFileFromProject", {"path": "nope.txt"})
    assert reply == {
        "error": "Error: ENOENT: no such file or directory, open 'nope.txt'"
    }


def test_delete_move_rename(local_server, area):
    write(local_server, f"{area}/one.txt", "1")
    write(local_server, f"{area}/two.txt", "2")
    write(local_server, f"{area}/tree/x.txt", "x")
    write(local_server, f"{area}/target/.keep", "")
    home = home_of(local_server) / area

    local_server.project(
        "system.moveFiles", {"paths": [f"{area}/one.txt"], "dest": f"{area}/target"}
    )
    assert (home / "target/one.txt").read_text() == "1"
    local_server.project(
        "system.renameFile", {"src": f"{area}/two.txt", "dest": f"{area}/new/2.txt"}
    )
    assert (home / "new/2.txt").read_text() == "2"
    assert not (home / "two.txt").exists()
    local_server.project(
        "system.deleteFiles", {"paths": [f"{area}/tree", f"{area}/new/2.txt"]}
    )
    assert not (home / "tree").exists()
    assert not (home / "new/2.txt").exists()


def test_realpath_is_relative_to_home(local_server, area):
    write(local_server, f"{area}/real/f.txt", "")
    os.symlink("real", home_of(local_server) / area / "alias")
    assert (
        local_server.project("system.realpath", f"{area}/alias/f.txt")
        == f"{area}/real/f.txt"
    )
    assert local_server.project("system.canonicalPaths", [f"{area}/alias"]) == [
        f"{area}/real"
    ]


ESCAPES = ["../outside.txt", "a/../../outside.txt", "/etc/passwd", "/tmp/x.txt"]


@pytest.mark.parametrize("path", ESCAPES)
def test_paths_outside_home_are_rejected(local_server, path):
    calls = [
        ("system.readTextFileFromProject", {"path": path}),
        ("system.writeTextFileToProject", {"path": path, "content": "x"}),
        ("system.listing", {"path": path}),
        ("system.deleteFiles", {"paths": [path]}),
        ("system.renameFile", {"src": "whatever", "dest": path}),
        ("system.moveFiles", {"paths": [path], "dest": ""}),
    ]
    for name, options in calls:
        reply = local_server.project(name, options)
        assert is_error(reply), (name, reply)
        assert path in reply["error"], (name, reply)
    assert is_error(local_server.project("system.realpath", path))


def test_symlink_escapes_are_rejected(local_server, area, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    home = home_of(local_server) / area
    home.mkdir()
    os.symlink(outside, home / "out")
    os.symlink(outside / "secret.txt", home / "secret-link")

    for name, options in [
        ("system.readTextFileFromProject", {"path": f"{area}/out/secret.txt"}),
        ("system.readTextFileFromProject", {"path": f"{area}/secret-link"}),
        (
            "system.writeTextFileToProject",
            {"path": f"{area}/out/new.txt", "content": "x"},
        ),
        (
            "system.writeTextFileToProject",
            {"path": f"{area}/out/deep/new.txt", "content": "x"},
        ),
        (
            "system.writeTextFileToProject",
            {"path": f"{area}/secret-link", "content": "x"},
        ),
        ("system.listing", {"path": f"{area}/out"}),
        ("system.deleteFiles", {"paths": [f"{area}/out/secret.txt"]}),
        ("system.moveFiles", {"paths": [f"{area}/out/secret.txt"], "dest": area}),
        (
            "system.renameFile",
            {"src": f"{area}/out/secret.txt", "dest": f"{area}/s.txt"},
        ),
    ]:
        reply = local_server.project(name, options)
        assert is_error(reply), (name, reply)
        assert "symbolic link" in reply["error"], (name, reply)
    assert (outside / "secret.txt").read_text() == "secret"
    assert sorted(os.listdir(outside)) == ["secret.txt"]

    # Deleting the link itself is allowed and leaves the target alone.
    assert (
        local_server.project("system.deleteFiles", {"paths": [f"{area}/out"]}) is None
    )
    assert (outside / "secret.txt").exists()


def test_bad_arguments(local_server):
    reply = local_server.project("system.writeTextFileToProject", {"path": "a.txt"})
    assert reply == {"error": "Error: content must be a string"}
    reply = local_server.project("system.deleteFiles", {"paths": "a.txt"})
    assert "'paths' must be a list" in reply["error"]
    reply = local_server.project("system.readTextFileFromProject")
    assert "options object" in reply["error"]


def test_non_ascii_paths(local_server):
    path = "Données/été 🚀.txt"
    assert write(local_server, path, "ok") is None
    names = [
        e["name"] for e in local_server.project("system.listing", {"path": "Données"})
    ]
    assert names == ["été 🚀.txt"]
    reply = local_server.project(
        "system.exec", {"command": "cat", "args": ["été 🚀.txt"], "path": "Données"}
    )
    assert reply["stdout"] == "ok"
