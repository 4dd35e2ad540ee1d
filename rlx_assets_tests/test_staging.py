"""The SHA-256 of data files, hashed once and trusted only while the file is unchanged, and
files kept or promoted without copying their bytes (issue 25)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from rlx_assets import staging
from rlx_assets.staging import DataLayout, atomic_write_bytes, keep_version, sha256_of, share_file

BODY = bytes(range(256)) * 4096  # 1 MiB


def hashes_read(monkeypatch) -> list[Path]:
    """The files read to be hashed from now on."""
    read: list[Path] = []
    plain = staging.sha256_file

    def counting(path: Path) -> str:
        read.append(path)
        return plain(path)

    monkeypatch.setattr(staging, "sha256_file", counting)
    return read


def edit_keeping_mtime(path: Path) -> None:
    """Change one byte in place, then put the size and the mtime back as they were."""
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(before.st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.fixture
def data_file(tmp_path) -> tuple[DataLayout, Path]:
    layout = DataLayout(tmp_path / "data")
    path = layout.zone("raw") / "trades" / "1.snappy.parquet"
    atomic_write_bytes(path, BODY)
    return layout, path


def test_a_file_is_read_to_hash_it_once_until_it_changes(data_file, monkeypatch):
    layout, path = data_file
    read = hashes_read(monkeypatch)
    assert sha256_of(layout, path) == hashlib.sha256(BODY).hexdigest()
    assert sha256_of(layout, path) == hashlib.sha256(BODY).hexdigest()
    assert read == [path]


def test_an_edited_file_is_hashed_again_even_with_its_mtime_put_back(data_file):
    layout, path = data_file
    assert sha256_of(layout, path) == hashlib.sha256(BODY).hexdigest()
    edit_keeping_mtime(path)
    assert sha256_of(layout, path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha256_of(layout, path) != hashlib.sha256(BODY).hexdigest()


def test_a_forged_entry_does_not_pass_an_edited_file_off_when_certificates_are_signed(
    data_file, monkeypatch
):
    monkeypatch.setenv("RLX_CERTIFICATE_KEY", "a-key-the-editor-does-not-have")
    layout, path = data_file
    certified = sha256_of(layout, path)
    edit_keeping_mtime(path)
    # The editor also rewrites the remembered hash for the file as it is now.
    (entry_file,) = layout.sha256_cache.iterdir()
    entry = json.loads(entry_file.read_text())
    stat = path.stat()
    entry["fingerprint"] = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
    entry_file.write_text(json.dumps(entry))
    assert sha256_of(layout, path) == hashlib.sha256(path.read_bytes()).hexdigest() != certified


def test_a_kept_version_is_the_same_file_not_a_copy(data_file, monkeypatch):
    layout, path = data_file
    read = hashes_read(monkeypatch)
    kept = keep_version(layout, path)
    assert kept.read_bytes() == BODY
    assert kept.stat().st_ino == path.stat().st_ino
    # Replacing the file (every writer does: temp file + rename) leaves the kept one as it was.
    atomic_write_bytes(path, b"a new version")
    assert kept.read_bytes() == BODY
    assert read == [path]  # hashed once, when kept: the link kept what was known
    # Unlinking one of its names moved the inode's ctime: what is left is hashed again, once.
    assert sha256_of(layout, kept) == sha256_of(layout, kept) == hashlib.sha256(BODY).hexdigest()
    assert read == [path, kept]


def test_a_file_is_copied_where_it_cannot_be_linked_and_the_copy_checked(data_file, monkeypatch):
    layout, path = data_file

    def no_link(source, dest):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    dest = layout.zone("ready") / "trades" / "1.snappy.parquet"
    share_file(layout, path, dest, hashlib.sha256(BODY).hexdigest())
    assert dest.read_bytes() == BODY and dest.stat().st_ino != path.stat().st_ino
    with pytest.raises(staging.FileChangedError, match="not"):
        share_file(layout, path, layout.zone("ready") / "other", "0" * 64)
    assert not (layout.zone("ready") / "other").exists()
