"""A deliberately simple L2 book in pure Python: two dicts ``{price_ticks: size_lots}``.

It shares no code with the compiled kernel (``rlx_assets.book.kernel``); it exists to check the
kernel differentially and to measure what compiling buys (``rlx bench reconstruct``). Same
semantics: a row sets the level's absolute size, size 0 removes it, the delete of a level the
book does not hold is counted and ignored.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

Level = tuple[int, int]  # (price ticks, size lots)


class ReferenceBook:
    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.delete_unknown = 0
        self._best_bid: int | None = None
        self._best_ask: int | None = None

    def apply(self, is_bid: bool, tick: int, lots: int) -> None:
        side = self.bids if is_bid else self.asks
        if lots == 0:
            if side.pop(tick, None) is None:
                self.delete_unknown += 1
                return
            if is_bid and tick == self._best_bid:
                self._best_bid = max(side) if side else None
            elif not is_bid and tick == self._best_ask:
                self._best_ask = min(side) if side else None
            return
        side[tick] = lots
        if is_bid:
            if self._best_bid is None or tick > self._best_bid:
                self._best_bid = tick
        elif self._best_ask is None or tick < self._best_ask:
            self._best_ask = tick

    def apply_rows(self, rows: Iterable[tuple[bool, int, int]]) -> None:
        for is_bid, tick, lots in rows:
            self.apply(is_bid, tick, lots)

    def best_bid(self) -> Level | None:
        t = self._best_bid
        return None if t is None else (t, self.bids[t])

    def best_ask(self) -> Level | None:
        t = self._best_ask
        return None if t is None else (t, self.asks[t])

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        """The best ``depth`` levels per side, best first (selected from the dicts, independently
        of the incrementally kept best prices)."""
        return heapq.nlargest(depth, self.bids.items()), heapq.nsmallest(depth, self.asks.items())

    def levels(self) -> tuple[list[Level], list[Level]]:
        """The whole book, best first."""
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())

    def crossed(self) -> bool:
        return (
            self._best_bid is not None
            and self._best_ask is not None
            and self._best_bid >= self._best_ask
        )
