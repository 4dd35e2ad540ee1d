"""The readiness certificate is bound: to its partition, the manifest, the gate reports and,
with RLX_CERTIFICATE_KEY, to a signature; the key itself never leaks."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.config import load_settings
from rlx_assets.defs.validation.checks import certificate_check_result
from rlx_assets.staging import DataLayout, sha256_file
from rlx_assets.validation.certificate import (
    certificate_path,
    certified_inputs,
    load_certificate,
    seal_certificate,
)
from rlx_assets.validation.zones import CertificateError, ready_path, write_json
from rlx_assets_tests.defs.validation.test_chain import run_chain

SPOT, FUTURES = "BINANCE.BTC-USDT", "BINANCE_FUTURES.BTC-USDT-PERP"
DAY8, DAY9 = dt.date(2024, 8, 8), dt.date(2024, 8, 9)
KEY = "rlxCertificateKey-0123456789-do-not-leak"


def _certified_copy(sample_lake, tmp_path_factory, key: str | None) -> Path:
    """One certified real sample day (SPOT, 2024-08-08), certified with or without a key."""
    root = tmp_path_factory.mktemp("certified")
    lake = Path(shutil.copytree(sample_lake, root / "lake"))
    with pytest.MonkeyPatch.context() as env:
        env.delenv("RLX_CERTIFICATE_KEY", raising=False)
        if key:
            env.setenv("RLX_CERTIFICATE_KEY", key)
        with dg.instance_for_test() as instance:
            result = run_chain(root / "data", lake, DAY8, instance=instance)
            assert result.success
            logs = [
                record.message + json.dumps(str(record.dagster_event))
                for record in instance.all_logs(result.run_id)
            ]
    (root / "run_logs.txt").write_text("\n".join(logs))
    return root


@pytest.fixture(scope="module")
def unsigned_root(sample_lake, tmp_path_factory) -> Path:
    return _certified_copy(sample_lake, tmp_path_factory, key=None)


@pytest.fixture(scope="module")
def signed_root(sample_lake, tmp_path_factory) -> Path:
    return _certified_copy(sample_lake, tmp_path_factory, key=KEY)


@pytest.fixture
def unsigned(unsigned_root, tmp_path) -> DataLayout:
    """A private copy of the certified data root that a test may tamper with."""
    return DataLayout(Path(shutil.copytree(unsigned_root / "data", tmp_path / "data")))


@pytest.fixture
def signed(signed_root, tmp_path) -> DataLayout:
    return DataLayout(Path(shutil.copytree(signed_root / "data", tmp_path / "data")))


def edit_certificate(layout: DataLayout, market: str, day: dt.date, change) -> None:
    path = certificate_path(layout, market, day)
    certificate = json.loads(path.read_text())
    change(certificate)
    write_json(path, certificate)


def refusal(layout: DataLayout, market: str = SPOT, day: dt.date = DAY8) -> str:
    with pytest.raises(CertificateError) as refused:
        certified_inputs(layout, market, day)
    check = certificate_check_result(layout, market, day)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    return str(refused.value)


def test_an_untouched_unsigned_certificate_is_accepted_and_says_unsigned(unsigned):
    certificate = load_certificate(unsigned, SPOT, DAY8)
    assert certificate["signed"] is False and "signature" not in certificate
    assert set(certified_inputs(unsigned, SPOT, DAY8)) == {"trades", "book", "book_delta_v2"}
    assert certificate_check_result(unsigned, SPOT, DAY8).passed


def test_a_certificate_edited_to_a_tampered_files_hash_is_refused(unsigned):
    ready = ready_path(unsigned, "book", SPOT, DAY8)
    certified = load_certificate(unsigned, SPOT, DAY8)["tables"]["book"]["sha256"]
    ready.write_bytes(ready.read_bytes() + b"tampered")
    tampered = sha256_file(ready)
    edit_certificate(unsigned, SPOT, DAY8, lambda c: c["tables"]["book"].update(sha256=tampered))
    message = refusal(unsigned)
    assert (
        f"book: certified SHA-256 {tampered[:12]} differs from the manifest's latest entry "
        f"{certified[:12]}" in message
    )
    assert f"differs from the gate report's {certified[:12]}" in message
    assert "changed after certification" not in message  # the file matches the edited hash


def test_a_certificate_copied_to_another_date_or_market_is_refused(unsigned):
    source = certificate_path(unsigned, SPOT, DAY8)
    for market, day in ((SPOT, DAY9), (FUTURES, DAY8)):
        target = certificate_path(unsigned, market, day)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        message = refusal(unsigned, market, day)
        assert f"the certificate is for {SPOT} 2024-08-08, not {market} {day}" in message
    # Rewriting the partition it names does not make it another day's certificate.
    edit_certificate(unsigned, SPOT, DAY9, lambda c: c.update(date="2024-08-09"))
    message = refusal(unsigned, SPOT, DAY9)
    assert (
        "trades: certifies staging/ready/trades/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-08"
        in message
    )
    assert certified_inputs(unsigned, SPOT, DAY8)  # the original stays valid


def test_with_a_key_certificates_are_signed_and_verified(signed, monkeypatch):
    certificate = load_certificate(signed, SPOT, DAY8)
    assert certificate["signed"] is True
    assert certificate["signature"]["algorithm"] == "HMAC-SHA256"
    monkeypatch.setenv("RLX_CERTIFICATE_KEY", KEY)
    assert certificate_check_result(signed, SPOT, DAY8).passed
    assert set(certified_inputs(signed, SPOT, DAY8)) == {"trades", "book", "book_delta_v2"}
    # Without the key a signed certificate cannot be verified: refused, naming the variable.
    monkeypatch.delenv("RLX_CERTIFICATE_KEY")
    assert "signed but RLX_CERTIFICATE_KEY is not set" in refusal(signed)


def test_with_a_key_unsigned_edited_and_forged_certificates_are_refused(signed, monkeypatch):
    monkeypatch.setenv("RLX_CERTIFICATE_KEY", KEY)
    path = certificate_path(signed, SPOT, DAY8)
    genuine = json.loads(path.read_text())

    edit_certificate(signed, SPOT, DAY8, lambda c: c["tables"]["trades"].update(rows=1))
    assert "signature does not match the certificate's content" in refusal(signed)

    write_json(path, seal_certificate(genuine, key=None))  # re-written without the key
    assert "unsigned certificate refused: RLX_CERTIFICATE_KEY is set" in refusal(signed)

    write_json(path, seal_certificate(genuine, key=b"a guess at the key"))  # forged
    assert "signature does not match" in refusal(signed)

    write_json(path, genuine)
    assert certificate_check_result(signed, SPOT, DAY8).passed


def test_the_key_never_appears_in_files_logs_metadata_or_errors(signed_root, signed, monkeypatch):
    monkeypatch.setenv("RLX_CERTIFICATE_KEY", KEY)
    assert KEY not in (signed_root / "run_logs.txt").read_text()  # events, metadata, messages
    for path in (signed_root / "data").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    settings = load_settings()
    assert settings.certificate_key.get_secret_value() == KEY
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    edit_certificate(signed, SPOT, DAY8, lambda c: c.update(issued_at="forged"))
    message = refusal(signed)
    check = certificate_check_result(signed, SPOT, DAY8)
    assert KEY not in message and KEY not in str(check.metadata)


def test_a_certificate_cannot_shrink_its_own_list_of_required_tables(unsigned):
    """Edited to require no table and to drop one, an unsigned certificate must not pass:
    the tables to check come from the code."""

    def drop_book(certificate):
        certificate["required_tables"] = []
        del certificate["tables"]["book"]

    edit_certificate(unsigned, SPOT, DAY8, drop_book)
    message = refusal(unsigned)
    assert "book: missing from the certificate" in message
    assert "required tables [] differ from ['trades', 'book', 'book_delta_v2']" in message


def test_a_table_listed_besides_the_required_ones_is_verified_too(unsigned):
    """verified_certificate hands out every listed table: an extra one, pointing at a file that
    is not what it claims, is refused like a required one."""
    trades = load_certificate(unsigned, SPOT, DAY8)["tables"]["trades"]
    edit_certificate(
        unsigned, SPOT, DAY8, lambda c: c["tables"].update(level_1={**trades, "sha256": "0" * 64})
    )
    assert "level_1: " in refusal(unsigned)
