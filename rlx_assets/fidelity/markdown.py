"""``fidelity.md``: the researcher's page of a fidelity report, rendered from its JSON dict."""

from __future__ import annotations

from rlx_assets.fidelity import discrepancies

JSON_NAME = "fidelity.json"
MARKDOWN_NAME = "fidelity.md"
KS_VARIABLES = {
    # key: (title, axis label, x scale)
    "trade_size": ("Trade size", "size (base asset)", "log"),
    "inter_trade_time": ("Inter-trade time", "seconds between consecutive trades", "symlog"),
    "quoted_spread": ("Quoted spread", "best ask - best bid (quote asset)", "linear"),
    "mid_price_return": ("Mid-price log return", "ln(mid_t / mid_t-h)", "symlog"),
}


# --- markdown -------------------------------------------------------------------------------------
def _pct(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}%}"


def _verdict(passed: bool | None) -> str:
    return {True: "**PASS**", False: "**FAIL**", None: "n/a"}[passed]


def render_markdown(data: dict) -> str:
    """The researcher's page: verdict, plots, then one table of figures with thresholds."""
    th = data["thresholds"]
    identity = data.get("identity_checks") or []
    gates = data.get("upstream_gates")
    failed_blocking = [
        f"`{n}` failed, first bad minute {c['first_bad_minute']}"
        for n, c in data["checks"].items()
        if c["severity"] == "error" and c["passed"] is False and c.get("first_bad_minute")
    ]
    lines = [
        f"# Fidelity report: {data['market']} {data['date']}",
        "",
        f"Reconstruction certified: **{'yes' if data.get('reconstruction_certified') else 'no'}**"
        + (
            f" · upstream gates: {_verdict(gates.get('passed'))} {gates.get('summary', '')}"
            if gates
            else ""
        )  # fmt: skip
        + "".join(f" · {text}" for text in failed_blocking),
        "",
        f"Overall: {_verdict(data['passed'])} · blocking checks (book, top of book): "
        f"{_verdict(data['blocking_passed'])} · generated {data['generated_at']}",
        "",
        f"Evidence: {len(data.get('evidence') or [])} independent checks "
        f"({', '.join(f'`{n}`' for n in data.get('evidence') or []) or 'none'})."
        + (
            f" **Identity checks** (their two sides come from one source, so they cannot fail; "
            f"shown, not counted in the verdict): {', '.join(f'`{n}`' for n in identity)}."
            if identity
            else ""
        ),
        "",
    ]
    plot_titles = {
        "top_of_book_agreement": "Top of book vs golden bookTicker, per minute",
        "tail_ccdf": "Trade-size tail (log-log CCDF) with fitted power laws",
        **{f"ecdf_{k}": f"ECDF: {v[0]}" for k, v in KS_VARIABLES.items()},
        "book_level_agreement": "Top 20 vs vendor book rows, by level",
        "discrepancies_per_minute": "Discrepancies per minute by kind, lake vs golden",
        "vendor_book_discrepancies_per_minute": "Discrepancies per minute, ours vs vendor book",
    }
    if data.get("plots"):
        lines += ["## Plots", ""]
        for key, title in plot_titles.items():
            if key in data["plots"]:
                lines += [f"![{title}]({data['plots'][key]})", ""]
    rows: list[tuple[str, str, str, str]] = []
    book = data.get("book")
    checks = data["checks"]

    figures = data.get("figures") or {}

    def check(name: str) -> str:
        verdict = _verdict(checks[name]["passed"]) if name in checks else "n/a"
        if not figures.get(name, {}).get("independent", True):
            return f"{verdict} · identity check, not evidence"
        return verdict

    if data.get("book_agreement") is not None:
        rows.append((
            "Book agreement: top 20 = vendor book rows (levels outside the known depth of a "
            "top-20 seed excepted)",
            f"{_pct(data['book_agreement'])} of {book['rows_compared']:,} rows",
            f"≥ {_pct(th['book_agreement_min'])}", check("book_agreement"),
        ))  # fmt: skip
        rows.append((
            "Book rows exactly equal (all 40 levels)",
            f"{_pct(data['book_agreement_exact'])}; "
            f"{book['rows_differing_only_outside_known_depth']:,} rows differ only outside the "
            "known depth",
            "info", "",
        ))  # fmt: skip
    tob = data.get("top_of_book")
    if tob:
        rows.append((
            "Top-of-book agreement vs golden bookTicker (by update id)",
            f"{_pct(tob['agreement'])} of {tob['compared']:,} updates",
            f"≥ {_pct(th['top_of_book_agreement_min'])}", check("top_of_book_agreement"),
        ))  # fmt: skip
    trades = data.get("trades")
    if trades:
        rows.append((
            f"Trade agreement by id ({trades['golden_source']})",
            f"{_pct(trades['agreement'], 4)}; missing {trades['missing']}, extra "
            f"{trades['extra']}, mismatched {trades['mismatched']} of {trades['golden_trades']:,}",
            f"≥ {_pct(th['trade_agreement_min'], 2)}", check("trade_agreement"),
        ))  # fmt: skip
    agg = data.get("aggtrade_consistency")
    if agg:
        rows.append((
            "aggTrade quantity = sum of raw trades f..l (golden captures)",
            f"{_pct(agg['agreement'])} of {agg['checked']:,}",
            f"≥ {_pct(th['aggtrade_consistency_min'])}", check("aggtrade_consistency"),
        ))  # fmt: skip
    ks_rule = f"p ≥ {th['ks_min_pvalue']} or D ≤ {th['ks_max_statistic']}"
    for key, ks in (data.get("ks") or {}).items():
        if ks:
            rows.append((
                f"K-S {KS_VARIABLES[key][0].lower()}",
                f"D = {ks['statistic']:.4f}, p = {ks['pvalue']:.3g} (n = {ks['n_a']:,} / "
                f"{ks['n_b']:,})",
                ks_rule, check(f"ks.{key}"),
            ))  # fmt: skip
    tail = data.get("tail") or {}
    for source in ("lake", "golden"):
        t = tail.get(source)
        if t:
            rows.append((
                f"Tail exponent α of trade sizes, {source}",
                f"{t['alpha']:.3f} [{t['ci'][0]:.3f}, {t['ci'][1]:.3f}], xmin = {t['xmin']:g}, "
                f"n tail = {t['n_tail']:,}",
                f"{t['ci_level']:.0%} bootstrap CI", "",
            ))  # fmt: skip
    diff = tail.get("difference")
    if diff:
        ci = diff["ci"]
        ci_text = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None else ""
        rows.append((
            "Tail exponent difference (lake - golden)",
            f"{diff['alpha_difference']:+.3f}{ci_text}",
            f"abs ≤ {diff['tolerance']} or CIs overlap", check("tail.difference"),
        ))  # fmt: skip
    for source, gaps in (data.get("sequence_gaps") or {}).items():
        if gaps:
            what = (
                f"{gaps['sequence_decreases']} decreases in {gaps['updates']:,} updates; "
                f"time gaps {gaps['time_gap_seconds']:.1f} s of {gaps['span_seconds']:.0f} s"
                if "sequence_decreases" in gaps
                else f"{gaps['gaps_by_source'].get('depth_sequence', 0)} breaks in "
                f"{gaps['depth_diffs']:,} diffs; gaps {gaps['gap_seconds']:.1f} s"
            )
            rows.append((
                f"Sequence gaps, {source.replace('_', ' ')}",
                f"ratio {gaps['sequence_gap_ratio']:.2e}: {what}",
                f"≤ {th['sequence_gap_ratio_max']:g}", check(f"sequence_gaps.{source}"),
            ))  # fmt: skip
    for source, tables in (data.get("origin_time") or {}).items():
        for table, o in (tables or {}).items():
            if o:
                rows.append((
                    f"Origin time, {source} {table}",
                    f"{o['invalid_rows']} invalid of {o['rows']:,} (null {o['null_timestamp']}, "
                    f"outside day {o['outside_day']}, latency < -{o['negative_latency_bound_s']:g}"
                    f" s {o['negative_latency_beyond_bound']}); median latency "
                    f"{(o['latency_s']['p50'] or 0):.3f} s",
                    f"≤ {_pct(th['origin_time_invalid_share_max'])}",
                    check(f"origin_time.{source}.{table}"),
                ))  # fmt: skip
    lines += ["## Figures", "", "| metric | value | threshold | verdict |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines.append("")
    lines += _discrepancy_lines(data)
    compared = [(n, f) for n, f in figures.items() if n not in {m["metric"] for m in
                data["not_computed"]} and not n.startswith("origin_time")]  # fmt: skip
    if compared:
        lines += ["## What each figure compares", "", "| metric | compares | independent |",
                  "|---|---|---|"]  # fmt: skip
        lines += [
            f"| `{n}` | {f['basis']} | {'yes' if f['independent'] else '**no**'}: "
            f"{f['independent_reason']} |"
            for n, f in compared
        ]
        lines.append("")
    if data["not_computed"]:
        lines += ["## Not computed", ""]
        lines += [f"- `{n['metric']}`: {n['reason']}" for n in data["not_computed"]]
        lines.append("")
    details = []
    if trades and (trades["missing_ids"] or trades["extra_ids"] or trades["mismatched_trades"]):
        details.append(f"- trade ids missing from the lake: {trades['missing_ids']}")
        details.append(f"- trade ids only in the lake: {trades['extra_ids']}")
        details.append(f"- mismatched trade ids: {[t['id'] for t in trades['mismatched_trades']]}")
    if book and book.get("first_mismatches"):
        first = book["first_mismatches"][0]
        details.append(
            f"- first book row that disagrees with the vendor: sequence "
            f"{first['sequence_number']} ({first['timestamp']}), {first['side']} "
            f"{first['price']}: our size {first['ours_size']}, vendor's {first['vendor_size']}"
        )
    if tob and tob.get("first_mismatches"):
        first = tob["first_mismatches"][0]
        details.append(
            f"- first top-of-book difference: sequence {first['sequence_number']} "
            f"({first['event_time']}): ours {first['ours']}, golden {first['golden']}"
        )
    if details:
        lines += ["## First differences", "", *details, ""]
    lines += [f"Every figure, threshold and listed id: `{JSON_NAME}`.", ""]
    return "\n".join(lines)


def _discrepancy_lines(data: dict) -> list[str]:
    """Where lake and golden, and our book and the vendor's, disagree: totals by kind and the
    worst minutes."""
    lines: list[str] = []
    for key, title in (
        ("discrepancies", "Discrepancies: lake vs golden"),
        ("vendor_book_discrepancies", "Discrepancies: reconstruction vs vendor book rows"),
    ):
        found = data.get(key)
        if not found:
            continue
        kinds = ", ".join(f"{k} {n:,}" for k, n in found["by_kind"].items()) or "none"
        identity = "" if found["independent"] else " (identity check: one recording both sides)"
        lines += [f"## {title}", "", f"{found['rows']:,} rows{identity}: {kinds}. "
                  f"Every row: `{discrepancies.FILE_NAME}`.", ""]  # fmt: skip
        if found["first"]:
            f = found["first"]
            sides = ", ".join(
                f"{name} {f[key]}"
                for name, key in (
                    ("lake", "lake"),
                    ("golden", "golden"),
                    ("ours", "reconstruction"),
                )
                if f[key] is not None
            )
            lines += [f"First: {f['time']} {f['kind']} id {f['id']}: {sides}.", ""]
        if found["worst_minutes"]:
            lines += ["| minute (UTC) | discrepancies | by kind |", "|---|---|---|"]
            lines += [
                f"| {w['minute']} | {w['total']:,} | "
                + ", ".join(f"{k} {n:,}" for k, n in w["by_kind"].items())
                + " |"
                for w in found["worst_minutes"]
            ]
            lines.append("")
    return lines
