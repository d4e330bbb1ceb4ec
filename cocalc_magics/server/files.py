"""File methods of a project, confined to the project's home directory.

Relative paths are relative to the home directory, as in CoCalc. An absolute path is
accepted only when it points inside the home directory. A ``..`` component, or a
symbolic link that leads outside the home directory, is rejected with an error that
names the path, so that a caller cannot read or change files of the server's user
outside the project.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from cocalc_magics.server.errors import MethodError


class ProjectFiles:
    """The file methods of one project home."""

    def __init__(self, home: Path):
        self.home = home.resolve()

    # -- path checks --------------------------------------------------------------

    def lexical(self, path: Any) -> Path:
        """Join a path to the home directory without following any link."""
        if not isinstance(path, str):
            raise MethodError.thrown(f"path must be a string, not {path!r}")
        if "\x00" in path:
            raise MethodError.thrown("path must not contain a NUL character")
        parts = Path(path).parts
        if ".." in parts:
            raise MethodError.thrown(
                f"path '{path}' contains '..'; use a path inside the project's "
                "home directory"
            )
        full = Path(os.path.normpath(self.home / path))
        if full != self.home and self.home not in full.parents:
            raise MethodError.thrown(
                f"path '{path}' is outside the project's home directory {self.home}"
            )
        return full

    def check_real(self, path: str, full: Path) -> Path:
        """Reject a path whose symbolic links resolve outside the home directory."""
        real_home = self.home.resolve()
        real = full.resolve()
        if real != real_home and real_home not in real.parents:
            raise MethodError.thrown(
                f"path '{path}' leads outside the project's home directory "
                "through a symbolic link"
            )
        return real

    def resolve(self, path: Any) -> Path:
        """Return the real location of a path whose target is used (read, write, list)."""
        full = self.lexical(path)
        return self.check_real(path, full)

    def entry(self, path: Any) -> Path:
        """Return the location of a directory entry itself (delete, move, rename).

        Its parent must be inside the home directory. The entry may be a link that
        points anywhere, because these operations act on the link, not its target.
        """
        full = self.lexical(path)
        if full == self.home:
            raise MethodError.thrown(
                "the project's home directory itself cannot be changed"
            )
        self.check_real(path, full.parent)
        return full.parent.resolve() / full.name

    def make_parents(self, path: str, full: Path) -> None:
        """Create the missing parents of a path, after checking the existing ones.

        The nearest existing ancestor is checked first, so that a link to a
        directory outside the home cannot make ``mkdir`` create folders there.
        """
        ancestor = full.parent
        while not ancestor.exists() and ancestor != self.home:
            ancestor = ancestor.parent
        self.check_real(path, ancestor)
        full.parent.mkdir(parents=True, exist_ok=True)

    def relative(self, real: Path) -> str:
        relative = real.relative_to(self.home.resolve())
        return "" if str(relative) == "." else str(relative)

    # -- methods ------------------------------------------------------------------

    def listing(self, path: Any = "", hidden: bool = False) -> list[dict[str, Any]]:
        directory = self.resolve(path or "")
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            raise MethodError.thrown(
                f"ENOENT: no such file or directory, scandir '{path}'"
            ) from None
        except NotADirectoryError:
            raise MethodError.thrown(
                f"ENOTDIR: not a directory, scandir '{path}'"
            ) from None
        return [
            describe_entry(directory / name, hidden)
            for name in names
            if hidden or not name.startswith(".")
        ]

    def read_text(self, path: Any) -> str:
        real = self.resolve(path)
        try:
            return real.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            raise MethodError.thrown(
                f"ENOENT: no such file or directory, open '{path}'"
            ) from None
        except IsADirectoryError:
            raise MethodError.thrown(
                f"EISDIR: illegal operation on a directory, read '{path}'"
            ) from None

    def write_text(self, path: Any, content: Any) -> None:
        if not isinstance(content, str):
            raise MethodError.thrown("content must be a string")
        full = self.lexical(path)
        if full == self.home:
            raise MethodError.thrown("cannot write to the project's home directory")
        self.make_parents(path, full)
        real = self.check_real(path, full)
        try:
            real.write_text(content, encoding="utf-8")
        except IsADirectoryError:
            raise MethodError.thrown(
                f"EISDIR: illegal operation on a directory, open '{path}'"
            ) from None

    def delete(self, paths: Any) -> None:
        for path in string_list(paths, "paths"):
            target = self.entry(path)
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)

    def move(self, paths: Any, dest: Any) -> None:
        destination = self.resolve(dest)
        if not destination.is_dir():
            raise MethodError.thrown(f"destination '{dest}' is not a directory")
        for path in string_list(paths, "paths"):
            source = self.entry(path)
            self.rename_checked(path, source, destination / source.name)

    def rename(self, src: Any, dest: Any) -> None:
        source = self.entry(src)
        target = self.lexical(dest)
        self.make_parents(dest, target)
        target = self.entry(dest)
        self.rename_checked(src, source, target)

    def rename_checked(self, path: str, source: Path, target: Path) -> None:
        if not source.exists() and not source.is_symlink():
            raise MethodError.thrown(
                f"ENOENT: no such file or directory, rename '{path}'"
            )
        # os.replace never moves "into" a directory that a link points to, unlike
        # shutil.move, so the target stays the checked path.
        try:
            os.replace(source, target)
        except OSError as error:
            raise MethodError.thrown(
                f"could not rename '{path}': {error.strerror}"
            ) from None

    def realpath(self, path: Any) -> str:
        """Return the path with links resolved, relative to the home directory."""
        return self.relative(self.resolve(path))

    def canonical_paths(self, paths: Any) -> list[str]:
        return [self.realpath(path) for path in string_list(paths, "paths")]

    def new_file(self, path: Any) -> None:
        full = self.lexical(path)
        self.make_parents(path, full)
        self.check_real(path, full).touch(exist_ok=True)


def string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MethodError.thrown(f"'{name}' must be a list of path strings")
    return value


def describe_entry(path: Path, hidden: bool) -> dict[str, Any]:
    """Describe one listing entry: ``mtime`` in seconds, ``size`` in bytes or entries."""
    entry: dict[str, Any] = {"name": path.name}
    try:
        if path.is_symlink():
            entry["issymlink"] = True
            entry["link_target"] = os.readlink(path)
        info = path.stat()
    except OSError as error:
        entry["error"] = f"{type(error).__name__}: {error.strerror}"
        return entry
    entry["mtime"] = info.st_mtime
    if path.is_dir():
        entry["isdir"] = True
        try:
            names = os.listdir(path)
        except OSError:
            names = []
        entry["size"] = len([n for n in names if hidden or not n.startswith(".")])
    else:
        entry["size"] = info.st_size
    return entry
