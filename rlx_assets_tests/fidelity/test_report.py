"""The fidelity report of the real sample partitions: files, figures, verdicts, and what it
says when the golden samples are missing or the reconstruction is damaged."""

from __future__ import annotations

import gzip
import json
import pickle
import re
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from rlx_assets.fidelity.markdown import JSON_NAME, KS_VARIABLES, MARKDOWN_NAME
from rlx_assets.fidelity.report import build_fidelity_report
from rlx_assets.fidelity.thresholds import FidelityThresholds, load_thresholds
from rlx_assets.stats.plots import PNG_SIGNATURE
from rlx_assets_tests.conftest import built_once_per_run
from rlx_assets_tests.damage import rewrite_parquet, set_value
from rlx_assets_tests.stats.sample_partitions import (
    GOLDEN_TABLES,
    PARTITIONS,
    SPOT_0808,
    SPOT_0809,
    VENDOR_TABLES,
    reconstruct,
    reconstructions,
    shift_best_bid_removal,
)

FAST = {"tail_bootstrap_resamples": 20}
IDENTITY_CHECKS = [
    "discrepancies",
    "ks.inter_trade_time",
    "ks.trade_size",
    "tail.difference",
    "trade_agreement",
]


@pytest.fixture(scope="module")
def recon(sample_lake, tmp_path_factory):
    return reconstructions(sample_lake, tmp_path_factory)


@pytest.fixture(scope="module")
def reports(sample_lake, recon, tmp_path_factory):
    """The full report of every sample partition, golden samples and captures included: built
    once per test run (pytest-xdist workers share it; tests only read it). The dict that
    build_fidelity_report returned is kept as it was returned (pickled), so that tests still
    compare it with the JSON file it wrote."""

    def build(root):
        for p in PARTITIONS:
            data = build_fidelity_report(
                market=p.market,
                day=p.day,
                reconstruction_dir=recon[p.key],
                vendor_files=p.files(sample_lake, VENDOR_TABLES),
                golden_files=p.files(sample_lake, (*GOLDEN_TABLES, "book")),
                golden_captures=p.capture_paths(),
                out_dir=root / p.market / p.day.isoformat(),
                thresholds=FidelityThresholds(),
            )
            (root / f"{p.market}.{p.day}.returned.pickle").write_bytes(pickle.dumps(data))

    root = built_once_per_run(tmp_path_factory, "sample_reports", build)
    return {
        p.key: (
            pickle.loads((root / f"{p.market}.{p.day}.returned.pickle").read_bytes()),
            root / p.market / p.day.isoformat(),
        )
        for p in PARTITIONS
    }


@pytest.mark.parametrize("partition", PARTITIONS, ids=lambda p: p.key)
def test_sample_report_meets_every_threshold(partition, reports):
    data, out_dir = reports[partition.key]
    th = FidelityThresholds()
    assert json.loads((out_dir / JSON_NAME).read_text()) == data
    assert (data["market"], data["date"]) == (partition.market, partition.day.isoformat())
    assert data["passed"] is True and data["blocking_passed"] is True
    assert data["book_agreement"] == 1.0 >= th.book_agreement_min
    assert data["top_of_book_agreement"] >= th.top_of_book_agreement_min
    assert data["trade_agreement"] == 1.0
    assert all(check["passed"] for check in data["checks"].values())
    assert {c for c, v in data["checks"].items() if v["severity"] == "error"} == {
        "book_agreement",
        "top_of_book_agreement",
    }
    trades = data["trades"]
    assert trades["lake_source"] == trades["golden_source"] == "trade"
    assert trades["missing"] == trades["extra"] == trades["mismatched"] == 0
    assert set(data["ks"]) == set(KS_VARIABLES)
    for key, ks in data["ks"].items():
        assert ks["passed"] and ks["n_a"] > 300 and ks["n_b"] > 300, key
    # lake and golden are one recording here: trade figures are identities, and marked so
    assert data["ks"]["trade_size"]["statistic"] == 0.0
    assert data["identity_checks"] == IDENTITY_CHECKS
    assert not set(IDENTITY_CHECKS) & set(data["evidence"])
    assert {"book_agreement", "top_of_book_agreement", "ks.quoted_spread"} <= set(data["evidence"])
    for source in ("lake", "golden"):
        tail = data["tail"][source]
        assert tail["ci"][0] <= tail["alpha"] <= tail["ci"][1]
        assert 1.5 < tail["alpha"] < 3.5 and tail["bootstrap_resamples"] == 200
    assert data["tail"]["difference"]["alpha_difference"] == 0.0
    assert data["tail"]["difference"]["passed"]
    assert data["sequence_gaps"]["lake"]["sequence_decreases"] == 0
    assert data["sequence_gaps"]["golden"]["sequence_gap_ratio"] == 0.0
    assert all(o["invalid_rows"] == 0 for o in data["origin_time"]["lake"].values())
    assert all(o["invalid_rows"] == 0 for o in data["origin_time"]["golden"].values())
    # the sample captures hold raw trades only: the aggTrade check says why it is missing
    assert [n["metric"] for n in data["not_computed"]] == ["aggtrade_consistency"]
    assert "aggTrade" in data["not_computed"][0]["reason"]
    assert data["thresholds"] == th.model_dump()
    # nothing located: no discrepancy of any kind, lake vs golden or ours vs the vendor book
    assert data["discrepancies"]["rows"] == data["vendor_book_discrepancies"]["rows"] == 0
    assert data["discrepancies_by_minute"] == data["vendor_book_discrepancies_by_minute"] == {}
    assert data["reconstruction_certified"] is True


@pytest.mark.parametrize("partition", PARTITIONS, ids=lambda p: p.key)
def test_plots_are_pngs_and_the_markdown_shows_them_first(partition, reports):
    data, out_dir = reports[partition.key]
    expected = {
        "top_of_book_agreement",
        "book_level_agreement",
        "tail_ccdf",
        "discrepancies_per_minute",
        "vendor_book_discrepancies_per_minute",
    } | {f"ecdf_{k}" for k in KS_VARIABLES}
    assert set(data["plots"]) == expected
    markdown = (out_dir / MARKDOWN_NAME).read_text()
    for name in data["plots"].values():
        content = (out_dir / name).read_bytes()
        assert content.startswith(PNG_SIGNATURE) and len(content) > 10_000
        assert f"]({name})" in markdown
    assert markdown.index("## Plots") < markdown.index("## Figures")
    assert markdown.index("top_of_book_agreement.png") < markdown.index("| metric |")
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(rows) > 15 and "**FAIL**" not in markdown
    book_row = next(r for r in rows if r.startswith("| Book agreement"))
    assert re.search(r"\| 100\.000% of [\d,]+ rows \| ≥ 99\.900% \| \*\*PASS\*\* \|$", book_row)
    assert any(r.startswith("| Top-of-book agreement") and "**PASS**" in r for r in rows)
    assert "## Not computed" in markdown and "`aggtrade_consistency`" in markdown


def test_cold_and_warm_start_figures(reports):
    """2024-08-08 starts cold from a top-20 row (deeper vendor levels unknown, two updates
    whose best ask the seed could not know); 2024-08-09 continues 08-08's book."""
    cold, _ = reports[SPOT_0808.key]
    warm, _ = reports[SPOT_0809.key]
    assert cold["book"]["started_cold"] and not warm["book"]["started_cold"]
    assert cold["book_agreement_exact"] < 0.9 < cold["book_agreement"]
    assert (
        cold["book"]["reconstruction_summary"]["vendor_book_rows_equal"]
        == (cold["book"]["rows_equal"])
    )
    assert cold["top_of_book"]["compared"] - cold["top_of_book"]["equal"] == 2
    assert cold["top_of_book"]["mismatches_with_best_outside_known_depth"] == 2


def test_report_without_golden_samples_lists_what_it_could_not_compute(
    recon, sample_lake, tmp_path
):
    data = build_fidelity_report(
        market=SPOT_0809.market,
        day=SPOT_0809.day,
        reconstruction_dir=recon[SPOT_0809.key],
        vendor_files=SPOT_0809.files(sample_lake, VENDOR_TABLES),
        golden_files=None,
        golden_captures=None,
        out_dir=tmp_path,
        thresholds=FidelityThresholds(**FAST),
    )
    assert data["top_of_book_agreement"] is None and data["trade_agreement"] is None
    assert data["book_agreement"] == 1.0 and data["passed"] and data["blocking_passed"]
    reasons = {n["metric"]: n["reason"] for n in data["not_computed"]}
    assert {
        "top_of_book_agreement", "trade_agreement", "tail.golden", "tail.difference",
        "sequence_gaps.golden", "aggtrade_consistency", "discrepancies",
        *(f"ks.{k}" for k in KS_VARIABLES),
        *(f"origin_time.golden.{t}" for t in GOLDEN_TABLES),
    } == set(reasons)  # fmt: skip
    assert reasons["top_of_book_agreement"] == "no golden samples for this partition"
    assert reasons["sequence_gaps.golden"] == "no golden capture files given"
    assert data["ks"] == {k: None for k in KS_VARIABLES}
    assert data["tail"]["lake"]["alpha"] > 1 and data["tail"]["golden"] is None
    assert set(data["plots"]) == {
        "book_level_agreement", "tail_ccdf", "vendor_book_discrepancies_per_minute"
    }  # fmt: skip
    markdown = (tmp_path / MARKDOWN_NAME).read_text()
    assert "`top_of_book_agreement`: no golden samples" in markdown


def test_a_shifted_delta_fails_the_blocking_checks(recon, sample_lake, tmp_path):
    damaged_deltas = tmp_path / "book_delta_v2.parquet"
    shifted = shift_best_bid_removal(SPOT_0808, sample_lake, recon[SPOT_0808.key], damaged_deltas)
    damaged = reconstruct(SPOT_0808, sample_lake, tmp_path / "recon", book_delta_v2=damaged_deltas)
    out = tmp_path / "report"
    data = build_fidelity_report(
        market=SPOT_0808.market,
        day=SPOT_0808.day,
        reconstruction_dir=damaged,
        vendor_files={**SPOT_0808.files(sample_lake, VENDOR_TABLES)},
        golden_files=SPOT_0808.files(sample_lake, GOLDEN_TABLES),
        golden_captures=None,
        out_dir=out,
        thresholds=FidelityThresholds(**FAST),
    )
    assert not data["passed"] and not data["blocking_passed"]
    assert data["checks"]["book_agreement"]["passed"] is False
    assert data["checks"]["top_of_book_agreement"]["passed"] is False
    assert data["book_agreement"] < 0.99 and data["top_of_book_agreement"] < 0.99
    first = data["book"]["first_mismatches"][0]
    assert (first["sequence_number"], first["price"]) == (
        shifted["sequence_number"],
        shifted["price"],
    )
    markdown = (out / MARKDOWN_NAME).read_text()
    assert markdown.startswith(f"# Fidelity report: {SPOT_0808.market} 2024-08-08")
    assert "Overall: **FAIL**" in markdown
    assert f"bid {shifted['price']}: our size" in markdown


def test_thresholds_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("RLX_FIDELITY_TOP_OF_BOOK_AGREEMENT_MIN", "0.995")
    monkeypatch.setenv("RLX_FIDELITY_TAIL_BOOTSTRAP_RESAMPLES", "50")
    th = FidelityThresholds()
    assert th.top_of_book_agreement_min == 0.995 and th.tail_bootstrap_resamples == 50
    assert th.book_agreement_min == 0.999  # untouched default
    assert load_thresholds(tail_bootstrap_resamples=7).tail_bootstrap_resamples == 7
    monkeypatch.setenv("RLX_FIDELITY_KS_MIN_PVALUE", "1.5")
    with pytest.raises(ValidationError):
        FidelityThresholds()


def test_every_threshold_is_documented():
    for name, field in FidelityThresholds.model_fields.items():
        assert field.description, name


def _with_aggtrades(capture, target, damage_index: int) -> int:
    """A golden-format capture holding the real raw trade frames of ``capture`` and aggTrade
    frames assembled from them as Binance does (consecutive fills of one taker order at one
    price and time); aggTrade number ``damage_index`` gets one lot too much. Returns its id."""
    frames = []
    with gzip.open(capture, "rt") as handle:
        for line in handle:
            stamp, _, payload = line.partition(" ")
            message = json.loads(payload)
            if message.get("stream") == "btcusdt@trade":
                frames.append((int(stamp), message["data"]))

    def key(trade: dict) -> tuple:
        return trade["T"], trade["p"], trade["m"]

    groups: list[list[tuple[int, dict]]] = []
    for stamp, trade in frames:
        if groups and key(groups[-1][-1][1]) == key(trade):
            groups[-1].append((stamp, trade))
        else:
            groups.append([(stamp, trade)])
    assert len(groups) < len(frames)
    damaged_id = None
    with open(target, "w") as out:
        for a, group in enumerate(groups):
            stamp, last = group[-1]
            quantity = sum(Decimal(t["q"]) for _, t in group)
            if a == damage_index:
                quantity += Decimal("0.00001")
                damaged_id = a
            agg = {
                "e": "aggTrade", "E": last["E"], "s": "BTCUSDT", "a": a, "p": last["p"],
                "q": f"{quantity:f}", "f": group[0][1]["t"], "l": last["t"], "T": last["T"],
                "m": last["m"], "M": True,
            }  # fmt: skip
            for s, trade in group:
                out.write(json.dumps({"capture_ns": s, "stream": "btcusdt@trade", "data": trade}))
                out.write("\n")
            out.write(json.dumps({"capture_ns": stamp, "stream": "btcusdt@aggTrade", "data": agg}))
            out.write("\n")
    return damaged_id


def test_aggtrade_quantities_are_checked_against_raw_trades(recon, sample_lake, tmp_path):
    capture = tmp_path / "spot_btcusdt_20240809T00.jsonl"
    damaged_id = _with_aggtrades(SPOT_0809.capture_paths()[1], capture, damage_index=300)
    data = build_fidelity_report(
        market=SPOT_0809.market,
        day=SPOT_0809.day,
        reconstruction_dir=recon[SPOT_0809.key],
        vendor_files=SPOT_0809.files(sample_lake, VENDOR_TABLES),
        golden_files=None,
        golden_captures=[capture],
        out_dir=tmp_path / "report",
        thresholds=FidelityThresholds(**FAST),
    )
    agg = data["aggtrade_consistency"]
    assert agg["checked"] > 5000 and agg["incomplete"] == 0
    assert agg["mismatched"] == 1 and agg["mismatched_ids"] == [damaged_id]
    assert not agg["passed"] and data["checks"]["aggtrade_consistency"]["passed"] is False
    assert data["blocking_passed"] and not data["passed"]  # a warning, not a blocking failure
    reasons = {n["metric"]: n["reason"] for n in data["not_computed"]}
    assert "aggtrade_consistency" not in reasons
    assert reasons["sequence_gaps.golden"] == "the golden captures hold no depth diff of the day"


@pytest.mark.parametrize("partition", PARTITIONS, ids=lambda p: p.key)
def test_every_figure_says_what_it_compares_and_identity_checks_are_marked(partition, reports):
    data, out_dir = reports[partition.key]
    prov = data["provenance"]
    assert prov["same_recording"] is True
    assert set(prov["shared_sources"]) == set(partition.captures)
    for name in data["checks"]:
        figure = data["figures"][name]
        assert figure["basis"] and figure["independent_reason"], name
        assert data["checks"][name]["independent"] is figure["independent"], name
    for name in IDENTITY_CHECKS:
        assert data["figures"][name]["independent"] is False
        assert "same capture files" in data["figures"][name]["independent_reason"]
    assert data["trades"]["independent"] is False and "vs golden trades" in data["trades"]["basis"]
    book = data["book"]
    assert book["independent"] is True and "reference book" in book["independent_reason"]
    assert data["top_of_book"]["independent"] is True
    assert "bookTicker" in data["top_of_book"]["basis"]
    markdown = (out_dir / MARKDOWN_NAME).read_text()
    assert "**Identity checks**" in markdown
    trade_row = next(r for r in markdown.splitlines() if r.startswith("| Trade agreement"))
    assert trade_row.endswith("**PASS** · identity check, not evidence |")
    book_row = next(r for r in markdown.splitlines() if r.startswith("| Book agreement"))
    assert "identity" not in book_row


def test_identity_checks_are_left_out_of_the_verdict(recon, sample_lake, tmp_path):
    """A failing identity check cannot sink (or carry) the verdict: here the golden trades
    are the lake's with one price changed, yet both come from the same capture files."""
    golden = SPOT_0809.files(sample_lake, GOLDEN_TABLES)
    golden["trades"] = rewrite_parquet(
        golden["trades"], tmp_path / "trades.parquet", set_value("price", 5000, 1.0)
    )
    _copy_metadata(SPOT_0809.file(sample_lake, "trades"), golden["trades"])
    data = build_fidelity_report(
        market=SPOT_0809.market, day=SPOT_0809.day, reconstruction_dir=recon[SPOT_0809.key],
        vendor_files=SPOT_0809.files(sample_lake, VENDOR_TABLES), golden_files=golden,
        golden_captures=None, out_dir=tmp_path / "report",
        thresholds=FidelityThresholds(**FAST, trade_agreement_min=1.0),
    )  # fmt: skip
    assert data["checks"]["trade_agreement"]["passed"] is False
    assert data["checks"]["trade_agreement"]["independent"] is False
    assert data["passed"] is True and "trade_agreement" in data["identity_checks"]


def test_golden_from_another_recording_is_evidence(recon, sample_lake, tmp_path):
    """Golden trades that share no capture file with the lake (the provenance metadata of a
    different recording) make the trade figures evidence again."""
    other = json.dumps([{"name": "other.gz", "sha256": "0" * 64}]).encode()
    data = report_with_golden_trades_from(other, recon, sample_lake, tmp_path)
    assert data["provenance"]["same_recording"] is False
    assert data["figures"]["trade_agreement"]["independent"] is True
    assert "trade_agreement" in data["evidence"] and data["identity_checks"] == []


def test_a_vendor_book_built_by_the_kernel_is_an_identity_check(recon, sample_lake, tmp_path):
    """A lake whose book rows came from the reconstruction's kernel (converter version 1):
    book agreement is the kernel agreeing with itself, so it is no evidence."""
    vendor = SPOT_0809.files(sample_lake, VENDOR_TABLES)
    table = pq.read_table(vendor["book"])
    meta = {k: v for k, v in table.schema.metadata.items() if k != b"rlx.book_builder"}
    meta[b"rlx.converter_version"] = b"1"
    vendor["book"] = tmp_path / "book.parquet"
    pq.write_table(table.replace_schema_metadata(meta), vendor["book"])
    data = build_fidelity_report(
        market=SPOT_0809.market, day=SPOT_0809.day, reconstruction_dir=recon[SPOT_0809.key],
        vendor_files=vendor, golden_files=None, golden_captures=None,
        out_dir=tmp_path / "report", thresholds=FidelityThresholds(**FAST),
    )  # fmt: skip
    assert data["book"]["independent"] is False
    assert "own kernel" in data["book"]["independent_reason"]
    assert "book_agreement" in data["identity_checks"]
    assert "book_agreement" not in data["evidence"]


def _copy_metadata(source, target) -> None:
    table = pq.read_table(target)
    pq.write_table(table.replace_schema_metadata(pq.read_schema(source).metadata), target)


def test_no_evidence_is_no_verdict(recon, tmp_path):
    """Nothing computable (no vendor file, no golden samples): the report says so, with a
    null verdict, never a pass."""
    data = build_fidelity_report(
        market=SPOT_0809.market, day=SPOT_0809.day, reconstruction_dir=recon[SPOT_0809.key],
        vendor_files={}, golden_files=None, golden_captures=None,
        out_dir=tmp_path / "report", thresholds=FidelityThresholds(**FAST),
    )  # fmt: skip
    assert data["evidence"] == []
    assert data["passed"] is None and data["blocking_passed"] is None
    assert data["reconstruction_certified"] is False
    assert "Overall: n/a" in (tmp_path / "report" / "fidelity.md").read_text()


def test_unreadable_provenance_is_not_independent(recon, sample_lake, tmp_path):
    """Golden trades whose provenance metadata cannot be read may come from the lake's own
    recording: the trade figures are not counted as evidence."""
    data = report_with_golden_trades_from(b"{not json", recon, sample_lake, tmp_path)
    assert data["provenance"]["unreadable"] == ["trades.parquet"]
    assert data["figures"]["trade_agreement"]["independent"] is False
    assert "provenance unknown" in data["figures"]["trade_agreement"]["independent_reason"]
    assert "trade_agreement" not in data["evidence"]


def report_with_golden_trades_from(source_files: bytes, recon, sample_lake, tmp_path) -> dict:
    """The report of spot 2024-08-09 against its golden trades alone, their
    ``rlx.source_files`` metadata replaced."""
    golden = SPOT_0809.files(sample_lake, GOLDEN_TABLES)["trades"]
    table = pq.read_table(golden)
    meta = {**table.schema.metadata, b"rlx.source_files": source_files}
    trades = tmp_path / "trades.parquet"
    pq.write_table(table.replace_schema_metadata(meta), trades)
    return build_fidelity_report(
        market=SPOT_0809.market, day=SPOT_0809.day, reconstruction_dir=recon[SPOT_0809.key],
        vendor_files=SPOT_0809.files(sample_lake, VENDOR_TABLES),
        golden_files={"trades": trades}, golden_captures=None,
        out_dir=tmp_path / "report", thresholds=FidelityThresholds(**FAST),
    )  # fmt: skip
