"""The operator's day in the Dagster web UI, in a real headless Chromium (Debian's, via Playwright).

The webserver and the daemon run as subprocesses on 127.0.0.1 over a copy of the sample lake in
which one partition is damaged (a NaN price in the futures trades of 2024-08-08), so that the UI
has a passed and a failed integrity gate to show. Every step is launched by clicking through the
UI; Dagster's GraphQL API is only used to wait for runs and backfills to finish, and each result
is then asserted on what the browser shows. A screenshot of each step lands in the test's
tmp_path and in test-output/ui/ under the repository.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from pathlib import Path

import pytest

from rlx_assets_tests.damage import rewrite_parquet, set_value
from rlx_assets_tests.servers.dagster_ui import DagsterUI
from rlx_assets_tests.ui import REPO_ROOT, require_system_deps

pytestmark = pytest.mark.slow

SPOT = "BINANCE.BTC-USDT"
FUTURES = "BINANCE_FUTURES.BTC-USDT-PERP"
DAY1, DAY2 = "2024-08-08", "2024-08-09"
LOCATION = "rlx_assets.definitions"
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google on this closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Bounds, not waits: two cores run the browser, the servers, the runs and another test worker.
UI_TIMEOUT_MS = 180_000
RUN_TIMEOUT_S = 600
SCREENSHOTS_COPY = REPO_ROOT / "test-output" / "ui"
# The raw assets' numeric metadata (rlx_assets.lake.transfer_stats), plotted by partition.
TRANSFER_FIGURES = (
    "bytes_downloaded", "requests", "requests_ok", "retries_http_5xx", "retries_throttled",
    "retries_timeout", "retries_connection", "retries_corrupt_transfer", "retries_object_changed",
    "retries_other", "download_mb_per_s",
)  # fmt: skip


@pytest.fixture
def damaged_lake(sample_lake, tmp_path) -> Path:
    """The sample lake with one bad cell: a NaN price in the futures trades of DAY1."""
    lake = tmp_path / "lake"
    shutil.copytree(sample_lake, lake)
    trades = (
        lake / "trades" / "exchange=BINANCE_FUTURES" / "symbol=BTC-USDT-PERP" / f"dt={DAY1}"
        / "1.snappy.parquet"
    )  # fmt: skip
    rewrite_parquet(trades, trades, set_value("price", 10, float("nan")))
    return lake


@pytest.fixture
def dagster_ui(damaged_lake, tmp_path):
    require_system_deps()
    ui = DagsterUI(tmp_path / "dagster_home", damaged_lake)
    ui.start()
    try:
        yield ui
    finally:
        ui.stop()


@pytest.fixture
def page(tmp_path):
    require_system_deps()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)  # expect's own default is 5 s, not the page's
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.set_default_timeout(UI_TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


class Screenshots:
    """Numbered screenshots in tmp_path, copied to test-output/ui/ whatever the outcome."""

    def __init__(self, page, directory: Path):
        self.page, self.directory, self.count = page, directory, 0
        self.started = time.monotonic()
        directory.mkdir(parents=True, exist_ok=True)

    def take(self, name: str) -> None:
        self.count += 1
        print(f"{time.monotonic() - self.started:6.1f} s  screenshot {self.count:02d}_{name}")
        self.page.screenshot(path=self.directory / f"{self.count:02d}_{name}.png", full_page=True)

    def publish(self) -> None:
        shutil.rmtree(SCREENSHOTS_COPY, ignore_errors=True)
        shutil.copytree(self.directory, SCREENSHOTS_COPY)


def test_operator_flow_in_the_browser(dagster_ui, page, tmp_path):
    from playwright.sync_api import expect

    ui = dagster_ui
    shots = Screenshots(page, tmp_path / "screenshots")
    try:
        # 1. The asset graph, by stage.
        page.goto(f"{ui.url}/asset-groups")
        for group in ("acquisition", "validation", "reconstruction", "golden"):
            # Once in the sidebar's tree, once as a node of the graph.
            expect(visible_text(page, group).nth(1)).to_be_visible()
        page.goto(f"{ui.url}/locations/{LOCATION}/asset-groups/acquisition")
        for asset in ("raw_trades", "raw_book", "raw_book_delta_v2"):
            expect(visible_text(page, asset).first).to_be_visible()
        shots.take("asset_graph")

        # 2. A backfill of both sample days of one market: both runs succeed.
        toast = launch_acquisition(page, ui, f"[{DAY1}...{DAY2}]", SPOT, "Launch backfill", shots)
        backfill_id = re.search(r"Created backfill (\w+)", toast).group(1)
        status = ui.wait_for_backfill(backfill_id, RUN_TIMEOUT_S)
        runs = ui.wait_for_runs(lambda r: r["tags"].get("dagster/backfill") == backfill_id, 2)
        assert status == "COMPLETED_SUCCESS", (status, runs)
        runs.sort(key=lambda r: r["tags"]["dagster/partition"])
        assert [r["tags"]["dagster/partition"] for r in runs] == [
            f"{DAY1}|{SPOT}",
            f"{DAY2}|{SPOT}",
        ]
        page.goto(f"{ui.url}/runs/b/{backfill_id}")
        expect(visible_text(page, "Succeeded").first).to_be_visible()
        for day in (DAY1, DAY2):
            expect(visible_text(page, f"{day}|{SPOT}").first).to_be_visible()
        expect(visible_text(page, "raw_trades").first).to_be_visible()
        shots.take("backfill_succeeded")
        page.goto(f"{ui.url}/runs/{runs[0]['runId']}")
        expect(visible_text(page, "Success").first).to_be_visible()
        expect(page.get_by_text(f"partition: {DAY1}|{SPOT}")).to_be_visible()
        shots.take("run_succeeded")
        show_plots(page, ui, "raw_trades", TRANSFER_FIGURES)
        shots.take("raw_trades_plots")

        # 3. One sample partition, materialised through the partition dialog: the damaged one,
        # whose failed blocking gate fails the run. Last, so that its checks' evaluations are
        # the latest the Checks tab shows.
        toast = launch_acquisition(page, ui, DAY1, FUTURES, "Launch 1 run", shots)
        run = wait_for_launched_run(ui, toast)
        assert run["status"] == "FAILURE", "a failed blocking gate fails the run"
        page.goto(f"{ui.url}/runs/{run['runId']}")
        expect(visible_text(page, "Failure").first).to_be_visible()
        expect(page.get_by_text(f"partition: {DAY1}|{FUTURES}")).to_be_visible()
        shots.take("run_failed")

        # 4. The damaged partition: its quality gate failed, the other gates passed.
        open_check(page, ui, "raw_trades", "quality")
        expect(check_list_item(page, "quality")).to_contain_text("Failed")
        expect(labelled_field(page, "Evaluation result")).to_contain_text("Failed")
        expect(labelled_field(page, "Partition")).to_contain_text(f"{DAY1}|{FUTURES}")
        expect(page.get_by_text("1 rows with bad price")).to_be_visible()
        shots.take("quality_failed")

        page.get_by_text("Execution history", exact=True).click()
        rows = page.get_by_role("row")
        expect(rows.filter(has_text=f"{DAY1}|{FUTURES}").first).to_contain_text("Failed")
        for day in (DAY1, DAY2):
            expect(rows.filter(has_text=f"{day}|{SPOT}").first).to_contain_text("Passed")
        shots.take("quality_history")

        open_check(page, ui, "raw_trades", "schema")
        expect(check_list_item(page, "schema")).to_contain_text("Succeeded")
        expect(labelled_field(page, "Evaluation result")).to_contain_text("Passed")
        expect(labelled_field(page, "Partition")).to_contain_text(f"{DAY1}|{FUTURES}")
        shots.take("schema_passed")
    except BaseException:
        with contextlib.suppress(Exception):  # never hide the real error
            shots.take("failure")
        print(f"--- webserver log ---\n{ui.log_tail('webserver')}")
        print(f"--- daemon log ---\n{ui.log_tail('daemon')}")
        raise
    finally:
        shots.publish()
        with contextlib.suppress(Exception):
            for run in reversed(ui.runs()):
                queued = (run["startTime"] or 0) - run["creationTime"]
                ran = (run["endTime"] or 0) - (run["startTime"] or 0)
                partition = run["tags"].get("dagster/partition")
                print(
                    f"run {run['runId'][:8]} {run['status']:8} {partition}"
                    f" queued {queued:5.1f} s, ran {ran:5.1f} s"
                )


def show_plots(page, ui: DagsterUI, asset: str, labels: tuple[str, ...]) -> None:
    """The asset page's metadata as plots over its materializations (Events: the Partitions
    axis plots only the latest 120 partition keys, days long after the sample's)."""
    from playwright.sync_api import expect

    page.goto(f"{ui.url}/assets/{asset}")
    page.get_by_text("Plots", exact=True).first.click()  # the Metadata section's Table | Plots
    page.get_by_text("Events", exact=True).last.click()  # its Partitions | Events, not the tab
    for label in labels:  # a card with the figure's name as its title and a chart
        card = page.locator("div").filter(has=visible_text(page, label))
        expect(card.filter(has=page.locator("canvas")).last).to_be_visible()


def launch_acquisition(page, ui: DagsterUI, dates: str, market: str, button: str, shots) -> str:
    """Materialize the acquisition group for `dates` x `market`; return the launch toast's text.

    `dates` is what a user types into the date field: a day or a range `[first...last]`.
    """
    from playwright.sync_api import expect

    page.goto(f"{ui.url}/locations/{LOCATION}/asset-groups/acquisition")
    page.get_by_role("button", name="Materialize all").first.click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    date_field = dialog.locator('input[placeholder^="ex: "]')  # the date dimension's field
    date_field.fill(dates)
    date_field.press("Tab")  # the field applies its text when it loses focus
    dialog.get_by_text("Select a partition or create one").click()
    page.locator(f'[role="menuitem"]:has([title="{market}"])').click()
    dialog.get_by_text("Launch runs to materialize").click()  # closes the market menu
    count = 2 if dates.startswith("[") else 1
    expect(dialog.get_by_text(f"{count} partition{'s' if count > 1 else ''}", exact=True))
    expect(dialog.get_by_role("button", name=button, exact=True)).to_be_enabled()
    shots.take(f"launch_{'backfill' if count > 1 else 'run'}_{market}")
    dialog.get_by_role("button", name=button, exact=True).click()
    toast = page.get_by_text(re.compile(r"^(Launched run [0-9a-f]{8}|Created backfill \w+)$"))
    expect(toast.first).to_be_visible()
    launched = toast.first.inner_text()
    # Off the UI while the runs execute: an open page keeps Chromium and the webserver busy
    # refreshing it, on the two cores the runs need (the results are then opened afresh).
    page.goto("about:blank")
    return launched


def wait_for_launched_run(ui: DagsterUI, toast: str) -> dict:
    prefix = re.search(r"Launched run ([0-9a-f]{8})", toast).group(1)
    (run,) = ui.wait_for_runs(lambda r: r["runId"].startswith(prefix), 1, RUN_TIMEOUT_S)
    return run


def open_check(page, ui: DagsterUI, asset: str, check: str) -> None:
    """The asset's Checks tab with one check selected, as a user reaches it from the asset."""
    from playwright.sync_api import expect

    page.goto(f"{ui.url}/assets/{asset}")
    page.get_by_role("tab", name="Checks").or_(page.get_by_text("Checks", exact=True)).first.click()
    check_list_item(page, check).click()
    expect(page).to_have_url(re.compile(rf"checkDetail={check}\b"))
    expect(labelled_field(page, "Evaluation result")).to_be_visible()


def visible_text(page, text: str):
    """Elements showing exactly `text` (the UI keeps hidden copies of names to measure them)."""
    return page.get_by_text(text, exact=True).filter(visible=True)


def check_list_item(page, check: str):
    """A check's entry in the Checks tab's list: its name and its latest status."""
    return page.locator(f'span:has(> [title="{check}"])').first


def labelled_field(page, label: str):
    """The innermost block holding a field's label, and so its value."""
    return page.locator("div").filter(has=page.get_by_text(label, exact=True)).last
