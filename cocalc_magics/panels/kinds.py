"""The kinds of panel that ``%cocalc panel`` can show, kept apart from the panels.

The magic needs the names when ``%load_ext`` registers it, long before any panel
is shown, so this module imports nothing.
"""

#: Panel kind (the magic's word) to the name of its widget class.
PANEL_KINDS = {
    "project": "ProjectPanel",
    "state": "StatePanel",
    "quotas": "QuotasPanel",
    "kernels": "KernelsPanel",
    "jobs": "JobsPanel",
}
