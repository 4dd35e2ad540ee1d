"""Memory and the occupancy bitmaps: the dense book on lazily mapped pages, one bit per tick
and side, the top-20 walk and the end book's levels. May import ``book.kernel`` only."""

from __future__ import annotations

import mmap

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from rlx_assets.book.kernel import (
    ASK_HI,
    ASK_LO,
    BASE_TICK,
    BEST_ASK,
    BEST_BID,
    BID_HI,
    BID_LO,
    DenseBook,
    new_state,
)


def _lazy_zeros(n: int, dtype=np.int64) -> np.ndarray:
    """Zeroed array on an anonymous mapping of small pages: untouched pages cost nothing, and
    first touches do not stall on huge-page compaction (numpy advises huge pages for large
    arrays, which makes sparse first touches slow on some machines)."""
    nbytes = max(int(n) * np.dtype(dtype).itemsize, 1)
    buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(buffer, dtype=dtype, count=int(n))


class _Book(DenseBook):
    """``DenseBook`` on lazily mapped arrays, plus one occupancy bit per tick and side so that
    the top-20 walk skips empty ticks 64 at a time (``_top_levels``)."""

    def __init__(self, base_tick: int, width: int):
        if width <= 0:
            raise ValueError(f"book width must be positive, got {width}")
        self.base_tick = int(base_tick)
        self.bid_sizes = _lazy_zeros(width)
        self.ask_sizes = _lazy_zeros(width)
        self.state = new_state(self.base_tick)
        words = width // 64 + 1
        self.bid_bits = _lazy_zeros(words, np.uint64)
        self.ask_bits = _lazy_zeros(words, np.uint64)

    def apply(self, sides, ticks, sizes, event_ends, event_flags=None, depth=20, out=None):
        top = super().apply(sides, ticks, sizes, event_ends, event_flags, depth, out)
        _mark(self.bid_bits, self.ask_bits, self.state, self.bid_sizes.size, sides, ticks, sizes)
        return top


@intrinsic
def _ctlz(typingctx, x):
    """Leading zero bits of a non-zero uint64 (LLVM ctlz)."""

    def codegen(context, builder, signature, args):
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 1))

    return types.uint64(types.uint64), codegen


@intrinsic
def _cttz(typingctx, x):
    """Trailing zero bits of a non-zero uint64 (LLVM cttz)."""

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return types.uint64(types.uint64), codegen


@njit(cache=True, nogil=True)
def _mark(bid_bits, ask_bits, state, width, sides, ticks, lots):
    """Replay rows (as ``apply_levels`` applied them) onto the occupancy bits: a level's bit
    ends up set iff its last size is non-zero, i.e. iff the book holds it."""
    base = state[BASE_TICK]
    one = np.uint64(1)
    for j in range(ticks.shape[0]):
        i = ticks[j] - base
        if i < 0 or i >= width:
            continue
        bits = bid_bits if sides[j] else ask_bits
        bit = one << np.uint64(i & 63)
        if lots[j] != 0:
            bits[i >> 6] |= bit
        else:
            bits[i >> 6] &= ~bit


@njit(cache=True, nogil=True)
def _next_below(bits, i, lo):
    """Highest set index <= i and >= lo, -1 when none."""
    if i < lo:
        return -1
    w = i >> 6
    word = bits[w] & ((np.uint64(2) << np.uint64(i & 63)) - np.uint64(1))
    stop = lo >> 6
    while word == 0:
        w -= 1
        if w < stop:
            return -1
        word = bits[w]
    found = (w << 6) + 63 - np.int64(_ctlz(word))
    return found if found >= lo else -1


@njit(cache=True, nogil=True)
def _next_above(bits, i, hi):
    """Lowest set index >= i and <= hi, -1 when none."""
    if i > hi or i < 0:
        return -1
    w = i >> 6
    word = bits[w] & ~((np.uint64(1) << np.uint64(i & 63)) - np.uint64(1))
    stop = hi >> 6
    while word == 0:
        w += 1
        if w > stop:
            return -1
        word = bits[w]
    found = (w << 6) + np.int64(_cttz(word))
    return found if found <= hi else -1


@njit(cache=True, nogil=True)
def _top_levels(bid_sizes, ask_sizes, bid_bits, ask_bits, state, out, row):
    """The book's top ``out.shape[1]`` levels into ``out[0..3, :, row]``: bid ticks, bid lots,
    ask ticks, ask lots, best first; tick -1 / lots 0 = no level. (Level-major: a window's
    snapshots ``out[q, level, :n]`` are the output columns as they are, without a transpose.)"""
    _top_levels_at(
        bid_sizes, ask_sizes, bid_bits, ask_bits, state[BASE_TICK],
        state[BEST_BID], state[BID_LO], state[BEST_ASK], state[ASK_HI], out, row,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def _top_levels_at(
    bid_sizes, ask_sizes, bid_bits, ask_bits, base, best_bid, bid_lo, best_ask, ask_hi, out, row
):
    """``_top_levels`` with the state's slots given (a caller holding them in locals)."""
    depth = out.shape[1]
    k = 0
    i = best_bid
    while k < depth:
        i = _next_below(bid_bits, i, bid_lo)
        if i < 0:
            break
        out[0, k, row] = i + base
        out[1, k, row] = bid_sizes[i]
        k += 1
        i -= 1
    while k < depth:
        out[0, k, row] = -1
        out[1, k, row] = 0
        k += 1
    k = 0
    i = best_ask
    while k < depth:
        i = _next_above(ask_bits, i, ask_hi)
        if i < 0:
            break
        out[2, k, row] = i + base
        out[3, k, row] = ask_sizes[i]
        k += 1
        i += 1
    while k < depth:
        out[2, k, row] = -1
        out[3, k, row] = 0
        k += 1


def end_book_levels(dense: DenseBook) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bid ticks best first, bid lots, ask ticks best first, ask lots) of the whole book."""
    s = dense.state
    bits = (dense.bid_bits, dense.ask_bits) if isinstance(dense, _Book) else (None, None)
    out: list[np.ndarray] = []
    for sizes, side_bits, lo, hi, best_first in (
        (dense.bid_sizes, bits[0], s[BID_LO], s[BID_HI], -1),
        (dense.ask_sizes, bits[1], s[ASK_LO], s[ASK_HI], 1),
    ):
        if lo > hi:
            out += [np.zeros(0, np.int64), np.zeros(0, np.int64)]
            continue
        if side_bits is None:
            idx = np.flatnonzero(sizes[lo : hi + 1]) + lo
        else:  # the occupancy bits: 1/64 of the memory (and no untouched page mapped in)
            idx = _set_bits(side_bits, int(lo), int(hi))
        idx = idx[::best_first]
        out += [idx + dense.base_tick, sizes[idx]]
    return out[0], out[1], out[2], out[3]


@njit(cache=True, nogil=True)
def _set_bits(bits, lo, hi):
    """Indices in ``[lo, hi]`` whose bit is set, ascending."""
    n = 0
    for w in range(lo >> 6, (hi >> 6) + 1):
        word = bits[w]
        while word:
            i = (w << 6) + np.int64(_cttz(word))
            if lo <= i <= hi:
                n += 1
            word &= word - np.uint64(1)
    out = np.empty(n, dtype=np.int64)
    n = 0
    for w in range(lo >> 6, (hi >> 6) + 1):
        word = bits[w]
        while word:
            i = (w << 6) + np.int64(_cttz(word))
            if lo <= i <= hi:
                out[n] = i
                n += 1
            word &= word - np.uint64(1)
    return out
