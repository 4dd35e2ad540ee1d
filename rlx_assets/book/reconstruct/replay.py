"""The replay: one window of deltas and trades merged into the stream, applied to the book,
snapshots taken (one compiled kernel), and its reused buffers. May import ``decimals``,
``bitmaps`` and ``book.kernel``."""

from __future__ import annotations

import numpy as np
from numba import njit

from rlx_assets.book.kernel import (
    ASK_HI,
    ASK_LO,
    BASE_TICK,
    BEST_ASK,
    BEST_BID,
    BID_HI,
    BID_LO,
    N_CROSSED,
    N_DELETE_UNKNOWN,
    N_EVENTS,
    N_LEVELS,
    N_OUT_OF_RANGE,
    set_level,
)
from rlx_assets.book.reconstruct.bitmaps import (
    _lazy_zeros,
    _next_above,
    _next_below,
    _top_levels_at,
)
from rlx_assets.book.reconstruct.decimals import _I64_MIN
from rlx_assets.vendor_schemas import BOOK_DEPTH

# ctrl slots (int64), carried from window to window
C_KNOWN = 0  # the book is known (seeded and reached)
C_SEED_SEQ = 1
C_SEED_TIME = 2  # cold start: the seed row's timestamp; _I64_MIN: known from the first event
C_LAST_SEQ = 3  # last applied sequence number
C_NEXT_BOUNDARY = 4  # next 1 s snapshot time; _I64_MIN until the book is known
C_STEP = 5
C_NEXT_CHECKPOINT = 6  # next full-book checkpoint time; _I64_MIN until the book is known
C_CHECKPOINT_STEP = 7
# 8..9: unused (were the best bid/ask carried between windows: the book holds them)
C_BEFORE_SEED = 10  # delta rows with sequence <= the seed's, not applied
C_SEQ_REGRESSIONS = 11
C_CROSSED = 12  # complete updates (diffs) after which best bid >= best ask
# the first row of each gated anomaly (event time, sequence number; _I64_MIN time: none yet)
C_FIRST_REGRESSION_T = 13
C_FIRST_REGRESSION_SEQ = 14
C_FIRST_REGRESSION_AFTER = 15  # the last applied sequence number it came after
C_FIRST_OUT_OF_RANGE_T = 16
C_FIRST_OUT_OF_RANGE_SEQ = 17
C_FIRST_CROSSED_T = 18
C_FIRST_CROSSED_SEQ = 19
C_FIRST_BEFORE_SEED_T = 20
C_FIRST_BEFORE_SEED_SEQ = 21
C_CTRL_SIZE = 24

# stream output rows: int64 matrix, int8 matrix, decimal units matrix
OI_TIME, OI_RECV, OI_ID, OI_SEQ = range(4)
OB_TYPE, OB_SIDE, OB_COMPLETE, OB_BID_VALID, OB_ASK_VALID = range(5)
OD_PRICE, OD_SIZE, OD_BB_P, OD_BB_S, OD_BA_P, OD_BA_S = range(6)


@njit(cache=True, nogil=True)
def _replay(
    d_time, d_recv, d_seq, d_bid, d_tick, d_lots,
    t_time, t_recv, t_id, t_price, t_size, t_side,
    v_seq, final,
    bid_sizes, ask_sizes, bid_bits, ask_bits, state, ctrl,
    oi, ob, od, vsnap, ssnap, s_time, s_seq, pos,
):  # fmt: skip
    """Merge one window of deltas and trades (each sorted by its key) into the stream, apply the
    deltas to the book (each row an event, as ``apply_levels`` with one row per event would,
    with the occupancy bits kept alongside), write the best bid/ask after every row and take the
    snapshots where they fall, in one pass (the rows are touched once, while in cache).

    ``pos`` (in and out): the next delta, trade, stream row, vendor row and 1 s snapshot. The
    replay stops before the first row at or after the next full-book checkpoint time (the book
    then holds every row before it) and returns True: the caller takes the checkpoint, moves
    ``C_NEXT_CHECKPOINT`` on and calls again to go on from ``pos``. False: the window is done.
    (Checkpoints are not written in here: growing their arrays in this loop made it twice as
    slow.)"""
    nd = d_time.shape[0]
    nt = t_time.shape[0]
    nv = v_seq.shape[0]
    width = bid_sizes.shape[0]
    step = ctrl[C_STEP]
    known = ctrl[C_KNOWN] != 0
    i = pos[0]
    j = pos[1]
    r = pos[2]
    v_ptr = pos[3]
    n_s = pos[4]
    stopped = False
    # ctrl and state slots used per row live in locals (stored back below): they are int64
    # arrays the compiler must assume alias the output arrays, so each access would be a memory
    # round trip
    seed_seq = ctrl[C_SEED_SEQ]
    seed_time = ctrl[C_SEED_TIME]
    next_boundary = ctrl[C_NEXT_BOUNDARY]
    next_checkpoint = ctrl[C_NEXT_CHECKPOINT]
    checkpoint_step = ctrl[C_CHECKPOINT_STEP]
    last_seq = ctrl[C_LAST_SEQ]
    n_regressions = 0
    n_before_seed = 0
    n_crossed = 0
    first_reg_t = ctrl[C_FIRST_REGRESSION_T]
    first_reg_s = ctrl[C_FIRST_REGRESSION_SEQ]
    first_reg_after = ctrl[C_FIRST_REGRESSION_AFTER]
    first_oor_t = ctrl[C_FIRST_OUT_OF_RANGE_T]
    first_oor_s = ctrl[C_FIRST_OUT_OF_RANGE_SEQ]
    first_bs_t = ctrl[C_FIRST_BEFORE_SEED_T]
    first_bs_s = ctrl[C_FIRST_BEFORE_SEED_SEQ]
    first_cross_t = ctrl[C_FIRST_CROSSED_T]
    first_cross_s = ctrl[C_FIRST_CROSSED_SEQ]
    base = state[BASE_TICK]
    best_bid = state[BEST_BID]
    best_ask = state[BEST_ASK]
    bid_lo = state[BID_LO]
    bid_hi = state[BID_HI]
    ask_lo = state[ASK_LO]
    ask_hi = state[ASK_HI]
    n_applied = 0
    n_book_crossed = 0  # the kernel's own count: rows after which best bid >= best ask
    n_delete_unknown = 0
    n_out_of_range = 0
    one = np.uint64(1)
    while i < nd or j < nt:
        take_delta = j >= nt or (
            i < nd
            and (d_time[i] < t_time[j] or (d_time[i] == t_time[j] and d_recv[i] <= t_recv[j]))
        )
        t = d_time[i] if take_delta else t_time[j]
        if not known:  # cold start: known from the first applied delta or the seed's time
            known = d_seq[i] > seed_seq if take_delta else t >= seed_time
        if known:
            if next_boundary == _I64_MIN:
                base_t = seed_time if seed_time != _I64_MIN else t
                next_boundary = (base_t // step + 1) * step
                next_checkpoint = (base_t // checkpoint_step + 1) * checkpoint_step
            if next_checkpoint <= t:  # the caller takes the whole book before this row
                stopped = True
                break
            while next_boundary <= t:  # the book before this row, at each passed boundary
                _top_levels_at(
                    bid_sizes, ask_sizes, bid_bits, ask_bits, base,
                    best_bid, bid_lo, best_ask, ask_hi, ssnap, n_s,
                )  # fmt: skip
                s_time[n_s] = next_boundary
                s_seq[n_s] = last_seq
                n_s += 1
                next_boundary += step
        oi[OI_TIME, r] = t
        if take_delta:
            s = d_seq[i]
            complete = i + 1 >= nd or d_seq[i + 1] != s
            oi[OI_RECV, r] = d_recv[i]
            oi[OI_ID, r] = 0
            oi[OI_SEQ, r] = s
            ob[OB_TYPE, r] = 0
            ob[OB_SIDE, r] = 0 if d_bid[i] else 1
            ob[OB_COMPLETE, r] = complete
            od[OD_PRICE, r] = d_tick[i]
            od[OD_SIZE, r] = d_lots[i]
            if s > seed_seq and s < last_seq:
                # older than a delta already applied: refused (applying it would bring back a
                # stale level), counted and gated by `reconstruction_anomalies`
                if first_reg_t == _I64_MIN:
                    first_reg_t, first_reg_s, first_reg_after = t, s, last_seq
                n_regressions += 1
            elif s > seed_seq:
                while v_ptr < nv and v_seq[v_ptr] < s:  # vendor rows: the book before this diff
                    _top_levels_at(
                        bid_sizes, ask_sizes, bid_bits, ask_bits, base,
                        best_bid, bid_lo, best_ask, ask_hi, vsnap, v_ptr,
                    )  # fmt: skip
                    v_ptr += 1
                k = d_tick[i] - base
                if k < 0 or k >= width:
                    if first_oor_t == _I64_MIN:
                        first_oor_t, first_oor_s = t, s
                    n_out_of_range += 1  # ignored, as apply_levels ignores it
                elif d_bid[i]:
                    best_bid, bid_lo, bid_hi, deleted, unknown = set_level(
                        bid_sizes, k, d_lots[i], best_bid, bid_lo, bid_hi, True
                    )
                    n_delete_unknown += unknown
                    bit = one << np.uint64(k & 63)
                    if d_lots[i] != 0:
                        bid_bits[k >> 6] |= bit
                    else:
                        bid_bits[k >> 6] &= ~bit
                    if deleted:
                        best_bid = _next_below(bid_bits, best_bid, bid_lo)
                else:
                    best_ask, ask_lo, ask_hi, deleted, unknown = set_level(
                        ask_sizes, k, d_lots[i], best_ask, ask_lo, ask_hi, False
                    )
                    n_delete_unknown += unknown
                    bit = one << np.uint64(k & 63)
                    if d_lots[i] != 0:
                        ask_bits[k >> 6] |= bit
                    else:
                        ask_bits[k >> 6] &= ~bit
                    if deleted:
                        best_ask = _next_above(ask_bits, best_ask, ask_hi)
                n_applied += 1
                if best_bid >= 0 and best_ask >= 0 and best_bid >= best_ask:
                    n_book_crossed += 1
                    if complete:
                        if n_crossed == 0 and ctrl[C_CROSSED] == 0:
                            first_cross_t, first_cross_s = t, s
                        n_crossed += 1
                last_seq = s
            else:
                if first_bs_t == _I64_MIN:
                    first_bs_t, first_bs_s = t, s
                n_before_seed += 1
                if s == seed_seq and complete:
                    known = True  # the vendor row seeding the book is the state after this diff
            i += 1
        else:
            oi[OI_RECV, r] = t_recv[j]
            oi[OI_ID, r] = t_id[j]
            oi[OI_SEQ, r] = 0
            ob[OB_TYPE, r] = 1
            ob[OB_SIDE, r] = t_side[j]
            ob[OB_COMPLETE, r] = 1
            od[OD_PRICE, r] = t_price[j]
            od[OD_SIZE, r] = t_size[j]
            j += 1
        # the book after the row (null until it is known)
        ob[OB_BID_VALID, r] = known and best_bid >= 0
        ob[OB_ASK_VALID, r] = known and best_ask >= 0
        od[OD_BB_P, r] = best_bid + base if best_bid >= 0 else -1
        od[OD_BB_S, r] = bid_sizes[best_bid] if best_bid >= 0 else 0
        od[OD_BA_P, r] = best_ask + base if best_ask >= 0 else -1
        od[OD_BA_S, r] = ask_sizes[best_ask] if best_ask >= 0 else 0
        r += 1
    if final and not stopped:
        while v_ptr < nv:
            _top_levels_at(
                bid_sizes, ask_sizes, bid_bits, ask_bits, base,
                best_bid, bid_lo, best_ask, ask_hi, vsnap, v_ptr,
            )  # fmt: skip
            v_ptr += 1
        if known and next_boundary != _I64_MIN:
            _top_levels_at(
                bid_sizes, ask_sizes, bid_bits, ask_bits, base,
                best_bid, bid_lo, best_ask, ask_hi, ssnap, n_s,
            )  # fmt: skip
            s_time[n_s] = next_boundary
            s_seq[n_s] = last_seq
            n_s += 1
    pos[0] = i
    pos[1] = j
    pos[2] = r
    pos[3] = v_ptr
    pos[4] = n_s
    ctrl[C_KNOWN] = 1 if known else 0
    ctrl[C_NEXT_BOUNDARY] = next_boundary
    ctrl[C_NEXT_CHECKPOINT] = next_checkpoint
    ctrl[C_LAST_SEQ] = last_seq
    ctrl[C_SEQ_REGRESSIONS] += n_regressions
    ctrl[C_BEFORE_SEED] += n_before_seed
    ctrl[C_CROSSED] += n_crossed
    ctrl[C_FIRST_REGRESSION_T] = first_reg_t
    ctrl[C_FIRST_REGRESSION_SEQ] = first_reg_s
    ctrl[C_FIRST_REGRESSION_AFTER] = first_reg_after
    ctrl[C_FIRST_OUT_OF_RANGE_T] = first_oor_t
    ctrl[C_FIRST_OUT_OF_RANGE_SEQ] = first_oor_s
    ctrl[C_FIRST_BEFORE_SEED_T] = first_bs_t
    ctrl[C_FIRST_BEFORE_SEED_SEQ] = first_bs_s
    ctrl[C_FIRST_CROSSED_T] = first_cross_t
    ctrl[C_FIRST_CROSSED_SEQ] = first_cross_s
    state[BEST_BID] = best_bid
    state[BEST_ASK] = best_ask
    state[BID_LO] = bid_lo
    state[BID_HI] = bid_hi
    state[ASK_LO] = ask_lo
    state[ASK_HI] = ask_hi
    state[N_EVENTS] += n_applied
    state[N_LEVELS] += n_applied
    state[N_CROSSED] += n_book_crossed
    state[N_DELETE_UNKNOWN] += n_delete_unknown
    state[N_OUT_OF_RANGE] += n_out_of_range
    return stopped


def _levels_major(snap: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` snapshots (4, 20, n) of a buffer written by ``_top_levels``: a view whose
    price/size columns ``[q, level]`` are contiguous."""
    return snap[:, :, :n]


class _Buffers:
    """Scratch and output arrays of ``_replay``, grown on demand and reused across windows."""

    def __init__(self, rows: int) -> None:
        self.rows = self.vendor = self.seconds = 0
        self.ensure(rows, 1024, 1024)

    def ensure(self, rows: int, vendor: int, seconds: int) -> None:
        if rows > self.rows:
            n = self.rows = max(rows, self.rows * 5 // 4, 1024)
            self.oi = _lazy_zeros(4 * n).reshape(4, n)
            self.ob = _lazy_zeros(5 * n, np.int8).reshape(5, n)
            self.od = _lazy_zeros(6 * n).reshape(6, n)
        if vendor > self.vendor:
            self.vendor = max(vendor, self.vendor * 5 // 4)
            self.vsnap = np.empty((4, BOOK_DEPTH, self.vendor), dtype=np.int64)
        if seconds > self.seconds:
            self.seconds = max(seconds, self.seconds * 5 // 4)
            self.ssnap = np.empty((4, BOOK_DEPTH, self.seconds), dtype=np.int64)
            self.s_time = np.empty(self.seconds, dtype=np.int64)
            self.s_seq = np.empty(self.seconds, dtype=np.int64)
