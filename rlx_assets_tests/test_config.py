"""A bad RLX_* variable fails in one line naming the variable and a valid example; a good one
passes."""

import datetime as dt

import pytest

from rlx_assets.config import SettingsError, load_settings
from rlx_assets.defs.schedules import schedule_hour
from rlx_assets.fidelity.thresholds import load_thresholds


def one_line_error(load) -> str:
    with pytest.raises(SettingsError) as raised:
        load()
    message = str(raised.value)
    assert "\n" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no pydantic dump
    return message


def test_a_bad_start_date_names_the_variable_and_a_valid_date(monkeypatch):
    monkeypatch.setenv("RLX_START_DATE", "2024-99-01")
    message = one_line_error(load_settings)
    assert message.startswith("RLX_START_DATE='2024-99-01': ")
    assert "month value is outside expected range" in message
    assert message.endswith("(valid example: RLX_START_DATE=2024-01-01)")
    monkeypatch.setenv("RLX_START_DATE", "2024-08-08")
    assert load_settings().start_date == dt.date(2024, 8, 8)


def test_an_exchange_the_project_cannot_serve_is_refused_at_load_naming_the_supported_ones(
    monkeypatch,
):
    monkeypatch.setenv("RLX_MARKETS", "BINANCE.BTC-USDT,KRAKEN.XBT-USD")
    message = one_line_error(load_settings)
    assert message.startswith("RLX_MARKETS='BINANCE.BTC-USDT,KRAKEN.XBT-USD': ")
    assert "unknown exchange 'KRAKEN'" in message
    assert "BINANCE (Binance spot, e.g. BINANCE.BTC-USDT)" in message
    assert (
        "BINANCE_FUTURES (Binance USD-M perpetuals, e.g. BINANCE_FUTURES.BTC-USDT-PERP)" in message
    )
    monkeypatch.setenv("RLX_MARKETS", "BINANCE.ETH-USDT, BINANCE_FUTURES.ETH-USDT-PERP")
    assert load_settings().markets == ("BINANCE.ETH-USDT", "BINANCE_FUTURES.ETH-USDT-PERP")


@pytest.mark.parametrize(
    ("markets", "reason"),
    [
        ("BTCUSDT", "expected 'EXCHANGE.SYMBOL', e.g. 'BINANCE.BTC-USDT'"),
        ("BINANCE_FUTURES.BTC-USDT", "must end in '-PERP'"),
        (" , ", "RLX_MARKETS is empty"),
    ],
)
def test_a_malformed_market_says_what_form_is_expected(monkeypatch, markets, reason):
    monkeypatch.setenv("RLX_MARKETS", markets)
    message = one_line_error(load_settings)
    assert message.startswith(f"RLX_MARKETS={markets!r}: ") and reason in message
    assert "valid example: RLX_MARKETS=BINANCE.BTC-USDT,BINANCE_FUTURES.BTC-USDT-PERP" in message


@pytest.mark.parametrize("value", ["-1", "1.5", "abc"])
def test_a_bad_gap_ratio_threshold_is_refused(monkeypatch, value):
    monkeypatch.setenv("RLX_MAX_GAP_RATIO", value)
    message = one_line_error(load_settings)
    assert message.startswith(f"RLX_MAX_GAP_RATIO={value!r}: input should be")
    assert message.endswith("(valid example: RLX_MAX_GAP_RATIO=0.0001)")
    monkeypatch.setenv("RLX_MAX_GAP_RATIO", "0.001")
    assert load_settings().max_gap_ratio == 0.001


def test_every_bad_variable_is_named_on_the_same_line(monkeypatch):
    monkeypatch.setenv("RLX_START_DATE", "yesterday")
    monkeypatch.setenv("RLX_DOWNLOAD_ATTEMPTS", "five")
    message = one_line_error(load_settings)
    assert "RLX_START_DATE='yesterday': " in message
    assert "RLX_DOWNLOAD_ATTEMPTS='five': " in message and "RLX_DOWNLOAD_ATTEMPTS=5)" in message


@pytest.mark.parametrize(
    ("variable", "value", "expected", "example"),
    [
        ("RLX_FIDELITY_KS_MIN_PVALUE", "1.5", "less than or equal to 1", "0.01"),
        ("RLX_FIDELITY_BOOK_AGREEMENT_MIN", "99.9%", "valid number", "0.999"),
        ("RLX_FIDELITY_TAIL_MIN_SIZE", "5", "greater than or equal to 10", "50"),
    ],
)
def test_a_bad_fidelity_threshold_names_the_variable_and_its_default(
    monkeypatch, variable, value, expected, example
):
    monkeypatch.setenv(variable, value)
    message = one_line_error(load_thresholds)
    assert message.startswith(f"{variable}={value!r}: ") and expected in message
    assert message.endswith(f"(valid example: {variable}={example})")
    monkeypatch.delenv(variable)
    assert (
        str(getattr(load_thresholds(), variable.removeprefix("RLX_FIDELITY_").lower())) == example
    )


@pytest.mark.parametrize("value", ["24", "-1", "six", "6.5"])
def test_a_bad_schedule_hour_names_the_variable_and_a_valid_hour(monkeypatch, value):
    monkeypatch.setenv("RLX_SCHEDULE_HOUR", value)
    with pytest.raises(ValueError) as raised:
        schedule_hour()
    assert str(raised.value) == (
        f"RLX_SCHEDULE_HOUR={value!r}: expected an hour 0-23 (UTC) "
        "(valid example: RLX_SCHEDULE_HOUR=6)"
    )
    monkeypatch.setenv("RLX_SCHEDULE_HOUR", "23")
    assert schedule_hour() == 23
