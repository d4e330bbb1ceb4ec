"""``cocalc-magics autoload`` merges the extension into a kernel config file."""

import json
import os
import subprocess
import sys

import pytest

from cocalc_magics.autoload import EXTENSION, read_config, set_enabled


def run_cli(*args, ipython_dir):
    environ = {**os.environ, "IPYTHONDIR": str(ipython_dir)}
    return subprocess.run(
        [sys.executable, "-m", "cocalc_magics.cli", "autoload", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )


def test_enable_creates_file(tmp_path):
    path = tmp_path / "etc" / "ipython_kernel_config.json"
    assert set_enabled(path, True) is True
    assert json.loads(path.read_text()) == {
        "InteractiveShellApp": {"extensions": [EXTENSION]}
    }


def test_enable_keeps_other_settings(tmp_path):
    path = tmp_path / "ipython_kernel_config.json"
    path.write_text(
        json.dumps(
            {
                "InteractiveShellApp": {"extensions": ["other_ext"], "exec_lines": ["1"]},
                "IPKernelApp": {"matplotlib": "inline"},
            }
        )
    )
    set_enabled(path, True)
    config = json.loads(path.read_text())
    assert config["InteractiveShellApp"]["extensions"] == ["other_ext", EXTENSION]
    assert config["InteractiveShellApp"]["exec_lines"] == ["1"]
    assert config["IPKernelApp"] == {"matplotlib": "inline"}


def test_enable_twice_changes_nothing(tmp_path):
    path = tmp_path / "ipython_kernel_config.json"
    set_enabled(path, True)
    assert set_enabled(path, True) is False
    assert read_config(path)["InteractiveShellApp"]["extensions"] == [EXTENSION]


def test_disable_removes_only_ours(tmp_path):
    path = tmp_path / "ipython_kernel_config.json"
    path.write_text(
        json.dumps({"InteractiveShellApp": {"extensions": ["other_ext", EXTENSION]}})
    )
    assert set_enabled(path, False) is True
    assert read_config(path)["InteractiveShellApp"]["extensions"] == ["other_ext"]


def test_invalid_json_is_reported(tmp_path):
    path = tmp_path / "ipython_kernel_config.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        set_enabled(path, True)
    assert path.read_text() == "{not json"


def test_cli_user_profile_round_trip(tmp_path):
    enabled = run_cli("enable", "--user", ipython_dir=tmp_path)
    assert enabled.returncode == 0, enabled.stderr
    config_file = tmp_path / "profile_default" / "ipython_kernel_config.json"
    assert str(config_file) in enabled.stdout
    assert EXTENSION in read_config(config_file)["InteractiveShellApp"]["extensions"]

    status = run_cli("status", "--user", ipython_dir=tmp_path)
    assert "is enabled" in status.stdout

    disabled = run_cli("disable", "--user", ipython_dir=tmp_path)
    assert disabled.returncode == 0, disabled.stderr
    # An empty list would hide the environment's list from kernels.
    assert not config_file.exists()


def test_cli_reports_broken_file(tmp_path):
    config_file = tmp_path / "profile_default" / "ipython_kernel_config.json"
    config_file.parent.mkdir(parents=True)
    config_file.write_text("[1, 2]")
    result = run_cli("enable", "--user", ipython_dir=tmp_path)
    assert result.returncode == 1
    assert "must contain a JSON object" in result.stderr


def test_cli_warns_about_python_config(tmp_path):
    profile = tmp_path / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text(
        "c.InteractiveShellApp.extensions = ['autoreload']\n"
    )
    result = run_cli("enable", "--user", ipython_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ipython_kernel_config.py also sets" in result.stderr
    assert "'cocalc_magics' to the list in that file" in result.stderr


def test_cli_quiet_without_python_config(tmp_path):
    result = run_cli("enable", "--user", ipython_dir=tmp_path)
    assert result.returncode == 0
    assert result.stderr == ""


def test_disable_drops_empty_list_keeps_rest(tmp_path):
    path = tmp_path / "ipython_kernel_config.json"
    other = {"IPKernelApp": {"matplotlib": "inline"}}
    path.write_text(
        json.dumps({**other, "InteractiveShellApp": {"extensions": [EXTENSION]}})
    )
    assert set_enabled(path, False) is True
    assert read_config(path) == other
