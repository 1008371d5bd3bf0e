"""The single exception type raised for malformed selectors."""

from __future__ import annotations

__all__ = ["SelectorError"]

_MAX_SHOWN = 200  # keep messages readable; the full text stays in ``selector``


class SelectorError(ValueError):
    """A selector could not be tokenized or parsed.

    Subclasses ``ValueError`` so callers validating user input (API models, CLI arguments)
    can treat it like any other bad value.  ``position`` is the 0-based character offset in
    ``selector`` where the problem was detected; it equals ``len(selector)`` when the text
    ended too early.
    """

    def __init__(self, selector: str, reason: str, position: int) -> None:
        self.selector = selector
        self.reason = reason
        self.position = position
        shown = selector if len(selector) <= _MAX_SHOWN else selector[:_MAX_SHOWN] + "..."
        super().__init__(f"invalid selector '{shown}': {reason} at position {position}")

    def __reduce__(self) -> tuple[type[SelectorError], tuple[str, str, int]]:
        # Exceptions pickle their args by default; ours has a different signature.
        return (type(self), (self.selector, self.reason, self.position))
