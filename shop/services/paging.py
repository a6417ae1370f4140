"""Page arithmetic shared by every paginated list (catalogue, reviews)."""
from __future__ import annotations

import math


class Paged:
    """Adds `pages` to anything with `total` and `per_page` (0 pages when there is nothing)."""

    total: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page)) if self.total else 0
