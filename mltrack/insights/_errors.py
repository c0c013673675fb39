"""``FilterError``: a malformed filter, with the position and what was expected there."""

from __future__ import annotations


class FilterError(ValueError):
    """A filter string that does not parse; ``position`` is the 0-based character offset of the problem."""

    def __init__(self, filter_string: str, position: int, message: str) -> None:
        self.filter_string = filter_string
        self.position = position
        self.reason = message
        pointer = " " * position + "^"
        super().__init__(f"bad filter at position {position}: {message}\n  {filter_string}\n  {pointer}")
