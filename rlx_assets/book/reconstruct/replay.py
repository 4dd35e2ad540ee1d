"""The replay: one window of deltas and trades merged into the stream, applied to the book,
snapshots taken (one compiled kernel), and its reused buffers. May import ``decimals``,
``bitmaps`` and ``book.kernel``."""

from __future__ import annotations

import numpy as np
from numba import njit

from rlx_assets.book.kernel import BASE_TICK, FLAG_EMIT, apply_levels
from rlx_assets.book.reconstruct.bitmaps import _lazy_zeros, _mark, _top_levels
from rlx_assets.book.reconstruct.decimals import _I64_MIN
from rlx_assets.vendor_schemas import BOOK_DEPTH

# ctrl slots (int64), carried from window to window
C_KNOWN = 0  # the book is known (seeded and reached)
C_SEED_SEQ = 1
C_SEED_TIME = 2  # cold start: the seed row's timestamp; _I64_MIN: known from the first event
C_LAST_SEQ = 3  # last applied sequence number
C_NEXT_BOUNDARY = 4  # next 1 s snapshot time; _I64_MIN until the book is known
C_STEP = 5
C_BB_T = 6  # best bid tick / lots, best ask tick / lots after the last event (-1: none)
C_BB_S = 7
C_BA_T = 8
C_BA_S = 9
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
    ap_bid, ap_tick, ap_lots, ap_ends, ap_flags, ap_bt, ap_bs, ap_at, ap_as,
    row_ap, trig_pos, trig_kind, trig_ref,
    oi, ob, od, vsnap, ssnap, s_time, s_seq,
):  # fmt: skip
    """Merge one window of deltas and trades (each sorted by its key) into the stream, apply the
    deltas to the book and take the snapshots. Returns (stream rows, vendor rows consumed,
    1 s snapshots)."""
    nd = d_time.shape[0]
    nt = t_time.shape[0]
    nv = v_seq.shape[0]
    width = bid_sizes.shape[0]
    step = ctrl[C_STEP]
    known = ctrl[C_KNOWN] != 0
    i = 0
    j = 0
    r = 0
    n_ap = 0
    n_trig = 0
    v_ptr = 0
    n_s = 0
    # ctrl slots used per row live in locals (stored back below): ctrl is an int64 array the
    # compiler must assume aliases the output arrays, so each access would be a memory round trip
    seed_seq = ctrl[C_SEED_SEQ]
    seed_time = ctrl[C_SEED_TIME]
    next_boundary = ctrl[C_NEXT_BOUNDARY]
    last_seq = ctrl[C_LAST_SEQ]
    n_regressions = 0
    n_before_seed = 0
    base_tick = state[BASE_TICK]
    first_reg_t = ctrl[C_FIRST_REGRESSION_T]
    first_reg_s = ctrl[C_FIRST_REGRESSION_SEQ]
    first_reg_after = ctrl[C_FIRST_REGRESSION_AFTER]
    first_oor_t = ctrl[C_FIRST_OUT_OF_RANGE_T]
    first_oor_s = ctrl[C_FIRST_OUT_OF_RANGE_SEQ]
    first_bs_t = ctrl[C_FIRST_BEFORE_SEED_T]
    first_bs_s = ctrl[C_FIRST_BEFORE_SEED_SEQ]
    # phase A: merge order, stream columns, which rows are applied, where snapshots fall
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
                base = seed_time if seed_time != _I64_MIN else t
                next_boundary = (base // step + 1) * step
            while next_boundary <= t:
                trig_pos[n_trig] = n_ap
                trig_kind[n_trig] = 1
                trig_ref[n_trig] = n_s
                n_trig += 1
                s_time[n_s] = next_boundary
                s_seq[n_s] = last_seq
                n_s += 1
                next_boundary += step
        oi[OI_TIME, r] = t
        if take_delta:
            s = d_seq[i]
            oi[OI_RECV, r] = d_recv[i]
            oi[OI_ID, r] = 0
            oi[OI_SEQ, r] = s
            ob[OB_TYPE, r] = 0
            ob[OB_SIDE, r] = 0 if d_bid[i] else 1
            ob[OB_COMPLETE, r] = i + 1 >= nd or d_seq[i + 1] != s
            od[OD_PRICE, r] = d_tick[i]
            od[OD_SIZE, r] = d_lots[i]
            if s > seed_seq and s < last_seq:
                # older than a delta already applied: refused (applying it would bring back a
                # stale level), counted and gated by `reconstruction_anomalies`
                if first_reg_t == _I64_MIN:
                    first_reg_t, first_reg_s, first_reg_after = t, s, last_seq
                n_regressions += 1
                row_ap[r] = -1
            elif s > seed_seq:
                k = d_tick[i] - base_tick
                if (k < 0 or k >= width) and first_oor_t == _I64_MIN:
                    first_oor_t, first_oor_s = t, s  # the kernel ignores it (out_of_range)
                while v_ptr < nv and v_seq[v_ptr] < s:
                    trig_pos[n_trig] = n_ap
                    trig_kind[n_trig] = 0
                    trig_ref[n_trig] = v_ptr
                    n_trig += 1
                    v_ptr += 1
                ap_bid[n_ap] = d_bid[i]
                ap_tick[n_ap] = d_tick[i]
                ap_lots[n_ap] = d_lots[i]
                row_ap[r] = n_ap
                n_ap += 1
                last_seq = s
            else:
                if first_bs_t == _I64_MIN:
                    first_bs_t, first_bs_s = t, s
                n_before_seed += 1
                row_ap[r] = -1
                if s == seed_seq and ob[OB_COMPLETE, r]:
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
            row_ap[r] = -1
            j += 1
        ob[OB_BID_VALID, r] = known  # phase C turns this into the validity of the best bid/ask
        r += 1
    ctrl[C_NEXT_BOUNDARY] = next_boundary
    ctrl[C_LAST_SEQ] = last_seq
    ctrl[C_SEQ_REGRESSIONS] += n_regressions
    ctrl[C_BEFORE_SEED] += n_before_seed
    ctrl[C_FIRST_REGRESSION_T] = first_reg_t
    ctrl[C_FIRST_REGRESSION_SEQ] = first_reg_s
    ctrl[C_FIRST_REGRESSION_AFTER] = first_reg_after
    ctrl[C_FIRST_OUT_OF_RANGE_T] = first_oor_t
    ctrl[C_FIRST_OUT_OF_RANGE_SEQ] = first_oor_s
    ctrl[C_FIRST_BEFORE_SEED_T] = first_bs_t
    ctrl[C_FIRST_BEFORE_SEED_SEQ] = first_bs_s
    if final:
        while v_ptr < nv:
            trig_pos[n_trig] = n_ap
            trig_kind[n_trig] = 0
            trig_ref[n_trig] = v_ptr
            n_trig += 1
            v_ptr += 1
        if known and ctrl[C_NEXT_BOUNDARY] != _I64_MIN:
            trig_pos[n_trig] = n_ap
            trig_kind[n_trig] = 1
            trig_ref[n_trig] = n_s
            n_trig += 1
            s_time[n_s] = ctrl[C_NEXT_BOUNDARY]
            s_seq[n_s] = ctrl[C_LAST_SEQ]
            n_s += 1
    ctrl[C_KNOWN] = 1 if known else 0
    # phase B: the book, segment by segment between snapshots (best bid/ask after every row)
    a = 0
    for k in range(n_trig + 1):
        b = trig_pos[k] if k < n_trig else n_ap
        if b > a:
            apply_levels(
                bid_sizes, ask_sizes, state,
                ap_bid[a:b], ap_tick[a:b], ap_lots[a:b], ap_ends[: b - a], ap_flags[: b - a],
                ap_bt[a:b], ap_bs[a:b], ap_at[a:b], ap_as[a:b],
            )  # fmt: skip
            _mark(bid_bits, ask_bits, state, width, ap_bid[a:b], ap_tick[a:b], ap_lots[a:b])
            a = b
        if k < n_trig:
            snap = vsnap if trig_kind[k] == 0 else ssnap
            _top_levels(bid_sizes, ask_sizes, bid_bits, ask_bits, state, snap, trig_ref[k])
    # phase C: best bid/ask after every stream row
    bb_t = ctrl[C_BB_T]
    bb_s = ctrl[C_BB_S]
    ba_t = ctrl[C_BA_T]
    ba_s = ctrl[C_BA_S]
    for q in range(r):
        k = row_ap[q]
        if k >= 0:
            bb_t = ap_bt[k, 0]
            bb_s = ap_bs[k, 0]
            ba_t = ap_at[k, 0]
            ba_s = ap_as[k, 0]
            if ob[OB_COMPLETE, q] and bb_t >= 0 and ba_t >= 0 and bb_t >= ba_t:
                if ctrl[C_CROSSED] == 0:
                    ctrl[C_FIRST_CROSSED_T] = oi[OI_TIME, q]
                    ctrl[C_FIRST_CROSSED_SEQ] = oi[OI_SEQ, q]
                ctrl[C_CROSSED] += 1
        row_known = ob[OB_BID_VALID, q] != 0
        ob[OB_BID_VALID, q] = row_known and bb_t >= 0
        ob[OB_ASK_VALID, q] = row_known and ba_t >= 0
        od[OD_BB_P, q] = bb_t
        od[OD_BB_S, q] = bb_s
        od[OD_BA_P, q] = ba_t
        od[OD_BA_S, q] = ba_s
    ctrl[C_BB_T] = bb_t
    ctrl[C_BB_S] = bb_s
    ctrl[C_BA_T] = ba_t
    ctrl[C_BA_S] = ba_s
    return r, v_ptr, n_s


def _levels_major(snap: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` snapshots (4, 20, n) of a buffer written by ``_top_levels``: a view whose
    price/size columns ``[q, level]`` are contiguous."""
    return snap[:, :, :n]


class _Buffers:
    """Scratch and output arrays of ``_replay``, grown on demand and reused across windows."""

    def __init__(self, rows: int) -> None:
        self.rows = self.vendor = self.seconds = self.triggers = 0
        self.ensure(rows, 1024, 1024)

    def ensure(self, rows: int, vendor: int, seconds: int) -> None:
        if rows > self.rows:
            n = self.rows = max(rows, self.rows * 5 // 4, 1024)
            self.ap_bid = _lazy_zeros(n, np.bool_)
            self.ap_tick = _lazy_zeros(n)
            self.ap_lots = _lazy_zeros(n)
            self.ap_ends = np.arange(1, n + 1, dtype=np.int64)
            self.ap_flags = np.full(n, FLAG_EMIT, dtype=np.uint8)
            self.ap_best = [_lazy_zeros(n).reshape(n, 1) for _ in range(4)]
            self.row_ap = _lazy_zeros(n)
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
        if vendor + seconds > self.triggers:
            self.triggers = max(vendor + seconds, self.triggers * 5 // 4)
            self.trig = [np.empty(self.triggers, dtype=np.int64) for _ in range(3)]
