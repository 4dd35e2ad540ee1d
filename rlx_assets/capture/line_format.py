"""The golden-sample line format: what the recorder writes and the reader reads.

Every line is one JSON object; a WebSocket frame becomes::

    {"capture_ns":<time.time_ns() at receipt>,"stream":"btcusdt@trade","data":<raw data text>}

``data`` is the exact text of the frame's ``data`` member, spliced in (never parsed and dumped
again), so keys, order, number and string spellings stay the server's. Besides messages:

* REST depth snapshot: ``{"capture_ns":…,"stream":"btcusdt@depthSnapshot","data":<raw body>}``.
* gap marker, one per interruption::

      {"capture_ns":<end_ns>,"stream":"rlx.gap","data":{"start_ns":…,"end_ns":…,"reason":"…","detail":"…"}}

  ``start_ns`` is the ``capture_ns`` of the last message received before the interruption and
  ``end_ns`` that of the first one after it (both lines are in the files; whatever the exchange
  sent strictly between them is missing). ``reason`` is ``disconnect`` (connection lost or
  failed), ``server_close`` (the server closed it, e.g. Binance's 24 h limit),
  ``max_connection_age`` (we reconnected before that limit) or ``queue_overflow`` (the disk could
  not keep up; then ``data`` also has ``"dropped": <lines dropped>``). If the recorder stops while
  disconnected or overflowing, ``end_ns`` is the stop time. The marker line is written just before
  the line at ``end_ns``; the snapshot fetched for the new connection follows it.
* malformed frame (not JSON, not an object with a string ``stream`` and an object ``data``, a
  duplicated ``stream``/``data`` key, or line breaks inside ``data``), kept whole::

      {"capture_ns":…,"stream":"rlx.malformed","malformed":true,"raw":"<frame text>","reason":"…"}

  (a binary frame that is not UTF-8 has ``"raw"`` in base64 and ``"raw_encoding":"base64"``).

Imports nothing of the project: the recorder and the reader both build on it.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

GAP_STREAM = "rlx.gap"
MALFORMED_STREAM = "rlx.malformed"
SNAPSHOT_CHANNEL = "depthSnapshot"


class MalformedFrame(ValueError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_FAST_PREFIX = '{"stream":"'


def split_frame(text: str) -> tuple[str, str]:
    """``(stream, raw data text)`` of a combined-stream frame; raises ``MalformedFrame``.

    The data text is the exact slice of ``text`` holding the ``data`` value, located with the
    json module's own decoder (``raw_decode``), so it is valid JSON that ends where the value ends.
    """
    stream_end = text.find('"', len(_FAST_PREFIX)) if text.startswith(_FAST_PREFIX) else -1
    if stream_end > 0 and text.startswith(',"data":', stream_end + 1):
        stream = text[len(_FAST_PREFIX) : stream_end]
        start = stream_end + 9
        try:
            data, end = _DECODER.raw_decode(text, start)
        except ValueError:
            data, end = None, -1
        if (
            isinstance(data, dict)
            and end == len(text) - 1
            and text[end] == "}"
            and "\\" not in stream
            and stream.isprintable()
        ):
            return stream, _single_line(text[start:end])
    return _split_general(text)


def _single_line(raw: str) -> str:
    # A line break inside data (JSON whitespace) would split the line: keep such a frame raw.
    if "\n" in raw or "\r" in raw:
        raise MalformedFrame("multiline")
    return raw


def _split_general(text: str) -> tuple[str, str]:
    try:
        obj = json.loads(text)
    except ValueError:
        raise MalformedFrame("not_json") from None
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("stream"), str)
        or not isinstance(obj.get("data"), dict)
    ):
        raise MalformedFrame("no_stream_or_data")
    spans = _member_spans(text)
    start, end = spans["data"]
    return obj["stream"], _single_line(text[start:end])


def _member_spans(text: str) -> dict[str, tuple[int, int]]:
    """Spans of the top-level members' values of a JSON object already known to be valid."""
    spans: dict[str, tuple[int, int]] = {}
    i = _WS.match(text, 0).end() + 1  # past "{"
    i = _WS.match(text, i).end()
    if text[i] == "}":
        return spans
    while True:
        key, i = _DECODER.raw_decode(text, i)
        i = _WS.match(text, i).end() + 1  # past ":"
        i = _WS.match(text, i).end()
        _, end = _DECODER.raw_decode(text, i)
        if key in spans and key in ("stream", "data"):
            raise MalformedFrame("duplicate_key")
        spans[key] = (i, end)
        i = _WS.match(text, end).end()
        if text[i] == "}":
            return spans
        i = _WS.match(text, i + 1).end()  # past ","


def message_line(capture_ns: int, stream: str, data_raw: str) -> bytes:
    return (
        f'{{"capture_ns":{capture_ns},"stream":{json.dumps(stream)},"data":{data_raw}}}\n'.encode()
    )


def malformed_line(capture_ns: int, frame: str | bytes, reason: str) -> bytes:
    record: dict[str, Any] = {
        "capture_ns": capture_ns,
        "stream": MALFORMED_STREAM,
        "malformed": True,
    }
    if isinstance(frame, bytes):
        record["raw"] = base64.b64encode(frame).decode("ascii")
        record["raw_encoding"] = "base64"
    else:
        record["raw"] = frame
    record["reason"] = reason
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def gap_line(
    start_ns: int, end_ns: int, reason: str, detail: str = "", dropped: int | None = None
) -> bytes:
    data: dict[str, Any] = {"start_ns": start_ns, "end_ns": end_ns, "reason": reason}
    data["detail"] = detail
    if dropped is not None:
        data["dropped"] = dropped
    record = {"capture_ns": end_ns, "stream": GAP_STREAM, "data": data}
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def snapshot_stream(symbol: str) -> str:
    return f"{symbol.lower()}@{SNAPSHOT_CHANNEL}"


class SnapshotError(ValueError):
    """A REST depth answer that cannot be recorded as a snapshot: an error status, or a body that
    is not a one-line depth snapshot."""


def snapshot_data_text(body: bytes) -> str:
    """The REST body as text, checked to be a one-line depth snapshot object."""
    try:
        text = body.decode("utf-8").strip()
        obj = json.loads(text)
    except ValueError as exc:
        raise SnapshotError(f"body is not JSON: {body[:80]!r}") from exc
    if not isinstance(obj, dict) or "lastUpdateId" not in obj:
        raise SnapshotError(f"body is not a depth snapshot: {body[:80]!r}")
    if "\n" in text or "\r" in text:
        raise SnapshotError("body spans several lines")
    return text
