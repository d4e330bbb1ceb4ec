"""``python -m cocalc_magics.server``: the same as ``cocalc-magics serve``."""

from __future__ import annotations

import argparse
import sys

from cocalc_magics.server.cli import add_serve_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cocalc_magics.server",
        description="Run the local CoCalc-compatible API server in the foreground.",
    )
    add_serve_arguments(parser)
    options = parser.parse_args(argv)
    return options.run(options)


if __name__ == "__main__":
    sys.exit(main())
