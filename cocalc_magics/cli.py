"""The ``cocalc-magics`` command.

Each subcommand lives in its own module and is imported only when it runs, so that
``cocalc-magics serve`` does not pay for IPython and ``quickstart`` does not pay for
the server's imports until it needs them.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cocalc-magics",
        description="Tools around the cocalc_magics IPython extension.",
    )
    subcommands = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    subcommands.required = True

    from cocalc_magics.server.cli import add_serve_arguments

    serve = subcommands.add_parser(
        "serve",
        help="run the local CoCalc-compatible API server",
        description="Run the local CoCalc-compatible API server in the foreground.",
    )
    add_serve_arguments(serve)

    from cocalc_magics.quickstart import add_quickstart_arguments

    quickstart = subcommands.add_parser(
        "quickstart",
        help="execute the quickstart notebook against a local server",
        description=(
            "Start a local CoCalc-compatible server, execute the quickstart "
            "notebook against it and print where the executed notebook is."
        ),
    )
    add_quickstart_arguments(quickstart)

    from cocalc_magics.autoload import add_autoload_arguments

    autoload = subcommands.add_parser(
        "autoload",
        help="load the extension in every IPython kernel (or stop doing so)",
        description=(
            "Add cocalc_magics to the extensions that IPython kernels load at "
            "start, in this environment or, with --user, in your IPython profile."
        ),
    )
    add_autoload_arguments(autoload)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_args(argv)
    return options.run(options)


if __name__ == "__main__":
    sys.exit(main())
