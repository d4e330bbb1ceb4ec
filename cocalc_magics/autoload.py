"""``cocalc-magics autoload``: load the extension in every IPython kernel.

IPython kernels read ``ipython_kernel_config.json`` from the environment's
``{sys.prefix}/etc/ipython`` folder and from the user's IPython profile. Enabling
merges ``"cocalc_magics"`` into ``InteractiveShellApp.extensions`` of one of those
files and keeps everything else in it, so that another package's or the user's own
settings survive. ``jupyter-config/ipython/ipython_kernel_config.json`` in the source
tree shows the result for a file that was empty.

Installing the package never changes these files: loading an extension into every
kernel is the user's choice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXTENSION = "cocalc_magics"
CONFIG_NAME = "ipython_kernel_config.json"


def add_autoload_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``cocalc-magics autoload`` and set its ``run`` function."""
    parser.add_argument(
        "action",
        choices=["enable", "disable", "status"],
        help="add the extension to the kernel config, remove it, or show the state",
    )
    parser.add_argument(
        "--user",
        action="store_true",
        help="change the user's default IPython profile instead of this environment",
    )
    parser.set_defaults(run=run_autoload)


def config_path(user: bool) -> Path:
    """Return the kernel config file for this environment, or for the user."""
    if user:
        from IPython.paths import get_ipython_dir

        return Path(get_ipython_dir()) / "profile_default" / CONFIG_NAME
    return Path(sys.prefix) / "etc" / "ipython" / CONFIG_NAME


def read_config(path: Path) -> dict:
    """Read a kernel config file; a missing file is an empty config."""
    if not path.exists():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8") or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); fix or remove it, then try again"
        ) from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} must contain a JSON object; fix or remove it")
    return config


def extension_list(config: dict) -> list:
    """Return the extensions list inside ``config``, creating it when absent."""
    section = config.setdefault("InteractiveShellApp", {})
    extensions = section.setdefault("extensions", [])
    if not isinstance(extensions, list):
        raise ValueError("InteractiveShellApp.extensions must be a JSON list")
    return extensions


def set_enabled(path: Path, enabled: bool) -> bool:
    """Add or remove the extension in the file at ``path``; return True if it changed."""
    config = read_config(path)
    extensions = extension_list(config)
    if enabled == (EXTENSION in extensions):
        return False

    if enabled:
        extensions.append(EXTENSION)
    else:
        extensions.remove(EXTENSION)
        _drop_empty(config)
    if not config:
        # Nothing else was configured here: the file would only get in the way.
        path.unlink()
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return True


def _drop_empty(config: dict) -> None:
    # An empty extensions list in a profile's file would hide the list of the
    # environment's file, so that enabling autoload there would have no effect.
    section = config["InteractiveShellApp"]
    if not section["extensions"]:
        del section["extensions"]
    if not section:
        del config["InteractiveShellApp"]


def run_autoload(options: argparse.Namespace) -> int:
    """Carry out the action, print what happened and return the exit code."""
    path = config_path(options.user)
    try:
        if options.action == "status":
            enabled = EXTENSION in extension_list(read_config(path))
            state = "enabled" if enabled else "not enabled"
            print(f"autoload of {EXTENSION} is {state} in {path}")
            return 0

        changed = set_enabled(path, options.action == "enable")
    except (OSError, ValueError) as error:
        print(f"cocalc-magics autoload: {error}", file=sys.stderr)
        return 1

    verb = "enabled" if options.action == "enable" else "disabled"
    note = "" if changed else " (no change was needed)"
    print(f"autoload of {EXTENSION} {verb} in {path}{note}")
    warn_about_python_config(path)
    print("New kernels pick this up; restart running kernels to apply it.")
    return 0


def warn_about_python_config(path: Path) -> None:
    """Warn when a Python config file beside ``path`` may also set the extensions.

    IPython loads both files, and a list set in one replaces the list set in the
    other instead of merging, so an ``extensions`` list in the ``.py`` file would
    either hide ours or be hidden by it.
    """
    python_config = path.with_suffix(".py")
    try:
        text = python_config.read_text(encoding="utf-8")
    except OSError:
        return
    if "extensions" in text:
        print(
            f"warning: {python_config} also sets InteractiveShellApp.extensions; "
            "IPython keeps only one of the two lists, so add "
            f"{EXTENSION!r} to the list in that file instead.",
            file=sys.stderr,
        )
