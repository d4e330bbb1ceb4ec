"""Expansion of ``{expression}`` on a magic line from the user's namespace.

One rule, applied the same way everywhere on the line:

- ``{expression}`` is replaced by ``str()`` of the Python expression evaluated in
  the user's namespace.
- ``$NAME`` and ``${NAME}`` are left for the remote shell, untouched.
- ``{}`` passes through unchanged (``find ... -exec wc -l {} +``).
- ``{{`` and ``}}`` stand for literal braces, so ``{{a,b}}`` sends ``{a,b}``.
- Anything else in braces that is not a valid Python expression, or that names an
  undefined variable, raises ``UsageError`` before any request is sent. There is no
  partial substitution and no silent fallback to the literal text.

The cell body of ``%%cocalc_exec`` is never expanded: it reaches the server byte for
byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from IPython.core.error import UsageError


class Expander:
    """Expand ``{expression}`` fields against one namespace.

    Each distinct expression is evaluated once per instance, because the magics
    expand the option tokens and the raw command text of the same line, and an
    expression with side effects must not run twice.

    Parameters
    ----------
    namespace
        The user's namespace, usually ``shell.user_ns``.
    """

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self._namespace = namespace
        self._values: dict[str, str] = {}
        self._objects: dict[str, Any] = {}

    def expand(self, text: str) -> str:
        """Return ``text`` with every ``{expression}`` field replaced."""
        pieces: list[str] = []
        position = 0
        length = len(text)
        while position < length:
            char = text[position]
            if char == "$" and text.startswith("${", position):
                end = self._find_closing_brace(text, position + 1, shell=True)
                pieces.append(text[position : end + 1])
                position = end + 1
            elif text.startswith("{{", position) or text.startswith("}}", position):
                pieces.append(char)
                position += 2
            elif char == "{":
                end = self._find_closing_brace(text, position, shell=False)
                pieces.append(self._expand_field(text[position + 1 : end]))
                position = end + 1
            else:
                pieces.append(char)
                position += 1
        return "".join(pieces)

    def expand_value(self, text: str) -> Any:
        """Return the object of ``text`` when it is one ``{expression}``, else expand.

        An option that names a collection (``--projects {my_ids}``) needs the
        object itself: its ``str`` would be the list's repr.
        """
        stripped = text.strip()
        if (
            stripped.startswith("{")
            and not stripped.startswith("{{")
            and self._find_closing_brace(stripped, 0, shell=False) == len(stripped) - 1
        ):
            return self._object(stripped[1:-1])
        return self.expand(text)

    def _object(self, expression: str) -> Any:
        if expression not in self._objects:
            self._objects[expression] = self._evaluate(expression)
        return self._objects[expression]

    def _expand_field(self, expression: str) -> str:
        if expression == "":
            return "{}"

        if expression not in self._values:
            self._values[expression] = str(self._object(expression))
        return self._values[expression]

    def _evaluate(self, expression: str) -> Any:
        try:
            code = compile(expression.strip(), "<magic line>", "eval")
        except SyntaxError:
            raise UsageError(
                f"{{{expression}}} on the magic line is not a Python expression; "
                f"write {{{{{expression}}}}} to send the braces to the remote shell."
            ) from None

        try:
            return eval(code, self._globals())
        except NameError as error:
            name = getattr(error, "name", None) or expression.strip()
            raise UsageError(
                f"name '{name}' in {{{expression}}} is not defined; define it in the "
                f"notebook first, or write {{{{{expression}}}}} for literal braces."
            ) from None
        except Exception as error:  # noqa: BLE001 - any error of user code
            raise UsageError(
                f"evaluating {{{expression}}} on the magic line failed with "
                f"{type(error).__name__}: {error}"
            ) from None

    def _globals(self) -> dict[str, Any]:
        # eval() needs a real dict for its globals; shell.user_ns already is one.
        if isinstance(self._namespace, dict):
            return self._namespace
        return dict(self._namespace)

    @staticmethod
    def _find_closing_brace(text: str, start: int, *, shell: bool) -> int:
        """Return the index of the ``}`` that closes the ``{`` at ``start``."""
        depth = 0
        for index in range(start, len(text)):
            if text[index] == "{":
                depth += 1
            elif text[index] == "}":
                depth -= 1
                if depth == 0:
                    return index

        if shell:
            # An unclosed ${ is the remote shell's problem, not ours.
            return len(text) - 1
        raise UsageError(
            f"unbalanced '{{' in {text[start : start + 40]!r}; close it with '}}', "
            "or write '{{' for a literal brace."
        )
