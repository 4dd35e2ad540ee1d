"""Bookkeeping of a fidelity report: each metric's result, what it compares and whether that
is independent, its verdict or why it was not computed, and the head of ``fidelity.json``
(overall verdicts, evidence, identity checks). May import ``provenance`` and ``thresholds``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rlx_assets.fidelity.provenance import Provenance
from rlx_assets.fidelity.thresholds import FidelityThresholds
from rlx_assets.stats.agreement import NotComputable

REPORT_VERSION = 1


class MetricRecorder:
    """The report under construction: ``run`` records one metric, ``finish`` adds the head."""

    def __init__(self, th: FidelityThresholds, provenance: Provenance):
        self.th = th
        self.provenance = provenance
        self.data: dict[str, Any] = {}
        self.checks: dict[str, dict] = {}
        self.figures: dict[str, dict] = {}  # metric -> basis and independence
        self.not_computed: list[dict[str, str]] = []
        self.market_day = ""

    def run(
        self,
        name: str,
        severity: str | None,
        compute: Callable[[], dict],
        *,
        store: tuple[str, ...] | None = (),
        unavailable: str | None = None,
    ) -> dict | None:
        """Run one metric; record it under ``store`` (default: ``name``'s parts) with what it
        compares and whether that is independent, its verdict in ``checks`` (when
        ``severity``), or the reason it could not be computed."""
        about = self.provenance.describe(name)
        self.figures[name] = about
        if unavailable is None:
            try:
                result = compute()
            except NotComputable as reason:
                unavailable = str(reason)
        if unavailable is not None:
            self.not_computed.append({"metric": name, "reason": unavailable})
            result = None
        if result is not None:
            result.update(about)
        if store is not None:
            path = store or tuple(name.split("."))
            target = self.data
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = result
        if severity and result is not None and "passed" in result:
            self.checks[name] = {
                "passed": result["passed"],
                "value": _headline(result),
                "threshold": _threshold(result),
                "severity": severity,
                "independent": about["independent"],
            }
            if result.get("first_bad_minute"):
                self.checks[name]["first_bad_minute"] = result["first_bad_minute"]
        return result

    def finish(self, market, day, recon, vendor_files, golden_files, captures) -> None:
        # Identity checks cannot fail by construction: shown, never counted as evidence.
        computed = [c for c in self.checks.values() if c["passed"] is not None]
        evidence = [c for c in computed if c["independent"]]
        blocking = [c for c in evidence if c["severity"] == "error"]
        head = {
            "report_version": REPORT_VERSION,
            "market": market,
            "date": day.isoformat(),
            "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            # No independent evidence is no verdict (null), never a pass.
            "passed": all(c["passed"] for c in evidence) if evidence else None,
            "blocking_passed": all(c["passed"] for c in blocking) if blocking else None,
            "evidence": sorted(n for n, c in self.checks.items() if c["independent"]),
            "identity_checks": sorted(
                n
                for n, f in self.figures.items()
                if not f["independent"] and n not in {m["metric"] for m in self.not_computed}
            ),
            "top_of_book_agreement": self.data.pop("top_of_book_agreement", None),
            "book_agreement": self.data.pop("book_agreement", None),
            "book_agreement_exact": self.data.pop("book_agreement_exact", None),
            "trade_agreement": self.data.pop("trade_agreement", None),
            "checks": self.checks,
            "not_computed": self.not_computed,
            "provenance": self.provenance.to_dict(),
            "figures": self.figures,
        }
        rest = self.data
        self.data = {
            **head,
            **rest,
            "thresholds": self.th.model_dump(),
            "inputs": {
                "reconstruction_dir": str(recon),
                "vendor_files": {k: str(v) for k, v in vendor_files.items()},
                "golden_files": {k: str(v) for k, v in golden_files.items()} or None,
                "golden_captures": [str(p) for p in captures] or None,
            },
        }


def _headline(result: dict) -> Any:
    for key in ("agreement", "invalid_share", "sequence_gap_ratio", "alpha_difference"):
        if key in result:
            return result[key]
    if "statistic" in result:
        return {"statistic": result["statistic"], "pvalue": result["pvalue"]}
    return None


def _threshold(result: dict) -> Any:
    if "min_pvalue" in result:
        return {"min_pvalue": result["min_pvalue"], "max_statistic": result["max_statistic"]}
    return result.get("threshold", result.get("tolerance"))


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (dt.date, Path)):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def certified(data: dict, upstream: dict | None) -> bool:
    """Reconstruction certified: upstream gates did not fail, and the blocking checks
    passed on independent evidence of the book."""
    gates_ok = upstream is None or bool(upstream.get("passed"))
    return bool(gates_ok and data["blocking_passed"] and "book_agreement" in data["evidence"])
