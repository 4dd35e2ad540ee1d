"""Binding downloaded bytes to the vendor's object.

A SHA-256 computed after a download proves nothing about the transfer. What does: the
full-object checksums S3 publishes (`ChecksumMode=ENABLED`: CRC32, CRC32C, CRC64NVME, SHA-1,
SHA-256), the ETag of a single-part object (its MD5) and of a multipart one (MD5 of the parts'
MD5s, `-N`). `TransferDigest` computes the ones the server gave while the bytes stream through
it; `verify_digest` compares them and says how the bytes were verified (`verified_by`), raises
`CorruptTransferError` when they differ, and `UnverifiedTransferError` when nothing binds them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import re
from pathlib import Path
from typing import BinaryIO, Protocol

from rlx_assets.lake.sources import (
    CorruptTransferError,
    LakeObject,
    UnverifiedTransferError,
)

MIB = 1 << 20
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG = re.compile(r"^[0-9a-f]{32}-(?P<parts>\d+)$")


class _Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


@functools.cache
def _checksum_classes() -> dict[str, type[_Hash]]:
    """Full-object checksums by S3's algorithm name: botocore's own implementations (CRC32C
    and CRC64NVME through awscrt, botocore's `crt` extra). Imported when an object has
    checksums (only S3 objects do), so a local lake does not load botocore."""
    from botocore import httpchecksum

    return {
        "crc32": httpchecksum.Crc32Checksum,
        "crc32c": httpchecksum.CrtCrc32cChecksum,
        "crc64nvme": httpchecksum.CrtCrc64NvmeChecksum,
        "sha1": httpchecksum.Sha1Checksum,
        "sha256": httpchecksum.Sha256Checksum,
    }


def is_md5_etag(etag: str | None) -> bool:
    return etag is not None and bool(_MD5_ETAG.match(etag))


def multipart_count(etag: str | None) -> int | None:
    match = _MULTIPART_ETAG.match(etag or "")
    return int(match["parts"]) if match else None


def candidate_part_sizes(size: int, parts: int, known: int | None = None) -> list[int]:
    """Part sizes that split `size` bytes into `parts` parts: the server's, else whole MiBs.

    `ceil(size / p) == parts` holds for `size / parts <= p < size / (parts - 1)`; uploaders
    (aws cli, boto3, rclone) use whole MiB, so usually one candidate fits.
    """
    if known:
        return [known]
    if parts <= 1:
        return [max(size, 1)]
    low, high = size / parts, size / (parts - 1)
    return [m * MIB for m in range(math.ceil(low / MIB), math.ceil(high / MIB)) if m > 0][:8]


class _PartMd5s:
    """The multipart ETag of the bytes for one part size."""

    def __init__(self, part_size: int):
        self.part_size = part_size
        self.done: list[bytes] = []
        self.current = hashlib.md5()
        self.filled = 0

    def update(self, block: bytes) -> None:
        view = memoryview(block)
        while view:
            take = min(len(view), self.part_size - self.filled)
            self.current.update(view[:take])
            self.filled += take
            view = view[take:]
            if self.filled == self.part_size:
                self.done.append(self.current.digest())
                self.current, self.filled = hashlib.md5(), 0

    def etag(self) -> str:
        digests = self.done + ([self.current.digest()] if self.filled else [])
        return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def _full_object_checksums(obj: LakeObject) -> dict[str, str]:
    # A composite checksum ("...-N") is of the parts' checksums, not of the bytes.
    checksums = {a: v for a, v in obj.checksums if "-" not in v}
    return {a: v for a, v in checksums.items() if a in _checksum_classes()} if checksums else {}


class TransferDigest:
    """A writer that hashes what passes through it (and forwards it to `handle`, if any)."""

    def __init__(self, obj: LakeObject, handle: BinaryIO | None = None):
        self.handle = handle
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.checksums: dict[str, _Hash] = {
            a: self.sha256 if a == "sha256" else _checksum_classes()[a]()
            for a in _full_object_checksums(obj)
        }
        self.md5 = hashlib.md5() if is_md5_etag(obj.etag) else None
        parts = multipart_count(obj.etag)
        self.multipart = (
            [_PartMd5s(p) for p in candidate_part_sizes(obj.size, parts, obj.part_size)]
            if parts
            else []
        )

    def write(self, block: bytes) -> int:
        self.size += len(block)
        self.sha256.update(block)
        for name, hasher in self.checksums.items():
            if name != "sha256":
                hasher.update(block)
        if self.md5 is not None:
            self.md5.update(block)
        for parts in self.multipart:
            parts.update(block)
        if self.handle is not None:
            self.handle.write(block)
        return len(block)

    @property
    def sha256_hex(self) -> str:
        return self.sha256.hexdigest()


def digest_file(path: Path, obj: LakeObject, chunk: int = 1 << 20) -> TransferDigest:
    digest = TransferDigest(obj)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.write(block)
    return digest


def verify_digest(obj: LakeObject, digest: TransferDigest, allow_unverified: bool = False) -> str:
    """How the bytes match the server's object (`verified_by`); CorruptTransferError if not.

    Bytes of an object whose server published no digest that could be checked raise
    UnverifiedTransferError, or with `allow_unverified` pass as `unverified (<why>)`; a local
    lake's file is `size-only`.
    """
    if digest.size != obj.size:
        raise CorruptTransferError(f"{obj.uri}: received {digest.size} bytes, expected {obj.size}")
    checks = []
    expected = _full_object_checksums(obj)
    for name, hasher in digest.checksums.items():
        got = base64.b64encode(hasher.digest()).decode()
        if got != expected[name]:
            raise CorruptTransferError(
                f"{obj.uri}: corrupt transfer, {name} of the received bytes is {got}, "
                f"the server's is {expected[name]}"
            )
        checks.append(f"{name}-checksum")
    if digest.md5 is not None:
        if digest.md5.hexdigest() != obj.etag:
            raise CorruptTransferError(
                f"{obj.uri}: corrupt transfer, MD5 of the received bytes is "
                f"{digest.md5.hexdigest()}, the object's ETag is {obj.etag}"
            )
        checks.append("md5-etag")
    elif digest.multipart:
        if any(p.etag() == obj.etag for p in digest.multipart):
            checks.append("multipart-etag")
        elif obj.part_size is not None:
            raise CorruptTransferError(
                f"{obj.uri}: corrupt transfer, multipart ETag of the received bytes "
                f"({obj.part_size}-byte parts) is {digest.multipart[0].etag()}, "
                f"the object's is {obj.etag}"
            )
    if checks:
        return "+".join(checks)
    reason = obj.no_checksum_reason
    if parts := multipart_count(obj.etag) if obj.part_size is None else None:
        tried = ", ".join(f"{p.part_size // MIB} MiB" for p in digest.multipart)
        reason += f"; multipart ETag {obj.etag} of unknown part size: " + (
            f"none of the whole-MiB part sizes {tried} reproduces it"
            if tried
            else f"no whole-MiB part size splits {obj.size} bytes into {parts} parts"
        )
    if not obj.needs_digest:
        return f"size-only ({reason})"
    if allow_unverified:
        return f"unverified ({reason})"
    raise UnverifiedTransferError(
        f"{obj.uri}: the received bytes cannot be verified ({reason}), so they were not stored; "
        "RLX_ALLOW_UNVERIFIED_DOWNLOADS=true stores such files marked unverified"
    )
