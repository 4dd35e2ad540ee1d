"""What each fidelity figure compares, and whether its two sides are independent.

A figure whose two sides come from the same recording (or the same code) cannot fail: it is an
identity check, not evidence. Provenance is read from the files, never assumed: files written by
``rlx lake-from-capture`` carry the SHA-256 of their capture files (``rlx.source_files``) and
the code that built their book rows (``rlx.book_builder``); a vendor file from Crypto Lake
carries neither.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from rlx_assets.staging import sha256_file

REFERENCE_BOOK_BUILDER = "rlx_assets.book.reference"

# metric -> (basis, kind): kind says how independence is decided
#   "trades": lake vs golden trades (identity when both come from one recording)
#   "book": reconstruction vs the vendor book (identity when that book came from our kernel)
#   "streams": two different exchange streams (independent whatever the recording)
#   "single": one source against fixed rules (nothing is compared with a copy of itself)
#   "estimate": a property of one source, judged nowhere by itself
BASIS: dict[str, tuple[str, str]] = {
    "book_agreement": (
        "reconstructed top 20 (compiled kernel over the lake's book_delta_v2) vs the lake's "
        "vendor book rows",
        "book",
    ),
    "top_of_book_agreement": (
        "reconstructed top of book from book_delta_v2 vs the golden bookTicker stream",
        "streams",
    ),
    "trade_agreement": ("lake trades vs golden trades, by trade id", "trades"),
    "discrepancies": (
        "lake trades, book_delta_v2 and book rows vs the golden recording's, by trade id and "
        "sequence number",
        "trades",
    ),
    "vendor_book_discrepancies": (
        "reconstructed top 20 vs the lake's vendor book rows, row by row",
        "book",
    ),
    "ks.trade_size": ("trade sizes of the reconstructed stream vs golden trades", "trades"),
    "ks.inter_trade_time": (
        "inter-trade times of the reconstructed stream vs golden trades",
        "trades",
    ),
    "ks.quoted_spread": (
        "quoted spread of the reconstructed book vs the golden bookTicker, sampled on a grid",
        "streams",
    ),
    "ks.mid_price_return": (
        "mid-price returns of the reconstructed book vs the golden bookTicker, on a grid",
        "streams",
    ),
    "tail.lake": ("power-law tail of the reconstructed stream's trade sizes", "estimate"),
    "tail.golden": ("power-law tail of the golden trades' sizes", "estimate"),
    "tail.difference": ("tail exponent of lake trade sizes minus golden's", "trades"),
    "aggtrade_consistency": (
        "golden aggTrade quantities vs the sum of golden raw trades f..l",
        "streams",
    ),
    "sequence_gaps.lake": ("lake book_delta_v2 sequence numbers and silences", "single"),
    "sequence_gaps.golden_lake_file": (
        "golden book_delta_v2 sequence numbers and silences",
        "single",
    ),
    "sequence_gaps.golden": ("golden depth diffs against Binance's U/pu continuity", "single"),
}
for _source in ("lake", "golden"):
    for _table in ("trades", "book", "book_delta_v2", "level_1"):
        BASIS[f"origin_time.{_source}.{_table}"] = (
            f"{_source} {_table} exchange and receive times against the UTC day",
            "single",
        )


@dataclass
class Provenance:
    """Where the lake's and the golden files come from, as far as the files tell."""

    lake_sources: dict[str, str] = field(default_factory=dict)  # sha256 -> capture name
    golden_sources: dict[str, str] = field(default_factory=dict)
    identical_tables: list[str] = field(default_factory=list)  # byte-identical lake = golden
    vendor_book_builder: str | None = None  # None: not ours (e.g. Crypto Lake's own rows)
    vendor_book_converter_version: str | None = None
    unreadable: list[str] = field(default_factory=list)  # files whose metadata could not be read

    @property
    def shared_sources(self) -> list[str]:
        return sorted(self.lake_sources[s] for s in self.lake_sources.keys() & self.golden_sources)

    @property
    def same_recording(self) -> bool:
        return bool(self.shared_sources or self.identical_tables)

    def independence(self, metric: str) -> tuple[bool, str]:
        """(independent, why) of one metric."""
        kind = BASIS.get(metric, ("", "single"))[1]
        if kind in ("trades", "book") and self.unreadable:
            return False, (
                "provenance unknown: the metadata of "
                f"{', '.join(self.unreadable)} could not be read, so the sides may be one source"
            )
        if kind == "trades":
            if self.same_recording:
                what = (
                    f"the same capture files ({', '.join(self.shared_sources)})"
                    if self.shared_sources
                    else f"byte-identical files ({', '.join(self.identical_tables)})"
                )
                return False, f"identity check: lake and golden come from {what}"
            return True, "lake and golden come from different recordings"
        if kind == "book":
            if self.vendor_book_converter_version is None:
                return True, "the vendor's own book rows against our reconstruction"
            if self.vendor_book_builder == REFERENCE_BOOK_BUILDER:
                return True, (
                    "cross-implementation check: the vendor book was rebuilt from the same "
                    "recording by the pure-Python reference book, which shares no code with "
                    "the kernel"
                )
            return False, (
                "identity check: the vendor book was built by the reconstruction's own kernel "
                f"(converter version {self.vendor_book_converter_version})"
            )
        if kind == "streams":
            return True, "two different exchange streams"
        if kind == "estimate":
            return True, "an estimate from one source; only the difference is judged"
        return True, "one source checked against fixed rules; nothing compared with a copy"

    def describe(self, metric: str) -> dict:
        independent, reason = self.independence(metric)
        return {
            "basis": BASIS.get(metric, (metric, ""))[0],
            "independent": independent,
            "independent_reason": reason,
        }

    def to_dict(self) -> dict:
        return {
            "same_recording": self.same_recording,
            "shared_sources": self.shared_sources,
            "identical_tables": self.identical_tables,
            "lake_sources": sorted(self.lake_sources.values()),
            "golden_sources": sorted(self.golden_sources.values()),
            "vendor_book_builder": self.vendor_book_builder,
            "vendor_book_converter_version": self.vendor_book_converter_version,
            "unreadable": self.unreadable,
        }


class UnreadableMetadata(ValueError):
    """A file whose provenance cannot be told: unknown is not independent."""


def file_metadata(path: Path) -> dict[str, str]:
    """The ``rlx.*`` key-value metadata of a Parquet file ({} when it has none); raises
    ``UnreadableMetadata`` when the file's footer cannot be read."""
    try:
        raw = pq.read_schema(path).metadata or {}
    except (OSError, ValueError) as error:
        raise UnreadableMetadata(f"{Path(path).name}: {error}") from None
    return {k.decode(): v.decode() for k, v in raw.items() if k.startswith(b"rlx.")}


def source_checksums(path: Path) -> dict[str, str]:
    """sha256 -> name of the capture files a converted file was built from."""
    text = file_metadata(path).get("rlx.source_files")
    if not text:
        return {}
    try:
        return {s["sha256"]: s["name"] for s in json.loads(text)}
    except (ValueError, KeyError, TypeError):
        raise UnreadableMetadata(f"{Path(path).name}: rlx.source_files is not readable") from None


def detect_provenance(
    vendor_files: Mapping[str, Path], golden_files: Mapping[str, Path] | None
) -> Provenance:
    """Compare the source checksums (and the bytes) of the lake's files and the golden lake's."""
    golden_files = golden_files or {}
    prov = Provenance()
    for sources, files in ((prov.lake_sources, vendor_files), (prov.golden_sources, golden_files)):
        for path in files.values():
            try:
                sources.update(source_checksums(Path(path)))
            except UnreadableMetadata:
                prov.unreadable.append(Path(path).name)
    for table in sorted(vendor_files.keys() & golden_files.keys()):
        a, b = Path(vendor_files[table]), Path(golden_files[table])
        same_size = a.is_file() and b.is_file() and a.stat().st_size == b.stat().st_size
        if same_size and sha256_file(a) == sha256_file(b):
            prov.identical_tables.append(table)
    book = vendor_files.get("book")
    if book is not None and Path(book).name not in prov.unreadable:
        meta = file_metadata(Path(book))
        prov.vendor_book_converter_version = meta.get("rlx.converter_version")
        prov.vendor_book_builder = meta.get("rlx.book_builder")
    return prov
