"""The errors that server methods turn into CoCalc's one-key error envelope."""

from __future__ import annotations


class MethodError(Exception):
    """A failure that the caller receives as HTTP 200 with ``{"error": text}``.

    ``text`` is sent exactly as given. CoCalc formats exceptions thrown inside the hub
    or the project as ``"Error: <message>"`` but reports exec failures as plain
    strings, so use :meth:`thrown` for the first kind and the constructor for the
    second.
    """

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    @classmethod
    def thrown(cls, message: str) -> MethodError:
        """Build the error for an exception thrown inside the hub or a project."""
        return cls(f"Error: {message}")


def not_implemented(name: str) -> MethodError:
    """Build the error for a CoCalc method that this server does not provide."""
    return MethodError.thrown(
        f"'{name}' is not implemented by the local cocalc-magics server"
    )


def transport_error(reason: str, subject: str, name: str, code: str) -> MethodError:
    """Build a bridge transport error with CoCalc's ``callHub`` suffix.

    CoCalc writes "callHub" on both endpoints and ends the text with a space.
    """
    return MethodError(
        f"{reason} - callHub: subject='{subject}', name='{name}', code='{code}' "
    )
