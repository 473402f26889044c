"""Messages over API Gateway's 128 KiB limit, cut into parts that each fit one post.

A part is ``{"type":"part","id":ID,"index":I,"count":N,"data":SLICE}``: the slices of one
message, concatenated in index order, are exactly its JSON text, and ``id`` (32 random hex
characters) tells one message's parts from another's. The browser client reassembles them.

The cuts are made in the slice's escaped form, the bytes that go on the wire: a quote or a
backslash costs two bytes there, a control character up to six, so counting the text's own
size would overflow the limit. A cut never falls inside an escape sequence nor inside a UTF-8
character (a character outside the BMP is one code point here, so its UTF-16 surrogate pair
is never separated). Pure: no Django import.
"""

from __future__ import annotations

import json
import uuid

# API Gateway's limit on one WebSocket message (a post to @connections), in bytes.
MAX_MESSAGE_BYTES = 128 * 1024
# The longest escape ``json.dumps`` writes for a character (``\u001f``).
LONGEST_ESCAPE = 6
BACKSLASH = ord("\\")

__all__ = ["MAX_MESSAGE_BYTES", "split"]


def split(text: str) -> list[bytes]:
    """``[text.encode()]`` when it fits one post, else its parts, each one post of at most
    ``MAX_MESSAGE_BYTES`` bytes (UTF-8 JSON), in index order."""
    encoded = text.encode("utf-8")
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return [encoded]
    escaped = json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8")
    message_id = uuid.uuid4().hex
    digits = 1
    while True:
        # The envelope's size depends on how many digits index and count take.
        room = MAX_MESSAGE_BYTES - len(_envelope(message_id, 10**digits - 1, 10**digits - 1, b""))
        cuts = _cuts(escaped, room)
        if len(str(len(cuts))) <= digits:
            break
        digits += 1
    count = len(cuts)
    return [
        _envelope(message_id, index, count, escaped[start:end])
        for index, (start, end) in enumerate(cuts)
    ]


def _envelope(message_id: str, index: int, count: int, data: bytes) -> bytes:
    """One part; ``data`` is already escaped for a JSON string (keys in the documented order)."""
    head = f'{{"type":"part","id":"{message_id}","index":{index},"count":{count},"data":"'
    return head.encode("ascii") + data + b'"}'


def _cuts(escaped: bytes, room: int) -> list[tuple[int, int]]:
    """(start, end) of consecutive slices of ``escaped``, each at most ``room`` bytes, each
    cut on a character boundary outside any escape sequence."""
    cuts: list[tuple[int, int]] = []
    start = 0
    while start < len(escaped):
        end = min(start + room, len(escaped))
        if end < len(escaped):
            end = _safe_cut(escaped, start, end)
        cuts.append((start, end))
        start = end
    return cuts


def _safe_cut(escaped: bytes, start: int, end: int) -> int:
    """The last position at or before ``end`` (and after ``start``) where ``escaped`` can be
    cut: not inside a UTF-8 character, not inside a backslash escape."""
    while escaped[end] & 0xC0 == 0x80:  # a continuation byte: inside a character
        end -= 1
    # An escape that could contain the cut starts within the LONGEST_ESCAPE - 1 bytes before.
    for position in range(end - 1, max(start, end - LONGEST_ESCAPE) - 1, -1):
        if escaped[position] != BACKSLASH:
            continue
        run = 1
        while position - run >= start and escaped[position - run] == BACKSLASH:
            run += 1
        if run % 2 == 0:
            # The second half of a ``\\`` pair, which ends before the cut.
            return end
        length = LONGEST_ESCAPE if escaped[position + 1] == ord("u") else 2
        return position if position + length > end else end
    return end
