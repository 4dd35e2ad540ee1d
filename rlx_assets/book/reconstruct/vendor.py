"""Fidelity vs the vendor's book rows, compared inside the replay as the snapshots are taken.

``stats.agreement.book_agreement`` compares the same rows again from the written files: the
two are independent implementations on purpose (one cross-checks the other, and
``rlx_assets_tests/book/reconstruct/test_vendor.py`` tests that they agree on the real sample
partitions). May import ``decimals`` only."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from rlx_assets.book.reconstruct.decimals import _I64_MAX, _I64_MIN, decimal_string
from rlx_assets.vendor_schemas import BOOK_DEPTH

MAX_FIRST_MISMATCHES = 10


@njit(cache=True, nogil=True)
def _compare_levels(
    obt, obs, oat, oas, vbt, vbs, vat, vas, bid_floor, ask_ceiling,
    compared, level_equal, row_eq, depth_known, known_eq,
):  # fmt: skip
    """Our levels against the vendor's, ``[level, row]`` (ticks -1 = no level). Per row: every
    level equal (price and size, both sides), every level of ours inside the known depth (bids
    >= ``bid_floor``, asks <= ``ask_ceiling``; ``_I64_MIN`` / ``_I64_MAX``: the whole side), and
    equal wherever either book puts a level inside the known depth (there both are exact);
    ``level_equal[i]`` counts the ``compared`` rows whose level i is equal on both sides."""
    depth, n = obt.shape
    whole_bids = bid_floor == _I64_MIN
    whole_asks = ask_ceiling == _I64_MAX
    row_eq[:] = True
    depth_known[:] = True
    known_eq[:] = True
    for level in range(depth):  # level-major, as the arrays are laid out
        equal = 0
        for r in range(n):
            bid_eq = obt[level, r] == vbt[level, r] and obs[level, r] == vbs[level, r]
            ask_eq = oat[level, r] == vat[level, r] and oas[level, r] == vas[level, r]
            o_bid_in = whole_bids or obt[level, r] >= bid_floor
            v_bid_in = whole_bids or vbt[level, r] >= bid_floor
            o_ask_in = whole_asks or (oat[level, r] >= 0 and oat[level, r] <= ask_ceiling)
            v_ask_in = whole_asks or (vat[level, r] >= 0 and vat[level, r] <= ask_ceiling)
            if not (bid_eq and ask_eq):
                row_eq[r] = False
            elif compared[r]:
                equal += 1
            if not (o_bid_in and o_ask_in):
                depth_known[r] = False
            bid_ok = bid_eq or not (o_bid_in or v_bid_in)
            ask_ok = ask_eq or not (o_ask_in or v_ask_in)
            if not (bid_ok and ask_ok):
                known_eq[r] = False
        level_equal[level] += equal


@dataclass
class _Fidelity:
    bid_floor: int
    ask_ceiling: int
    seed_sequence: int
    cold: bool  # the seed is the vendor row at seed_sequence: equal to itself, not compared
    price_scale: int
    size_scale: int
    compared: int = 0
    equal: int = 0
    unknown_depth: int = 0
    equal_known: int = 0
    before_seed: int = 0
    level_equal: np.ndarray = field(default_factory=lambda: np.zeros(BOOK_DEPTH, dtype=np.int64))
    first_mismatches: list[dict] = field(default_factory=list)

    def compare(
        self, ours: np.ndarray, vendor: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: (all levels equal, compared, our top 20 within the known depth)."""
        obt, obs, oat, oas = ours
        vbt, vbs, vat, vas = vendor["lv"]
        seq = vendor["seq"]
        # Rows before the seed describe a book we never held; with a previous-day seed the
        # row at the seed's own sequence number is a real check of the carried-over book.
        compared = seq > self.seed_sequence if self.cold else seq >= self.seed_sequence
        self.before_seed += int((seq < self.seed_sequence).sum())
        n = seq.shape[0]
        row_eq, depth_known, known_eq = (np.empty(n, dtype=np.bool_) for _ in range(3))
        _compare_levels(
            obt, obs, oat, oas, vbt, vbs, vat, vas, self.bid_floor, self.ask_ceiling,
            compared, self.level_equal, row_eq, depth_known, known_eq,
        )  # fmt: skip
        c = compared
        self.compared += int(c.sum())
        self.equal += int((row_eq & c).sum())
        self.unknown_depth += int((~depth_known & c).sum())
        self.equal_known += int((known_eq & c).sum())
        room = MAX_FIRST_MISMATCHES - len(self.first_mismatches)
        for r in np.flatnonzero(c & ~row_eq)[: max(room, 0)]:
            self.first_mismatches.append(
                self._describe(int(r), ours, vendor, bool(known_eq[r]), bool(depth_known[r]))
            )
        return row_eq, compared, depth_known

    def _describe(self, r: int, ours, vendor, known_eq: bool, depth_known: bool) -> dict:
        lv = vendor["lv"]
        for level in range(BOOK_DEPTH):
            for side, q in (("bid", 0), ("ask", 2)):
                if (
                    ours[q, level, r] != lv[q, level, r]
                    or ours[q + 1, level, r] != lv[q + 1, level, r]
                ):
                    return {
                        "sequence_number": int(vendor["seq"][r]),
                        "timestamp": int(vendor["time"][r]),
                        "level": level,
                        "side": side,
                        "ours": self._level(ours[q, level, r], ours[q + 1, level, r]),
                        "vendor": self._level(lv[q, level, r], lv[q + 1, level, r]),
                        "within_known_depth": not known_eq,
                        "depth_known": depth_known,
                    }
        raise AssertionError("row differs but no level does")

    def _level(self, tick: int, lots: int) -> dict | None:
        if tick < 0:
            return None
        return {
            "price": decimal_string(tick, self.price_scale),
            "size": decimal_string(lots, self.size_scale),
        }
