"""The compiled order-book kernel: an L2 book over dense integer-tick arrays.

A book side is an int64 array of sizes (in lots) indexed by ``tick - state[BASE_TICK]``; 0 = no
level. The caller owns the arrays and the ``state`` vector and reuses them across calls (fresh
memory is slow): ``DenseBook`` does that bookkeeping. Input is columnar: one row per price level
(``sides``, ``ticks``, ``sizes``) grouped into events by ``event_ends`` (exclusive end offsets),
one flag byte per event:

* ``FLAG_RESET``: clear the book before applying the event (a full snapshot follows);
* ``FLAG_EMIT``: write the top-N levels after the event into the next output row.

Anomalies are counted in ``state``, never raised: a crossed book after an event, the delete of
a level the book does not hold, a level outside the array. Binance's diff-depth sync rule
(which diffs to apply, when a snapshot re-syncs) is ``plan_depth_sync``; it yields the event
order and flags for ``apply_levels``. Later consumers (reconstruction from ``book_delta_v2`` rows)
call ``apply_levels`` directly with their own event boundaries.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

# --- state vector slots (int64) ---------------------------------------------------------------
BEST_BID = 0  # index of the best bid, -1 when the bid side is empty
BEST_ASK = 1  # index of the best ask, -1 when the ask side is empty
BID_LO = 2  # lowest/highest index set on the bid side since the last reset (bounds scans and
BID_HI = 3  # resets); lo > hi when nothing was set
ASK_LO = 4
ASK_HI = 5
N_EVENTS = 6  # events applied
N_LEVELS = 7  # level rows applied
N_CROSSED = 8  # events after which best bid >= best ask
N_DELETE_UNKNOWN = 9  # size-0 rows for a level the book did not hold
N_OUT_OF_RANGE = 10  # rows whose index falls outside the arrays (ignored)
N_RESETS = 11
BASE_TICK = 12  # tick of array index 0
STATE_SIZE = 16

FLAG_EMIT = np.uint8(1)
FLAG_RESET = np.uint8(2)

_EMPTY_LO = np.int64(2**62)


def new_state(base_tick: int = 0) -> np.ndarray:
    state = np.zeros(STATE_SIZE, dtype=np.int64)
    state[BASE_TICK] = base_tick
    _reset_state(state)
    return state


@njit(cache=True, nogil=True)
def _reset_state(state):
    state[BEST_BID] = -1
    state[BEST_ASK] = -1
    state[BID_LO] = _EMPTY_LO
    state[BID_HI] = -1
    state[ASK_LO] = _EMPTY_LO
    state[ASK_HI] = -1


@njit(cache=True, nogil=True)
def _clear(bid_sizes, ask_sizes, state):
    if state[BID_LO] <= state[BID_HI]:
        bid_sizes[state[BID_LO] : state[BID_HI] + 1] = 0
    if state[ASK_LO] <= state[ASK_HI]:
        ask_sizes[state[ASK_LO] : state[ASK_HI] + 1] = 0
    _reset_state(state)


@njit(cache=True, nogil=True, inline="always")
def set_level(sizes, i, size, best, lo, hi, is_bid):
    """One level row on one side (index ``i`` in range): its new size, and the side's best
    index and bounds after it. Returns (best, lo, hi, the best level was deleted (the caller
    rescans), a level the book did not hold was deleted)."""
    if size == 0:
        if sizes[i] == 0:
            return best, lo, hi, False, True
        sizes[i] = 0
        return best, lo, hi, i == best, False
    sizes[i] = size
    if is_bid:
        if i > best:
            best = i
    elif best < 0 or i < best:
        best = i
    if i < lo:
        lo = i
    if i > hi:
        hi = i
    return best, lo, hi, False, False


@njit(cache=True, nogil=True)
def apply_levels(
    bid_sizes,
    ask_sizes,
    state,
    sides,
    ticks,
    sizes,
    event_ends,
    event_flags,
    out_bid_tick,
    out_bid_size,
    out_ask_tick,
    out_ask_size,
):
    """Apply events to the book; after each ``FLAG_EMIT`` event write the top-N levels (N =
    ``out_bid_tick.shape[1]``) into the next output row: ticks (-1 = no level) and sizes
    (0 = no level), best first. Returns the number of output rows written."""
    # The state vector lives in locals for the whole call (an int64 array the compiler must
    # assume aliases the book's arrays, so every access would be a memory round trip) and is
    # stored back before a reset and at the end.
    n = bid_sizes.shape[0]
    base = state[BASE_TICK]
    depth = out_bid_tick.shape[1]
    best_bid = state[BEST_BID]
    best_ask = state[BEST_ASK]
    bid_lo = state[BID_LO]
    bid_hi = state[BID_HI]
    ask_lo = state[ASK_LO]
    ask_hi = state[ASK_HI]
    n_crossed = 0
    n_delete_unknown = 0
    n_out_of_range = 0
    row = 0
    start = 0
    n_events = event_ends.shape[0]
    for e in range(n_events):
        end = event_ends[e]
        flags = event_flags[e]
        if flags & FLAG_RESET:
            state[BID_LO] = bid_lo
            state[BID_HI] = bid_hi
            state[ASK_LO] = ask_lo
            state[ASK_HI] = ask_hi
            _clear(bid_sizes, ask_sizes, state)
            state[N_RESETS] += 1
            best_bid = state[BEST_BID]
            best_ask = state[BEST_ASK]
            bid_lo = state[BID_LO]
            bid_hi = state[BID_HI]
            ask_lo = state[ASK_LO]
            ask_hi = state[ASK_HI]
        rescan_bid = False
        rescan_ask = False
        for j in range(start, end):
            i = ticks[j] - base
            if i < 0 or i >= n:
                n_out_of_range += 1
                continue
            if sides[j]:
                best_bid, bid_lo, bid_hi, deleted, unknown = set_level(
                    bid_sizes, i, sizes[j], best_bid, bid_lo, bid_hi, True
                )
                rescan_bid |= deleted
            else:
                best_ask, ask_lo, ask_hi, deleted, unknown = set_level(
                    ask_sizes, i, sizes[j], best_ask, ask_lo, ask_hi, False
                )
                rescan_ask |= deleted
            n_delete_unknown += unknown
        # Every level is <= best_bid (>= best_ask), so one scan from the old best finds the new.
        if rescan_bid:
            while best_bid >= bid_lo and bid_sizes[best_bid] == 0:
                best_bid -= 1
            if best_bid < bid_lo:
                best_bid = -1
        if rescan_ask:
            while best_ask <= ask_hi and ask_sizes[best_ask] == 0:
                best_ask += 1
            if best_ask > ask_hi:
                best_ask = -1
        if best_bid >= 0 and best_ask >= 0 and best_bid >= best_ask:
            n_crossed += 1
        if flags & FLAG_EMIT:
            # depth 1 (the best bid/ask after every row): the walk below reduces to the best
            # levels, which are held (size != 0) or -1; anything else takes the walk
            bid_size = bid_sizes[best_bid] if best_bid >= 0 else 0
            ask_size = ask_sizes[best_ask] if best_ask >= 0 else 0
            if depth == 1 and (bid_size != 0 or best_bid < 0) and (ask_size != 0 or best_ask < 0):
                out_bid_tick[row, 0] = best_bid + base if best_bid >= 0 else -1
                out_bid_size[row, 0] = bid_size
                out_ask_tick[row, 0] = best_ask + base if best_ask >= 0 else -1
                out_ask_size[row, 0] = ask_size
                row += 1
                start = end
                continue
            k = 0
            i = best_bid
            while k < depth and i >= 0 and i >= bid_lo:
                if bid_sizes[i] != 0:
                    out_bid_tick[row, k] = i + base
                    out_bid_size[row, k] = bid_sizes[i]
                    k += 1
                i -= 1
            while k < depth:
                out_bid_tick[row, k] = -1
                out_bid_size[row, k] = 0
                k += 1
            k = 0
            i = best_ask
            while k < depth and i >= 0 and i <= ask_hi:
                if ask_sizes[i] != 0:
                    out_ask_tick[row, k] = i + base
                    out_ask_size[row, k] = ask_sizes[i]
                    k += 1
                i += 1
            while k < depth:
                out_ask_tick[row, k] = -1
                out_ask_size[row, k] = 0
                k += 1
            row += 1
        start = end
    state[BEST_BID] = best_bid
    state[BEST_ASK] = best_ask
    state[BID_LO] = bid_lo
    state[BID_HI] = bid_hi
    state[ASK_LO] = ask_lo
    state[ASK_HI] = ask_hi
    state[N_EVENTS] += n_events
    if n_events:  # the events' rows are 0 .. the last end
        state[N_LEVELS] += event_ends[n_events - 1]
    state[N_CROSSED] += n_crossed
    state[N_DELETE_UNKNOWN] += n_delete_unknown
    state[N_OUT_OF_RANGE] += n_out_of_range
    return row


class TopOfBook(NamedTuple):
    """Top-N levels after each emitted event, in integer ticks/lots (tick -1 = no level)."""

    bid_ticks: np.ndarray  # (rows, N) int64
    bid_sizes: np.ndarray
    ask_ticks: np.ndarray
    ask_sizes: np.ndarray

    @classmethod
    def empty(cls, rows: int, depth: int) -> TopOfBook:
        return cls(*(np.empty((rows, depth), dtype=np.int64) for _ in range(4)))

    def head(self, rows: int) -> TopOfBook:
        return TopOfBook(*(a[:rows] for a in self))

    @property
    def rows(self) -> int:
        return self.bid_ticks.shape[0]


class DenseBook:
    """Reusable buffers for ``apply_levels`` over ticks ``[base_tick, base_tick + width)``."""

    def __init__(self, base_tick: int, width: int):
        if width <= 0:
            raise ValueError(f"book width must be positive, got {width}")
        self.base_tick = int(base_tick)
        self.bid_sizes = np.zeros(width, dtype=np.int64)
        self.ask_sizes = np.zeros(width, dtype=np.int64)
        self.state = new_state(self.base_tick)

    @classmethod
    def covering(cls, ticks: np.ndarray, max_width: int = 1 << 28) -> DenseBook:
        """A book wide enough for every tick in ``ticks``."""
        if ticks.size == 0:
            return cls(0, 1)
        lo, hi = int(ticks.min()), int(ticks.max())
        width = hi - lo + 1
        if width > max_width:
            raise ValueError(
                f"price range {lo}..{hi} spans {width} ticks, more than the dense book's "
                f"limit of {max_width}"
            )
        return cls(lo, width)

    @property
    def best_bid(self) -> int:
        """Best bid tick, -1 when the bid side is empty."""
        i = int(self.state[BEST_BID])
        return i + self.base_tick if i >= 0 else -1

    @property
    def best_ask(self) -> int:
        i = int(self.state[BEST_ASK])
        return i + self.base_tick if i >= 0 else -1

    def counters(self) -> dict[str, int]:
        s = self.state
        return {
            "events": int(s[N_EVENTS]),
            "levels": int(s[N_LEVELS]),
            "resets": int(s[N_RESETS]),
            "crossed": int(s[N_CROSSED]),
            "delete_unknown": int(s[N_DELETE_UNKNOWN]),
            "out_of_range": int(s[N_OUT_OF_RANGE]),
        }

    def apply(
        self,
        sides: np.ndarray,
        ticks: np.ndarray,
        sizes: np.ndarray,
        event_ends: np.ndarray,
        event_flags: np.ndarray | None = None,
        depth: int = 20,
        out: TopOfBook | None = None,
    ) -> TopOfBook:
        """Apply events given in absolute ticks; return the top ``depth`` levels after every
        ``FLAG_EMIT`` event (every event emits when ``event_flags`` is None). Pass ``out`` (rows
        >= emitted events) to reuse output buffers across chunks; a view of it is returned."""
        event_ends = np.ascontiguousarray(event_ends, dtype=np.int64)
        if event_flags is None:
            event_flags = np.full(event_ends.shape[0], FLAG_EMIT, dtype=np.uint8)
        event_flags = np.ascontiguousarray(event_flags, dtype=np.uint8)
        n_out = int(np.count_nonzero(event_flags & FLAG_EMIT))
        if out is None:
            out = TopOfBook.empty(n_out, depth)
        elif out.rows < n_out:
            raise ValueError(f"output buffers hold {out.rows} rows, {n_out} needed")
        rows = apply_levels(
            self.bid_sizes,
            self.ask_sizes,
            self.state,
            np.ascontiguousarray(sides, dtype=np.bool_),
            np.ascontiguousarray(ticks, dtype=np.int64),
            np.ascontiguousarray(sizes, dtype=np.int64),
            event_ends,
            event_flags,
            *out,
        )
        return out.head(rows)


# --- Binance diff-depth synchronisation ---------------------------------------------------------
SYNC_GAPS = 0  # continuity breaks while in sync
SYNC_SNAPSHOTS_USED = 1
SYNC_SNAPSHOTS_IGNORED = 2  # arrived while in sync
SYNC_SNAPSHOTS_UNUSABLE = 3  # older than the diffs around them, or superseded before use
SYNC_DIFFS_APPLIED = 4
SYNC_DIFFS_STALE = 5  # dropped because already contained in the snapshot
SYNC_COUNTERS = ("gaps", "snapshots_used", "snapshots_ignored", "snapshots_unusable",
                 "diffs_applied", "diffs_stale")  # fmt: skip

# scratch slots after the counters
_SYNCED = 8
_PREV_U = 9
_SNAP = 10
_LID = 11
_NBUF = 12
_NOUT = 13


@njit(cache=True, nogil=True)
def _feed_diff(d, first_id, last_id, prev_id, futures, st, buf, order, flags):
    first = first_id[d]
    last = last_id[d]
    if st[_SYNCED]:
        continuous = prev_id[d] == st[_PREV_U] if futures else first == st[_PREV_U] + 1
        if continuous:
            order[st[_NOUT]] = d
            flags[st[_NOUT]] = FLAG_EMIT
            st[_NOUT] += 1
            st[_PREV_U] = last
            st[SYNC_DIFFS_APPLIED] += 1
        else:
            st[SYNC_GAPS] += 1
            st[_SYNCED] = 0
            buf[0] = d
            st[_NBUF] = 1
        return
    if st[_SNAP] >= 0:
        lid = st[_LID]
        if futures:
            stale = last < lid
            # Binance: U <= lastUpdateId <= u. A diff whose pu is the snapshot's id follows it
            # exactly, which is just as sound (possible with 0 ms depth streams).
            straddles = (first <= lid and last >= lid) or prev_id[d] == lid
        else:
            stale = last <= lid
            straddles = first <= lid + 1 and last >= lid + 1
        if stale:
            st[SYNC_DIFFS_STALE] += 1
            return
        if straddles:
            order[st[_NOUT]] = st[_SNAP]
            flags[st[_NOUT]] = FLAG_RESET
            order[st[_NOUT] + 1] = d
            flags[st[_NOUT] + 1] = FLAG_EMIT
            st[_NOUT] += 2
            st[_SYNCED] = 1
            st[_PREV_U] = last
            st[_SNAP] = -1
            st[SYNC_SNAPSHOTS_USED] += 1
            st[SYNC_DIFFS_APPLIED] += 1
            return
        st[SYNC_SNAPSHOTS_UNUSABLE] += 1
        st[_SNAP] = -1
    buf[st[_NBUF]] = d
    st[_NBUF] += 1


@njit(cache=True, nogil=True)
def plan_depth_sync(is_snapshot, first_id, last_id, prev_id, futures):
    """Binance's rule for keeping a local book from a REST snapshot plus diff-depth events.

    Messages in receive order: diffs (``U`` = first_id, ``u`` = last_id, ``pu`` = prev_id, -1 on
    spot) and snapshots (``lastUpdateId`` in last_id). Diffs received while out of sync are
    buffered and replayed against the next snapshot (drop ``u <= lastUpdateId``; the first kept
    diff must straddle it: spot ``U <= lastUpdateId+1 <= u``, futures ``U <= lastUpdateId <= u``);
    in sync, spot needs ``U == previous u + 1`` and futures ``pu == previous u``. A break stops
    the book until a later snapshot re-syncs. Snapshots arriving in sync are ignored.

    Returns (order, flags, counters): message indices to apply, in application order, with
    ``FLAG_RESET`` for the snapshot that (re)starts the book and ``FLAG_EMIT`` for applied
    diffs; counters indexed by the ``SYNC_*`` constants."""
    n = is_snapshot.shape[0]
    st = np.zeros(16, dtype=np.int64)
    st[_SNAP] = -1
    buf = np.empty(n, dtype=np.int64)
    order = np.empty(n, dtype=np.int64)
    flags = np.zeros(n, dtype=np.uint8)
    for i in range(n):
        if not is_snapshot[i]:
            _feed_diff(i, first_id, last_id, prev_id, futures, st, buf, order, flags)
            continue
        if st[_SYNCED]:
            st[SYNC_SNAPSHOTS_IGNORED] += 1
            continue
        if st[_SNAP] >= 0:
            st[SYNC_SNAPSHOTS_UNUSABLE] += 1
        st[_SNAP] = i
        st[_LID] = last_id[i]
        replay = buf[: st[_NBUF]].copy()
        st[_NBUF] = 0
        for d in replay:
            _feed_diff(d, first_id, last_id, prev_id, futures, st, buf, order, flags)
    n_out = st[_NOUT]
    return order[:n_out].copy(), flags[:n_out].copy(), st[:6].copy()
