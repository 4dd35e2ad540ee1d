"""Edge cases of the compiled book kernel and the Binance sync rule (synthetic, by design)."""

import numpy as np
import pytest

from rlx_assets.book.kernel import (
    FLAG_EMIT,
    FLAG_RESET,
    SYNC_COUNTERS,
    DenseBook,
    TopOfBook,
    plan_depth_sync,
)

BID, ASK = True, False


def apply(book: DenseBook, events: list[list[tuple[bool, int, int]]], flags=None, depth=3):
    """events: per event a list of (is_bid, tick, size)."""
    levels = [lvl for event in events for lvl in event]
    sides = np.array([lvl[0] for lvl in levels], dtype=bool)
    ticks = np.array([lvl[1] for lvl in levels], dtype=np.int64)
    sizes = np.array([lvl[2] for lvl in levels], dtype=np.int64)
    ends = np.cumsum([len(e) for e in events])
    return book.apply(sides, ticks, sizes, ends, flags, depth=depth)


def test_top_n_with_fewer_levels_is_padded():
    book = DenseBook(100, 50)
    top = apply(book, [[(BID, 110, 5), (BID, 108, 7), (ASK, 112, 3)]])
    assert top.bid_ticks.tolist() == [[110, 108, -1]]
    assert top.bid_sizes.tolist() == [[5, 7, 0]]
    assert top.ask_ticks.tolist() == [[112, -1, -1]]
    assert top.ask_sizes.tolist() == [[3, 0, 0]]
    empty = apply(DenseBook(0, 10), [[]])
    assert empty.bid_ticks.tolist() == [[-1, -1, -1]] and empty.ask_sizes.tolist() == [[0, 0, 0]]


def test_delete_of_unknown_level_is_counted_not_fatal():
    book = DenseBook(100, 50)
    top = apply(book, [[(BID, 110, 5)], [(BID, 120, 0), (ASK, 130, 0), (BID, 110, 0)]])
    assert book.counters()["delete_unknown"] == 2
    assert top.bid_ticks[-1].tolist() == [-1, -1, -1]  # the known level was removed
    assert book.state[0] == -1  # best bid: none


def test_crossed_book_is_counted():
    book = DenseBook(100, 50)
    apply(book, [[(BID, 110, 5), (ASK, 112, 3)], [(BID, 113, 1)], [(BID, 113, 0)]])
    assert book.counters()["crossed"] == 1
    top = apply(book, [[(ASK, 109, 1)]])  # crossed again: still reported best-first
    assert book.counters()["crossed"] == 2
    assert top.bid_ticks[0, 0] == 110 and top.ask_ticks[0, 0] == 109


def test_out_of_range_levels_are_counted_and_ignored():
    book = DenseBook(100, 10)
    top = apply(book, [[(BID, 99, 1), (ASK, 110, 1), (BID, 105, 2)]])
    assert book.counters()["out_of_range"] == 2
    assert top.bid_ticks[0].tolist() == [105, -1, -1]


def test_best_level_delete_rescans_and_reset_clears():
    book = DenseBook(0, 1000)
    top = apply(
        book,
        [
            [(BID, 500, 1), (BID, 400, 2), (ASK, 600, 3), (ASK, 900, 4)],
            [(BID, 500, 0), (ASK, 600, 0)],  # both bests removed: next levels found
            [(BID, 450, 9), (BID, 400, 0)],
        ],
    )
    assert top.bid_ticks[:, 0].tolist() == [500, 400, 450]
    assert top.ask_ticks[:, 0].tolist() == [600, 900, 900]
    flags = np.array([FLAG_RESET | FLAG_EMIT], dtype=np.uint8)
    top = apply(book, [[(BID, 10, 1), (ASK, 20, 1)]], flags)
    assert top.bid_ticks[0].tolist() == [10, -1, -1]  # 450 from before the reset is gone
    assert top.ask_ticks[0].tolist() == [20, -1, -1]
    assert book.counters()["resets"] == 1
    assert np.count_nonzero(book.bid_sizes) == 1 and np.count_nonzero(book.ask_sizes) == 1


def test_events_without_emit_write_no_rows():
    book = DenseBook(0, 100)
    flags = np.array([0, FLAG_EMIT, 0], dtype=np.uint8)
    top = apply(book, [[(BID, 5, 1)], [(BID, 6, 1)], [(BID, 7, 1)]], flags)
    assert top.rows == 1 and top.bid_ticks[0].tolist() == [6, 5, -1]
    assert book.counters()["events"] == 3


def test_kernel_matches_a_dictionary_book_on_random_events():
    rng = np.random.default_rng(7)
    book = DenseBook(0, 400)
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    for _ in range(30):
        events = []
        for _ in range(20):
            event = []
            for _ in range(int(rng.integers(0, 6))):
                is_bid = bool(rng.random() < 0.5)
                tick = int(rng.integers(0, 200) if is_bid else rng.integers(200, 400))
                size = int(rng.integers(0, 3)) * int(rng.integers(1, 100))
                event.append((is_bid, tick, size))
            events.append(event)
        top = apply(book, events, depth=5)
        for row, event in enumerate(events):
            for is_bid, tick, size in event:
                side = bids if is_bid else asks
                if size:
                    side[tick] = size
                else:
                    side.pop(tick, None)
            want_bids = sorted(bids, reverse=True)[:5]
            want_asks = sorted(asks)[:5]
            assert top.bid_ticks[row].tolist() == want_bids + [-1] * (5 - len(want_bids))
            assert top.ask_ticks[row].tolist() == want_asks + [-1] * (5 - len(want_asks))
            assert top.bid_sizes[row].tolist()[: len(want_bids)] == [bids[t] for t in want_bids]
            assert top.ask_sizes[row].tolist()[: len(want_asks)] == [asks[t] for t in want_asks]


def plan(messages, futures=False):
    """messages: ("snap", lastUpdateId) or ("diff", U, u, pu)."""
    is_snap = np.array([m[0] == "snap" for m in messages])
    first = np.array([m[1] for m in messages], dtype=np.int64)
    last = np.array([m[1] if m[0] == "snap" else m[2] for m in messages], dtype=np.int64)
    prev = np.array([m[3] if m[0] == "diff" else -1 for m in messages], dtype=np.int64)
    order, flags, counters = plan_depth_sync(is_snap, first, last, prev, futures)
    steps = [
        (int(i), "reset" if f & FLAG_RESET else "emit") for i, f in zip(order, flags, strict=True)
    ]
    return steps, dict(zip(SYNC_COUNTERS, counters.tolist(), strict=True))


def test_spot_sync_buffers_diffs_received_before_the_snapshot():
    steps, c = plan(
        [
            ("diff", 1, 5, -1),  # older than the snapshot: dropped
            ("diff", 6, 12, -1),  # straddles lastUpdateId + 1 = 11, received before it
            ("snap", 10),
            ("diff", 13, 15, -1),
            ("snap", 14),  # in sync: ignored
            ("diff", 16, 20, -1),
        ]
    )
    assert steps == [(2, "reset"), (1, "emit"), (3, "emit"), (5, "emit")]
    assert c == {"gaps": 0, "snapshots_used": 1, "snapshots_ignored": 1,
                 "snapshots_unusable": 0, "diffs_applied": 3, "diffs_stale": 1}  # fmt: skip


def test_spot_gap_stops_the_book_until_a_later_snapshot():
    steps, c = plan(
        [
            ("snap", 10),
            ("diff", 11, 12, -1),
            ("diff", 14, 15, -1),  # gap: 13 missing
            ("diff", 16, 18, -1),
            ("snap", 12),  # older than the buffered diffs (needs U <= 13): unusable
            ("diff", 19, 20, -1),
            ("snap", 17),  # re-syncs with the buffered diff 16..18
            ("diff", 21, 22, -1),
        ]
    )
    assert steps == [(0, "reset"), (1, "emit"), (6, "reset"), (3, "emit"), (5, "emit"),
                     (7, "emit")]  # fmt: skip
    assert c["gaps"] == 1 and c["snapshots_unusable"] == 1 and c["snapshots_used"] == 2
    assert c["diffs_stale"] == 1  # 14..15, contained in snapshot 17


def test_futures_sync_uses_pu():
    steps, c = plan(
        [
            ("diff", 90, 99, 80),  # u < lastUpdateId: dropped
            ("snap", 100),
            ("diff", 95, 105, 99),  # U <= 100 <= u
            ("diff", 107, 110, 105),  # pu == previous u: continuous although U != u + 1
            ("diff", 120, 130, 111),  # pu != 110: gap
            ("diff", 131, 140, 130),
        ],
        futures=True,
    )
    assert steps == [(1, "reset"), (2, "emit"), (3, "emit")]
    assert c["gaps"] == 1 and c["diffs_applied"] == 2 and c["diffs_stale"] == 1
    # A diff that ends exactly at lastUpdateId is the first processed one (u >= lastUpdateId).
    steps, _ = plan([("snap", 100), ("diff", 95, 100, 90), ("diff", 101, 102, 100)], True)
    assert steps == [(0, "reset"), (1, "emit"), (2, "emit")]


@pytest.mark.parametrize("futures", [False, True])
def test_no_snapshot_means_no_book(futures):
    steps, c = plan([("diff", 1, 2, 0), ("diff", 3, 4, 2)], futures)
    assert steps == [] and c["diffs_applied"] == 0


def test_chunks_with_reused_output_buffers_equal_one_pass():
    rng = np.random.default_rng(3)
    n_events, per = 400, 5
    sides = rng.random(n_events * per) < 0.5
    ticks = np.where(
        sides, 1_000 - rng.integers(1, 50, sides.size), 1_000 + rng.integers(0, 50, sides.size)
    )
    sizes = rng.integers(0, 4, sides.size)
    ends = np.arange(1, n_events + 1) * per
    whole = DenseBook(900, 200).apply(sides, ticks, sizes, ends, depth=5)
    book = DenseBook(900, 200)
    out = TopOfBook.empty(n_events // 2, 5)
    half = n_events // 2 * per
    first = book.apply(
        sides[:half], ticks[:half], sizes[:half], ends[: n_events // 2], depth=5, out=out
    )
    assert np.array_equal(first.bid_ticks, whole.bid_ticks[: n_events // 2])
    second = book.apply(
        sides[half:], ticks[half:], sizes[half:], ends[n_events // 2 :] - half, depth=5, out=out
    )
    assert np.shares_memory(second.ask_sizes, out.ask_sizes)
    assert np.array_equal(second.ask_sizes, whole.ask_sizes[n_events // 2 :])
    assert book.best_bid == whole.bid_ticks[-1, 0] and book.best_ask == whole.ask_ticks[-1, 0]
    with pytest.raises(ValueError, match="1 rows, 2 needed"):
        book.apply(sides[:2], ticks[:2], sizes[:2], np.array([1, 2]), out=TopOfBook.empty(1, 5))


def test_depth_one_is_the_first_level_of_the_walk_and_counters_add_up():
    """The best bid/ask after every row (depth 1, its own code path) equals level 0 of a deeper
    walk, through deletes of the best, empty sides, resets and out-of-range rows; the counters
    (kept in locals during a call) equal those of one call per event."""
    rng = np.random.default_rng(11)
    n = 5_000
    sides = rng.random(n) < 0.5
    ticks = np.where(sides, 1_000 - rng.integers(0, 30, n), 1_000 + rng.integers(0, 30, n))
    ticks[rng.random(n) < 0.01] = 5_000  # out of range
    sizes = rng.integers(0, 3, n) * rng.integers(1, 50, n)  # a third are deletes
    ends = np.arange(1, n + 1)
    flags = np.full(n, FLAG_EMIT, dtype=np.uint8)
    flags[::700] |= FLAG_RESET
    one = DenseBook(900, 200)
    top1 = one.apply(sides, ticks, sizes, ends, flags, depth=1)
    deep = DenseBook(900, 200)
    top5 = deep.apply(sides, ticks, sizes, ends, flags, depth=5)
    for a, b in zip(top1, top5, strict=True):
        assert np.array_equal(a[:, 0], b[:, 0])
    assert (top1.bid_ticks == -1).any() and (top1.ask_ticks == -1).any()  # empty sides seen
    each = DenseBook(900, 200)
    for e in range(n):
        each.apply(sides[e : e + 1], ticks[e : e + 1], sizes[e : e + 1], [1], flags[e : e + 1], 1)
    assert one.counters() == deep.counters() == each.counters()
    assert one.counters()["levels"] == n and one.counters()["resets"] == len(flags[::700])
    assert np.array_equal(one.state, each.state)
