"""Loading, unloading and configuring the extension, and its auto-load config file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets import TraitError

from cocalc_magics.magics import CoCalcMagics

REPOSITORY = Path(__file__).resolve().parents[2]
KERNEL_CONFIG = REPOSITORY / "jupyter-config" / "ipython" / "ipython_kernel_config.json"


def run_python(code: str, **environment) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **environment},
    )


def registered(shell) -> tuple[bool, bool, int]:
    magics = shell.magics_manager.magics
    count = sum(isinstance(c, CoCalcMagics) for c in shell.configurables)
    return "cocalc" in magics["line"], "cocalc_exec" in magics["cell"], count


class TestLoading:
    def test_load_registers_both(self, shell):
        assert registered(shell) == (True, True, 1)

    def test_unload_removes_everything(self):
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "cocalc_magics")
        shell.run_line_magic("unload_ext", "cocalc_magics")
        assert registered(shell) == (False, False, 0)
        assert "CoCalcMagics" not in shell.magics_manager.registry

    def test_reload_leaves_one_of_each(self, shell):
        threads_before = threading.active_count()
        for _ in range(3):
            shell.run_line_magic("reload_ext", "cocalc_magics")
        assert registered(shell) == (True, True, 1)
        assert threading.active_count() == threads_before

    def test_reload_closes_old_connection(self, shell, magics, fake):
        shell.run_line_magic("cocalc", "exec --quiet -- true")
        old_session = magics.session
        assert old_session._connection is not None
        shell.run_line_magic("reload_ext", "cocalc_magics")
        assert old_session._connection is None

    def test_load_imports_nothing_heavy(self):
        result = run_python(
            """
            import sys
            from IPython.core.interactiveshell import InteractiveShell
            shell = InteractiveShell.instance()
            shell.run_line_magic("load_ext", "cocalc_magics")
            heavy = ["ipywidgets", "requests", "cocalc_magics.server", "tornado"]
            print([name for name in heavy if name in sys.modules])
            """
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]"

    def test_load_without_ipywidgets(self):
        result = run_python(
            """
            import sys
            sys.modules["ipywidgets"] = None
            from IPython.core.interactiveshell import InteractiveShell
            shell = InteractiveShell.instance()
            shell.run_line_magic("load_ext", "cocalc_magics")
            shell.run_line_magic("cocalc", "")
            print("cocalc" in shell.magics_manager.magics["line"])
            """
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith("True")


class TestConfiguration:
    def test_every_trait_has_help(self):
        traits = CoCalcMagics.class_traits(config=True)
        assert {
            "host",
            "project",
            "timeout",
            "output_budget",
            "max_output",
            "raise_on_failure",
            "show_tracebacks",
            "start_stopped_projects",
            "start_timeout",
            "local_data_dir",
        } <= set(traits)
        for name, trait in traits.items():
            assert trait.help, name

    def test_no_key_trait(self):
        names = " ".join(CoCalcMagics.class_traits(config=True))
        assert "key" not in names

    def test_config_magic_sets_trait(self, shell, magics):
        shell.run_line_magic("config", "CoCalcMagics.timeout = 12.5")
        assert magics.timeout == 12.5

    def test_config_magic_lists_options(self, shell, capsys):
        shell.run_line_magic("config", "CoCalcMagics")
        printed = capsys.readouterr().out
        assert "CoCalcMagics.output_budget" in printed
        assert "CoCalcMagics.show_tracebacks" in printed

    @pytest.mark.parametrize(
        "name, value", [("timeout", 0), ("output_budget", 0), ("max_output", -5)]
    )
    def test_invalid_values_rejected(self, magics, name, value):
        with pytest.raises(TraitError, match=name):
            setattr(magics, name, value)

    def test_shell_config_applies(self):
        shell = InteractiveShell.instance()
        shell.config.CoCalcMagics.output_budget = 1234
        try:
            shell.run_line_magic("load_ext", "cocalc_magics")
            magics = shell.magics_manager.registry["CoCalcMagics"]
            assert magics.output_budget == 1234
        finally:
            shell.run_line_magic("unload_ext", "cocalc_magics")
            del shell.config.CoCalcMagics["output_budget"]


class TestAutoLoadConfig:
    def test_file_adds_extension(self):
        config = json.loads(KERNEL_CONFIG.read_text())
        assert config == {"InteractiveShellApp": {"extensions": ["cocalc_magics"]}}

    def test_autoload_writes_where_kernels_read(self):
        # IPython kernels read ipython_kernel_config.* from {sys.prefix}/etc/ipython
        # (IPython.core.application.ENV_CONFIG_DIRS), not from etc/jupyter.
        from IPython.core.application import ENV_CONFIG_DIRS

        from cocalc_magics.autoload import config_path

        expected = Path(ENV_CONFIG_DIRS[0]) / KERNEL_CONFIG.name
        assert config_path(user=False) == expected

    def test_kernel_loads_extension_from_config(self, tmp_path):
        from jupyter_client.manager import start_new_kernel

        profile = tmp_path / "ipython" / "profile_default"
        profile.mkdir(parents=True)
        (profile / KERNEL_CONFIG.name).write_text(KERNEL_CONFIG.read_text())
        env = {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython")}

        printed = []
        manager, client = start_new_kernel(kernel_name="python3", env=env)
        try:
            client.execute_interactive(
                "print('cocalc' in get_ipython().magics_manager.magics['line'])",
                timeout=60,
                output_hook=lambda message: printed.append(
                    message["content"].get("text", "")
                ),
            )
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
        assert "".join(printed).strip() == "True"


def test_prompt_key_without_stdin_is_usage_error():
    from jupyter_client.manager import start_new_kernel

    stderr = []

    def keep_stderr(message):
        if message["msg_type"] == "stream" and message["content"]["name"] == "stderr":
            stderr.append(message["content"]["text"])

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        # Like nbconvert and papermill, this client does not reply to input requests.
        reply = client.execute_interactive(
            "%load_ext cocalc_magics\n"
            "%cocalc connect --host http://127.0.0.1:9 --prompt-key",
            timeout=60,
            allow_stdin=False,
            output_hook=keep_stderr,
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    text = "".join(stderr)
    assert reply["content"]["status"] == "error"
    assert "UsageError: this frontend cannot ask for input" in text
    assert "--key-env" in text
    assert "Traceback" not in text
