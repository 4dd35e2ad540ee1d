"""The replay's vendor-book comparison (``book.reconstruct.vendor``) against the independent one
that reads the written files (``stats.agreement.book_agreement``, through the fidelity report's
``vendor_book_agreement``, as the ``vendor_book_agreement`` check runs it), on the real sample
partitions: both must count the same rows compared, equal and equal within the known depth.

The two agree on those figures wherever the difference lies inside the known depth. They differ
by definition past it: there the replay ignores a level entirely, while ``book_agreement``
still counts a level both books hold at one price with different sizes (every level we hold
is exact), so a size changed below the known bid floor counts only in the second."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_assets.book.reconstruct import END_BOOK_FILE, ReconstructionResult
from rlx_assets.fidelity.metrics import vendor_book_agreement
from rlx_assets_tests.book.reconstruct.conftest import run


def assert_both_comparisons_agree(result: ReconstructionResult, out: Path, book: Path) -> dict:
    figures = vendor_book_agreement(out, book)
    assert figures["rows_compared"] == result.vendor_book_rows_compared > 0
    assert figures["rows_equal"] == result.vendor_book_rows_equal
    assert figures["rows_consistent"] == result.vendor_book_rows_equal_within_known_depth
    assert figures["level_agreement"] == pytest.approx(result.level_agreement, abs=1e-12)
    assert figures["exact_rows_match_reconstruction"] is True  # row by row, too
    return figures


@pytest.mark.parametrize("name", ["spot08", "spot09", "futures08"])
def test_replay_and_file_comparisons_agree_on_the_sample_partitions(runs, name):
    r = runs[name]
    figures = assert_both_comparisons_agree(r.result, r.out, r.paths["book"])
    if name == "spot09":  # warm: every row equal, so a disagreement below would be visible
        assert figures["rows_equal"] == figures["rows_compared"]
    else:  # cold: rows that differ only past the top-20 seed's known depth
        assert figures["rows_equal"] < figures["rows_consistent"] == figures["rows_compared"]


def corrupt_size(src: Path, dst: Path, column: str) -> tuple[int, float]:
    """A copy of a real vendor book file with ``column`` one unit larger in its middle row;
    returns (that row's sequence number, the new size)."""
    table = pq.read_table(src)
    row = table.num_rows // 2
    sizes = table.column(column).to_numpy().copy()
    sizes[row] = float(Decimal(repr(float(sizes[row]))) + 1)  # still an exact decimal
    index = table.schema.get_field_index(column)
    table = table.set_column(index, table.schema.field(column), pa.array(sizes))
    pq.write_table(table, dst)
    return int(table.column("sequence_number")[row].as_py()), float(sizes[row])


def test_both_comparisons_see_the_same_corrupted_vendor_row(runs, tmp_path):
    """One vendor row's best ask size changed on the warm day (asks there lie inside the known
    depth carried from 08-08): both count exactly that row as unequal and as a mismatch."""
    book = tmp_path / "book.parquet"
    sequence, size = corrupt_size(runs["spot09"].paths["book"], book, "ask_0_size")
    paths = {**runs["spot09"].paths, "book": book}
    result = run(paths, tmp_path / "out", runs["spot08"].out / END_BOOK_FILE)
    figures = assert_both_comparisons_agree(result, tmp_path / "out", book)
    assert figures["rows_compared"] - figures["rows_equal"] == 1
    assert figures["rows_compared"] - figures["rows_consistent"] == 1
    first = result.first_mismatches[0]
    assert first["sequence_number"] == sequence
    assert (first["level"], first["side"], first["within_known_depth"]) == (0, "ask", True)
    assert float(first["vendor"]["size"]) == pytest.approx(size)


def test_past_the_known_depth_only_book_agreement_counts_a_size_difference(runs, tmp_path):
    """On 08-09 the price fell below the known bid floor carried from 08-08's top-20 seed: a
    changed best bid size is past the known depth, where the replay does not compare, while
    ``book_agreement`` still sees a level both books hold with different sizes."""
    book = tmp_path / "book.parquet"
    corrupt_size(runs["spot09"].paths["book"], book, "bid_0_size")
    paths = {**runs["spot09"].paths, "book": book}
    result = run(paths, tmp_path / "out", runs["spot08"].out / END_BOOK_FILE)
    figures = vendor_book_agreement(tmp_path / "out", book)
    assert figures["rows_equal"] == result.vendor_book_rows_equal == figures["rows_compared"] - 1
    assert result.first_mismatches[0]["within_known_depth"] is False
    assert result.vendor_book_rows_equal_within_known_depth == figures["rows_compared"]
    assert figures["rows_consistent"] == figures["rows_compared"] - 1
