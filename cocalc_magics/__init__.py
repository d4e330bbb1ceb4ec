"""Drive CoCalc projects from Jupyter notebooks through CoCalc's HTTP API.

Importing this package has no side effects: it registers no magics, starts no
threads and opens no connections. ``%load_ext cocalc_magics`` does the registering.
"""

__version__ = "0.1.0"
