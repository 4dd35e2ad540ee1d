"""A deliberately simple L2 book in pure Python: per side a dict ``{ticks: lots}`` and the
sorted list of its prices.

It shares no code with the compiled kernel (``rlx_assets.book.kernel``); it exists to check the
kernel differentially, to measure what compiling buys (``rlx bench reconstruct``) and to build
the vendor ``book`` table of a converted capture (``rlx lake-from-capture``), so that the
fidelity report's book agreement on such a lake compares two implementations. Same
semantics: a row sets the level's absolute size, size 0 removes it, the delete of a level the
book does not hold is counted and ignored.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

Level = tuple[int, int]  # (price ticks, size lots)


class _Side:
    """Levels of one side: sizes by price, and the prices in ascending order (the standard
    library's bisect; 1.6x sortedcontainers' SortedDict on a real hour of BTCUSDT depth)."""

    __slots__ = ("prices", "sizes")

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}
        self.prices: list[int] = []

    def set(self, tick: int, lots: int) -> bool:
        """Set (lots > 0) or remove (lots == 0) a level; False for removing an absent one."""
        sizes = self.sizes
        if lots:
            if tick not in sizes:
                insort(self.prices, tick)
            sizes[tick] = lots
            return True
        if sizes.pop(tick, None) is None:
            return False
        del self.prices[bisect_left(self.prices, tick)]
        return True

    def items(self, prices: list[int]) -> list[Level]:
        return [(tick, self.sizes[tick]) for tick in prices]


class ReferenceBook:
    def __init__(self) -> None:
        self.bids = _Side()
        self.asks = _Side()
        self.delete_unknown = 0

    def apply(self, is_bid: bool, tick: int, lots: int) -> None:
        if not (self.bids if is_bid else self.asks).set(tick, lots):
            self.delete_unknown += 1

    def apply_rows(self, rows: Iterable[tuple[bool, int, int]]) -> None:
        # The converter runs millions of rows an hour: the sides' methods bound once.
        set_bid, set_ask = self.bids.set, self.asks.set
        unknown = 0
        for is_bid, tick, lots in rows:
            if not (set_bid if is_bid else set_ask)(tick, lots):
                unknown += 1
        self.delete_unknown += unknown

    def best_bid(self) -> Level | None:
        prices = self.bids.prices
        return (prices[-1], self.bids.sizes[prices[-1]]) if prices else None

    def best_ask(self) -> Level | None:
        prices = self.asks.prices
        return (prices[0], self.asks.sizes[prices[0]]) if prices else None

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        """The best ``depth`` levels per side, best first."""
        bid_prices = self.bids.prices
        bids = bid_prices[max(len(bid_prices) - depth, 0) :][::-1] if depth > 0 else []
        return self.bids.items(bids), self.asks.items(self.asks.prices[: max(depth, 0)])

    def levels(self) -> tuple[list[Level], list[Level]]:
        """The whole book, best first."""
        return self.bids.items(self.bids.prices[::-1]), self.asks.items(self.asks.prices)

    def crossed(self) -> bool:
        bids, asks = self.bids.prices, self.asks.prices
        return bool(bids and asks and bids[-1] >= asks[0])


# --- the vendor `book` table of a capture, rebuilt without the kernel -----------------------------
SYNC_COUNTERS = ("gaps", "snapshots_used", "snapshots_ignored", "snapshots_unusable",
                 "diffs_applied", "diffs_stale")  # fmt: skip
ABSENT = -1  # ticks/lots of a level the book does not hold


class DepthSync:
    """Binance's rule for a local book from a REST snapshot plus diff-depth events, written from
    the exchange's documentation as a plain state machine (the kernel has its own compiled one).

    Feed messages in receive order; each call returns the actions to take: ``("reset", i)``
    (rebuild the book from snapshot message ``i``) and ``("apply", i)`` (apply diff ``i``).
    Diffs received out of sync are buffered and replayed against the next snapshot: drop
    ``u <= lastUpdateId`` (futures: ``u < lastUpdateId``); the first kept diff must straddle it
    (spot ``U <= lastUpdateId+1 <= u``, futures ``U <= lastUpdateId <= u`` or ``pu ==
    lastUpdateId``). In sync, spot needs ``U == previous u + 1``, futures ``pu == previous u``;
    a break waits for the next snapshot. Snapshots arriving in sync are not needed."""

    def __init__(self, futures: bool) -> None:
        self.futures = futures
        self.counters = dict.fromkeys(SYNC_COUNTERS, 0)
        self.synced = False
        self.previous_u = 0
        self.snapshot_index: int | None = None
        self.snapshot_id = 0
        self.waiting: list[tuple[int, int, int, int]] = []

    def snapshot(self, index: int, last_update_id: int) -> list[tuple[str, int]]:
        if self.synced:
            self.counters["snapshots_ignored"] += 1
            return []
        if self.snapshot_index is not None:
            self.counters["snapshots_unusable"] += 1
        self.snapshot_index, self.snapshot_id = index, last_update_id
        waiting, self.waiting = self.waiting, []
        actions: list[tuple[str, int]] = []
        for diff in waiting:
            actions += self.diff(*diff)
        return actions

    def diff(self, index: int, first: int, last: int, prev: int) -> list[tuple[str, int]]:
        if self.synced:
            follows = prev == self.previous_u if self.futures else first == self.previous_u + 1
            if follows:
                self.previous_u = last
                self.counters["diffs_applied"] += 1
                return [("apply", index)]
            self.counters["gaps"] += 1
            self.synced = False
            self.waiting = [(index, first, last, prev)]
            return []
        if self.snapshot_index is not None:
            lid = self.snapshot_id
            if self.futures:
                stale = last < lid
                straddles = first <= lid <= last or prev == lid
            else:
                stale = last <= lid
                straddles = first <= lid + 1 <= last
            if stale:
                self.counters["diffs_stale"] += 1
                return []
            if straddles:
                snapshot, self.snapshot_index = self.snapshot_index, None
                self.synced, self.previous_u = True, last
                self.counters["snapshots_used"] += 1
                self.counters["diffs_applied"] += 1
                return [("reset", snapshot), ("apply", index)]
            self.counters["snapshots_unusable"] += 1
            self.snapshot_index = None
        self.waiting.append((index, first, last, prev))
        return []


class TopAfterEachDiff:
    """The top ``depth`` levels after every diff applied under ``DepthSync``, from a
    ``ReferenceBook``, fed one chunk of depth messages at a time (a day need not fit in memory).

    ``feed`` takes messages and their levels as arrays, the levels of message ``i`` at
    ``[level_start[i], level_end[i])``; messages before ``start`` are ones an earlier chunk
    carried over (``carried_from``) and are not fed again. It returns (applied diff indices, bid
    ticks, bid lots, ask ticks, ask lots as ``(rows, depth)`` int64 arrays with ``ABSENT`` for
    missing levels)."""

    def __init__(self, *, futures: bool, depth: int) -> None:
        self.sync = DepthSync(futures)
        self.book = ReferenceBook()
        self.depth = depth
        self.crossed = self.resets = self.unknown = self.events = 0

    def feed(
        self, is_snapshot, first, last, prev, level_start, level_end, side_is_bid, ticks, lots,
        start: int = 0,
    ):  # fmt: skip
        import numpy as np  # local: this module is otherwise plain Python

        sides, prices, sizes = side_is_bid.tolist(), ticks.tolist(), lots.tolist()
        starts, ends = level_start.tolist(), level_end.tolist()
        snapshots, firsts, lasts, prevs = (a.tolist() for a in (is_snapshot, first, last, prev))
        sync, depth = self.sync, self.depth
        emitted: list[int] = []
        rows: list[tuple[list[Level], list[Level]]] = []
        for i in range(start, len(snapshots)):
            if snapshots[i]:
                actions = sync.snapshot(i, lasts[i])
            else:
                actions = sync.diff(i, firsts[i], lasts[i], prevs[i])
            for action, m in actions:
                if action == "reset":
                    self.unknown += self.book.delete_unknown
                    self.book, self.resets = ReferenceBook(), self.resets + 1
                book = self.book
                book.apply_rows(zip(sides[starts[m]:ends[m]], prices[starts[m]:ends[m]],
                                    sizes[starts[m]:ends[m]], strict=True))  # fmt: skip
                if action == "apply":
                    emitted.append(m)
                    rows.append(book.top(depth))
                    self.crossed += book.crossed()
        self.events += len(emitted)
        out = [np.full((len(rows), depth), ABSENT, dtype=np.int64) for _ in range(4)]
        for r, (bids, asks) in enumerate(rows):
            for k, (tick, size) in enumerate(bids):
                out[0][r, k], out[1][r, k] = tick, size
            for k, (tick, size) in enumerate(asks):
                out[2][r, k], out[3][r, k] = tick, size
        return np.asarray(emitted, dtype=np.int64), *out

    def carried_from(self, messages: int) -> int:
        """The first of the last chunk's ``messages`` the sync state still refers to (a snapshot
        or diffs waiting for one), ``messages`` if none: the next chunk must start with the
        messages from there on, and ``rebase`` shifts the state's indices to match."""
        held = [d[0] for d in self.sync.waiting]
        if self.sync.snapshot_index is not None:
            held.append(self.sync.snapshot_index)
        return min(held, default=messages)

    def rebase(self, offset: int) -> None:
        sync = self.sync
        sync.waiting = [(i - offset, *rest) for i, *rest in sync.waiting]
        if sync.snapshot_index is not None:
            sync.snapshot_index -= offset

    def rescale(self, price_factor: int, size_factor: int) -> None:
        """Express the book in finer units (a later chunk has more decimals)."""
        for side in (self.book.bids, self.book.asks):
            side.prices = [t * price_factor for t in side.prices]
            side.sizes = {t * price_factor: n * size_factor for t, n in side.sizes.items()}

    def counters(self) -> tuple[dict[str, int], dict[str, int]]:
        """(sync counters, book counters) so far."""
        book = {"events": self.events, "resets": self.resets, "crossed": self.crossed,
                "delete_unknown": self.unknown + self.book.delete_unknown}  # fmt: skip
        return dict(self.sync.counters), book
