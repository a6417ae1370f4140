"""What the shop logs during a test: its `shop.*` loggers' records, kept in a `with` block."""
from __future__ import annotations

import logging


class ShopLog:
    """The records the shop's loggers (`shop` and below) emit while in the `with` block.
    Enter it after building the app: building one sets the shop's log handlers."""

    def __init__(self, default_name: str | None = None) -> None:
        self.records: list[logging.LogRecord] = []
        self.default_name = default_name
        self._handler = logging.Handler()
        self._handler.emit = self.records.append  # type: ignore[method-assign]

    def __enter__(self) -> ShopLog:
        logging.getLogger("shop").addHandler(self._handler)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger("shop").removeHandler(self._handler)

    def lines(self, level: int = logging.WARNING, name: str | None = None) -> list[str]:
        """The messages of this level, of the logger `name` (or the default one, if any)."""
        name = name or self.default_name
        return [r.getMessage() for r in self.records
                if r.levelno == level and (name is None or r.name == name)]
