#!/usr/bin/env bash
# Install what the browser test (tests/panels/test_browser.py) needs besides the
# Python packages of the test extra: Debian's Chromium at /usr/bin/chromium.
# Playwright only drives that browser; never run `playwright install`, which would
# download a browser build of its own.
#
# Usage: tests/browser/setup.sh [PYTHON]
#   PYTHON, when given, gets jupyterlab and playwright installed with pip too
#   (for an environment made without the test extra).
set -euo pipefail

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -ne 0 ]; then
        # Without root the browser test is skipped (it fails instead when CI is set).
        echo "note: Chromium is missing and installing it needs root, so the" \
             "browser test will be skipped. To run it: sudo apt-get update &&" \
             "sudo apt-get install -y chromium" >&2
        exit 0
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
/usr/bin/chromium --version

if [ "$#" -ge 1 ]; then
    "$1" -m pip install jupyterlab playwright
fi
