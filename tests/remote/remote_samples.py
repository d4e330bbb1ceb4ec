"""Sample output items and payload builders shared by the remote tests."""

from __future__ import annotations

import base64
import copy
import zlib

# A valid 1x1 PNG.
PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAA"
    "AABJRU5ErkJggg=="
)

# Output items as system.jupyterExecute returns them: no output_type anywhere.
MIXED_ITEMS = [
    {"name": "stdout", "text": "par"},
    {"name": "stdout", "text": "tial\n"},
    {"name": "stderr", "text": "warn\n"},
    {"data": {"text/plain": "42"}},
    {
        "data": {
            "image/png": PIXEL_PNG,
            "text/plain": "<Figure size 640x480 with 1 Axes>",
        },
        "metadata": {"image/png": {"width": 640}},
    },
    {
        "data": {
            "text/html": "<table><tr><td>1</td></tr></table>",
            "text/plain": "   a\n0  1",
        }
    },
    {"foo": 1},
    {
        "ename": "ZeroDivisionError",
        "evalue": "division by zero",
        "traceback": ["\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"],
    },
]


def with_output_type(items: list) -> list:
    """Return a copy of the items with nbformat ``output_type`` keys added."""
    typed = copy.deepcopy(items)
    for item in typed:
        if not isinstance(item, dict):
            continue
        if "ename" in item:
            item["output_type"] = "error"
        elif "data" in item:
            item["output_type"] = "display_data"
        elif "name" in item:
            item["output_type"] = "stream"
    return typed


def png_base64(width: int, height: int, *, wrap: bool = False) -> str:
    """Build a valid grey PNG of the given size, as base64 (wrapped at 76 if asked)."""
    raw = b"".join(b"\x00" + bytes([128]) * width for _ in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")

    header = (
        width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x00\x00\x00\x00"
    )
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 0))
        + chunk(b"IEND", b"")
    )
    if wrap:
        return base64.encodebytes(png).decode("ascii")
    return base64.b64encode(png).decode("ascii")
