"""Time that ``%load_ext cocalc_magics`` adds to an IPython shell's start.

Each sample is a fresh Python process that creates an ``InteractiveShell`` (the
baseline, not counted) and then times ``%load_ext cocalc_magics`` alone, so the
figure is the extension's added import and registration time. The script prints
the median over the samples, the modules the load imported that a cheap load
should avoid, and the machine's core count. The goal is at most 100 ms.

Run from the repository root::

    python benchmarks/import_time.py [--samples 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_SAMPLE = """
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
before = set(sys.modules)
started = time.perf_counter()
shell.run_line_magic("load_ext", "cocalc_magics")
elapsed = time.perf_counter() - started
heavy = ("ipywidgets", "requests", "tornado", "cocalc_magics.server", "nbclient")
loaded = sorted(name for name in set(sys.modules) - before if name in heavy)
print(json.dumps({"seconds": elapsed, "heavy": loaded}))
"""


def sample() -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _SAMPLE], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=15, help="processes to time")
    options = parser.parse_args()

    samples = [sample() for _ in range(options.samples)]
    seconds = [s["seconds"] for s in samples]
    heavy = sorted({name for s in samples for name in s["heavy"]})
    print(f"samples: {len(samples)} fresh processes")
    print(
        f"%load_ext cocalc_magics: median {statistics.median(seconds) * 1000:.1f} ms "
        f"(min {min(seconds) * 1000:.1f}, max {max(seconds) * 1000:.1f}; goal <= 100)"
    )
    print(f"heavy modules imported by the load: {heavy or 'none'}")
    print(f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
