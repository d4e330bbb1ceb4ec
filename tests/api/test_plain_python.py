"""The client works from a plain Python process, without IPython."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.fake_server import Reply


def test_client_in_plain_python(fake, tmp_path):
    fake.script(
        "system.exec",
        Reply.json(
            {"type": "blocking", "stdout": "hi\n", "stderr": "", "exit_code": 0}
        ),
    )
    script = textwrap.dedent(
        """
        import sys
        from cocalc_magics.api import Connection

        with Connection() as conn:
            result = conn.exec("echo hi")
        print(repr(result.stdout), result.exit_code)
        print(sorted(m for m in ("IPython", "ipywidgets") if m in sys.modules))
        """
    )
    environment = {
        "COCALC_HOST": fake.url,
        "COCALC_API_KEY": fake.api_key,
        "COCALC_PROJECT_ID": fake.project_id,
        "XDG_CONFIG_HOME": str(tmp_path),
        "LANG": "C",
        "LC_ALL": "C",
        "PATH": "/usr/bin:/bin",
    }
    completed = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == ["'hi\\n' 0", "[]"]
    assert fake.requests[0].json["args"][0]["command"] == "echo hi"
