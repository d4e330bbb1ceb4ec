"""Fixtures for the remote Jupyter rendering and session tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def shell():
    """The process's InteractiveShell, so capture_output can see display calls.

    Every suite uses the same ``InteractiveShell.instance()``: IPython allows one
    shell class per process, so a terminal shell here would clash with the others.
    """
    from IPython.core.interactiveshell import InteractiveShell

    return InteractiveShell.instance()
