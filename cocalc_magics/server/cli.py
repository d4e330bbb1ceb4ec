"""``cocalc-magics serve`` and ``python -m cocalc_magics.server``: the options.

The module imports nothing of the server until the command runs, so that building
the ``cocalc-magics`` parser stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the serve command and set its ``run`` function."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, loopback only; any other "
        "address sends API keys over the network unencrypted)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="TCP port to listen on (default 0: any free port)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="directory for the database, project homes and connection.json "
        "(default: the user data directory of cocalc-magics)",
    )
    parser.add_argument(
        "--start-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds a starting project stays in state 'starting' (default 0)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="do not print the URL and API key; read them from connection.json",
    )
    parser.add_argument(
        "--show-key",
        action="store_true",
        help="print the full API key instead of a masked one (it is always "
        "saved in connection.json, readable only by you)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="log every request to server.log"
    )
    parser.set_defaults(run=run_serve)


def run_serve(options: argparse.Namespace) -> int:
    """Run the server in the foreground until SIGTERM or Ctrl+C."""
    from cocalc_magics.server.launch import configure_logging, serve_foreground
    from cocalc_magics.server.runtime import default_data_dir

    if options.port < 0 or options.port > 65535:
        print(f"cocalc-magics serve: --port must be 0..65535, not {options.port}")
        return 2
    if options.start_delay < 0:
        print("cocalc-magics serve: --start-delay must be 0 or more seconds")
        return 2
    data_dir = (options.data_dir or default_data_dir()).expanduser().absolute()
    if data_dir.exists() and not data_dir.is_dir():
        print(
            f"cocalc-magics serve: --data-dir {data_dir} is a file, not a folder; "
            "pass a folder (it is created if missing).",
            file=sys.stderr,
        )
        return 2
    configure_logging(data_dir, options.verbose, console=not options.quiet)
    return serve_foreground(
        data_dir,
        options.host,
        options.port,
        options.start_delay,
        options.quiet,
        options.show_key,
    )
