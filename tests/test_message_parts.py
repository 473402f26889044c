"""``message_parts.split``: a message over 128 KiB becomes parts that each fit one post and
that the client joins back into exactly the message's JSON text."""

from __future__ import annotations

import json
import random
import re

import pytest

from django_aws_api_gateway_websockets import message_parts, sending
from django_aws_api_gateway_websockets.message_parts import MAX_MESSAGE_BYTES, split

LIMIT = 131072


def message_text(data) -> str:
    """A message's JSON text, as ``sending.encode_payload`` makes it."""
    return sending.encode_payload(data).decode("utf-8")


def joined(parts: list[bytes]) -> str:
    """What the browser client does: parse each part, join the slices in index order."""
    documents = [json.loads(part) for part in parts]
    assert [d["index"] for d in documents] == list(range(len(documents)))
    return "".join(d["data"] for d in documents)


def assert_well_formed(parts: list[bytes]) -> None:
    assert len(parts) >= 2
    ids = set()
    for index, part in enumerate(parts):
        assert len(part) <= LIMIT, f"part {index} is {len(part)} bytes"
        document = json.loads(part.decode("utf-8"))
        assert list(document) == ["type", "id", "index", "count", "data"]
        assert (document["type"], document["index"], document["count"]) == (
            "part",
            index,
            len(parts),
        )
        assert re.fullmatch(r"[0-9a-f]{32}", document["id"])
        ids.add(document["id"])
        # The bytes are what json.dumps writes for the same document: no other escaping.
        compact = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        assert part == compact.encode("utf-8")
    assert len(ids) == 1


def test_the_limit_is_api_gateways_and_sendings():
    assert MAX_MESSAGE_BYTES == sending.MAX_MESSAGE_BYTES == LIMIT


@pytest.mark.parametrize("size", [0, 2, 1000, LIMIT])
def test_a_message_within_the_limit_is_itself(size):
    text = "x" * size
    assert split(text) == [text.encode("utf-8")]


@pytest.mark.parametrize("fill", ["x", "é", "漢", "😀"])
def test_exactly_at_the_limit_is_one_post_and_one_byte_over_is_two_parts(fill):
    unit = len(fill.encode())
    at_limit = fill * (LIMIT // unit) + "x" * (LIMIT % unit)
    assert len(at_limit.encode()) == LIMIT
    assert split(at_limit) == [at_limit.encode()]

    over = at_limit + "x"
    parts = split(over)
    assert_well_formed(parts)
    assert len(parts) == 2
    assert joined(parts) == over


@pytest.mark.parametrize(
    "data",
    [
        {"type": "doc", "text": "plain ascii " * 40_000},
        {"type": "doc", "text": '"\\' * 100_000},  # every character escaped in the slice
        {"type": "doc", "text": "\x00\x01\x1f\n\t" * 20_000},  # six-byte \u00XX escapes
        {"type": "doc", "text": "😀🎉🧑‍🤝‍🧑" * 30_000},  # outside the BMP: surrogate pairs in JS
        {"type": "doc", "text": "漢字かな한국어" * 30_000},
        {"type": "doc", "rows": [{"n": n, "s": f'"{n}"\\'} for n in range(15_000)]},
    ],
    ids=["ascii", "quotes-backslashes", "control-characters", "emoji", "cjk", "nested"],
)
def test_parts_join_back_into_the_exact_json_text(data):
    text = message_text(data)
    assert len(text.encode()) > LIMIT

    parts = split(text)

    assert_well_formed(parts)
    assert joined(parts) == text
    assert json.loads(joined(parts)) == data


def test_escaped_size_is_what_counts():
    """300 KiB of quotes is 600 KiB once escaped: it takes five parts, not three."""
    text = '"' * (300 * 1024)
    parts = split(text)
    assert_well_formed(parts)
    assert len(parts) == 5
    assert joined(parts) == text


def test_parts_are_filled_close_to_the_limit():
    parts = split("x" * (1024 * 1024))
    assert len(parts) == 9
    assert all(len(part) > LIMIT - 10 for part in parts[:-1])


def test_no_cut_falls_inside_a_character_or_an_escape():
    """Random mixes of every kind of character: each slice decodes on its own (the JSON
    parse of the part would fail on a cut escape or UTF-8 sequence) and no slice starts with
    the second half of a character."""
    alphabet = ["a", '"', "\\", "\n", "\x01", "\x1f", "é", "漢", "😀", "\\u0041", "/", "\u2028"]
    generator = random.Random(15)
    for _ in range(20):
        size = generator.randint(140_000, 420_000)
        text = "".join(generator.choice(alphabet) for _ in range(size // 2))
        parts = split(text)
        if len(text.encode()) <= LIMIT:
            continue
        assert_well_formed(parts)
        slices = [json.loads(part)["data"] for part in parts]
        assert "".join(slices) == text
        for piece in slices:
            # A lone surrogate cannot be encoded: the JS client would see a broken pair.
            piece.encode("utf-8")


def test_a_cut_just_before_an_escape_boundary_moves_back_to_its_start():
    """Every position of a six-byte escape against the cut: the slices still join."""
    room = LIMIT - len(message_parts._envelope("0" * 32, 9, 9, b""))
    for shift in range(8):
        text = "x" * (room - shift) + "\x01" * 10 + "y" * LIMIT
        parts = split(text)
        assert_well_formed(parts)
        assert joined(parts) == text


def test_each_message_gets_its_own_id():
    text = "x" * (LIMIT + 1)
    first, second = split(text), split(text)
    assert json.loads(first[0])["id"] != json.loads(second[0])["id"]


def test_count_with_more_digits_still_fits():
    """Over ten parts the envelope grows by a digit of index and count: still within."""
    text = "\x01" * (400 * 1024)  # 2.4 MB escaped: ~19 parts
    parts = split(text)
    assert_well_formed(parts)
    assert len(parts) > 10
    assert joined(parts) == text
