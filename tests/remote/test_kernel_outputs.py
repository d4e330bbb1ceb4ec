"""Outputs as a real ipykernel sends them, saved by nbclient into a notebook.

One notebook runs every scenario in one kernel, started once for the module,
under the C locale with PYTHONIOENCODING unset. Each cell loads its output items
from a JSON file and renders them with ``render_outputs``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient
from tests.remote.remote_samples import MIXED_ITEMS, png_base64, with_output_type

NOTICE = "Output truncated since it exceeded the cell output limit of 500000 characters"

SETUP = """\
import json
from cocalc_magics.remote import render_outputs

def show(name, **options):
    with open(name, encoding="utf-8") as file:
        items = json.load(file)
    return render_outputs(items, kernel="python3", **options)
"""


def matplotlib_png() -> str | None:
    """Draw a real figure with matplotlib and return its PNG as wrapped base64."""
    code = (
        "import base64, io, matplotlib\n"
        "matplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt\n"
        "figure, axes = plt.subplots(figsize=(3, 2))\n"
        "axes.plot([1, 3, 2])\n"
        "buffer = io.BytesIO()\n"
        "figure.savefig(buffer, format='png')\n"
        "print(base64.encodebytes(buffer.getvalue()).decode())\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return completed.stdout if completed.returncode == 0 else None


def scenarios(big_image: str, plot: str | None) -> dict[str, tuple[list, str]]:
    """Return the items of each scenario and the call that renders them."""
    many_lines = [
        {"name": "stdout", "text": f"line {number:05d} {'.' * 29}\n"}
        for number in range(50_000)
    ]
    notice = {"name": "stdout", "output_type": "stream", "text": [NOTICE]}
    found = {
        "mixed": (MIXED_ITEMS, "show('{file}').raise_for_error()"),
        "mixed_typed": (
            with_output_type(MIXED_ITEMS),
            "show('{file}').raise_for_error()",
        ),
        "no_raise": (MIXED_ITEMS, "result = show('{file}', show_errors=True)"),
        "small_png": (
            [
                {
                    "data": {
                        "image/png": png_base64(200, 100, wrap=True),
                        "text/plain": "<Figure>",
                    }
                }
            ],
            "result = show('{file}')",
        ),
        "big_png": (
            [
                {
                    "data": {
                        "image/png": big_image,
                        "text/plain": "<Figure size 8000x8000>",
                    }
                },
                {"name": "stdout", "text": "done\n"},
            ],
            "result = show('{file}')",
        ),
        "many_lines": (many_lines, "result = show('{file}')"),
        "notices": (
            [{"name": "stdout", "text": "head\n"}, notice, notice],
            "result = show('{file}')",
        ),
        "unicode": (
            [
                {"name": "stdout", "text": "naïve café\n"},
                {"name": "stdout", "text": "Grüße, 你好, Ωμέγα, 🚀 \ufffd\n"},
            ],
            "result = show('{file}')",
        ),
        "after_error": (
            [{"name": "stdout", "text": "still running\n"}],
            "result = show('{file}')",
        ),
    }
    if plot is not None:
        found["matplotlib"] = (
            [{"data": {"image/png": plot, "text/plain": "<Figure size 300x200>"}}],
            "result = show('{file}')",
        )
    return found


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Run the scenario notebook once and return its cells by scenario name."""
    folder = tmp_path_factory.mktemp("kernel-outputs")
    big_image = base64.b64encode(os.urandom(11_250_000)).decode("ascii")
    plot = matplotlib_png()

    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell(SETUP))
    names = []
    for name, (items, call) in scenarios(big_image, plot).items():
        file = folder / f"{name}.json"
        file.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
        notebook.cells.append(nbformat.v4.new_code_cell(call.format(file=file)))
        names.append(name)

    environment = {
        key: value for key, value in os.environ.items() if key != "PYTHONIOENCODING"
    }
    environment.update(LANG="C", LC_ALL="C")
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=120,
        allow_errors=True,
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute(env=environment)

    saved = folder / "saved.ipynb"
    nbformat.write(notebook, saved)
    reread = nbformat.read(saved, as_version=4)
    cells = dict(zip(names, reread.cells[1:]))
    cells["_setup"] = reread.cells[0]
    cells["_file"] = saved
    return cells


def kinds(cell) -> list[str]:
    return [output.output_type for output in cell.outputs]


def stream_text(cell, name: str) -> str:
    return "".join(
        output.text
        for output in cell.outputs
        if output.output_type == "stream" and output.name == name
    )


def test_notebook_is_valid(executed):
    nbformat.validate(nbformat.read(executed["_file"], as_version=4))
    assert executed["_setup"].outputs == []


def test_mixed_outputs_saved_in_order(executed):
    cell = executed["mixed"]
    assert kinds(cell) == [
        "stream",
        "stream",
        "display_data",
        "display_data",
        "display_data",
        "display_data",
        "error",
    ]
    assert cell.outputs[0].name == "stdout"
    assert cell.outputs[0].text == "partial\n"
    assert cell.outputs[1].name == "stderr"
    assert cell.outputs[1].text == "warn\n"
    assert cell.outputs[2].data == {"text/plain": "42"}
    assert cell.outputs[5].data == {
        "text/plain": 'Unrecognized output item: {"foo": 1}'
    }


def test_png_saved_as_image(executed):
    output = executed["mixed"].outputs[3]
    assert output.data["image/png"] == MIXED_ITEMS[4]["data"]["image/png"]
    assert output.data["text/plain"] == "<Figure size 640x480 with 1 Axes>"
    assert output.metadata["image/png"] == {"width": 640}


def test_html_saved_with_fallback(executed):
    output = executed["mixed"].outputs[4]
    assert output.data["text/html"] == "<table><tr><td>1</td></tr></table>"
    assert output.data["text/plain"] == "   a\n0  1"


def test_remote_error_saved_as_error(executed):
    error = executed["mixed"].outputs[-1]
    assert error.ename == "ZeroDivisionError"
    assert error.evalue == "division by zero"
    assert error.traceback[-1] == "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"
    assert "remote python3 kernel" in error.traceback[0]


def test_output_type_variant_saves_same_outputs(executed):
    assert executed["mixed_typed"].outputs == executed["mixed"].outputs


def test_no_raise_prints_error_as_stderr(executed):
    cell = executed["no_raise"]
    assert "error" not in kinds(cell)
    assert "\x1b[0;31mZeroDivisionError\x1b[0m" in stream_text(cell, "stderr")


def test_cells_after_error_still_run(executed):
    assert stream_text(executed["after_error"], "stdout") == "still running\n"


def test_wrapped_base64_png_saved_as_image(executed):
    output = executed["small_png"].outputs[0]
    assert output.output_type == "display_data"
    assert "\n" not in output.data["image/png"]
    assert base64.b64decode(output.data["image/png"]).startswith(b"\x89PNG")


def test_oversized_png_not_saved(executed):
    cell = executed["big_png"]
    assert kinds(cell) == ["display_data", "display_data", "stream"]
    assert all("image/png" not in output.data for output in cell.outputs[:2])
    assert "15.0 MB" in cell.outputs[1].data["text/plain"]
    assert stream_text(cell, "stdout") == "done\n"
    assert executed["_file"].stat().st_size < 5_000_000


def test_many_lines_saved_within_budget(executed):
    cell = executed["many_lines"]
    stdout = stream_text(cell, "stdout")
    assert len(stdout.encode()) <= 1_000_000
    assert stdout.startswith("line 00000 ")
    assert stdout.rstrip("\n").endswith("line 49999 " + "." * 29)
    assert "lines (" in stream_text(cell, "stderr")


def test_truncation_notice_saved_once(executed):
    cell = executed["notices"]
    assert stream_text(cell, "stdout") == "head\n"
    assert stream_text(cell, "stderr").count(NOTICE) == 1


def test_non_ascii_saved_under_c_locale(executed):
    stdout = stream_text(executed["unicode"], "stdout")
    assert stdout == "naïve café\nGrüße, 你好, Ωμέγα, 🚀 \ufffd\n"


def test_matplotlib_png_saved_as_image(executed):
    if "matplotlib" not in executed:
        pytest.skip("matplotlib is not installed")
    output = executed["matplotlib"].outputs[0]
    assert output.output_type == "display_data"
    image = base64.b64decode(output.data["image/png"])
    assert image.startswith(b"\x89PNG")
    assert output.data["text/plain"] == "<Figure size 300x200>"
