"""Masking as a user sees it: no byte of any value shown, whatever the overlaps and the chunk splits."""

from __future__ import annotations

import itertools
import random
import string
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kuberunner.trace import Trace
from kuberunner.trace.masking import MASK, Masker


def union_masked(stream: bytes, values: list[str]) -> bytes:
    """The reference: every occurrence found at every position; overlapping ones become one mask."""
    encoded = {v.encode() for v in values if v}
    spans = sorted((i, i + len(v)) for i in range(len(stream)) for v in encoded if stream.startswith(v, i))
    out, position, run = [], 0, None
    for start, end in [*spans, (len(stream) + 1, len(stream) + 1)]:
        if run is not None and start < run[1]:
            run = (run[0], max(run[1], end))
            continue
        if run is not None:
            out += [stream[position : run[0]], MASK]
            position = run[1]
        run = (start, end)
    return b"".join([*out, stream[position:]])


def fed(values: list[str], chunks: list[bytes]) -> bytes:
    masker = Masker(values)
    return b"".join([*(masker.feed(c) for c in chunks), masker.flush()])


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if c <= len(stream)} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(points)]


MASKED_VALUES = ["secret-1", "ecre", "cret-1x", "zz", "s"]


class ListSink:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        pass


@settings(max_examples=300, deadline=None, database=None)
@given(
    pieces=st.lists(
        st.sampled_from([b"secret-1", b"ecre", b"cret-1x", b"zz", b"s", b"e", b"-", b"x", b"\n"]), max_size=30
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8),
)
def test_masking_does_not_depend_on_where_chunks_are_split(pieces: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(pieces)
    trace, sink = Trace(masked=MASKED_VALUES), ListSink()
    trace.add_sink(sink)
    for chunk in split(stream, cuts):
        trace.job_output(chunk)
    trace.close()
    assert sink.data == union_masked(stream, MASKED_VALUES)


def test_two_overlapping_values_are_masked_as_their_union() -> None:
    assert fed(["secret-1", "cret-1x"], [b"a secret-1x b"]) == b"a [MASKED] b"


def test_a_value_overlapping_itself_is_masked_whole() -> None:
    assert fed(["abab"], [b"<ababab>"]) == b"<[MASKED]>"
    assert fed(["aa"], [b"aaaaa!"]) == b"[MASKED]!"


def test_touching_occurrences_stay_two_masks() -> None:
    assert fed(["ab"], [b"abab"]) == b"[MASKED][MASKED]"


def test_an_overlap_split_across_chunks_continues_the_shown_mask() -> None:
    masker = Masker(["x" * 10])
    assert masker.feed(b"<" + b"x" * 15) == b"<[MASKED]"
    assert masker.feed(b"x" * 20) == b""
    assert masker.feed(b"!") == b"!"
    assert masker.flush() == b""


def test_a_runner_line_masks_overlaps_too() -> None:
    assert Masker(["secret-1", "cret-1x"]).mask(b"secret-1x") == b"[MASKED]"


def test_nothing_is_held_when_the_tail_cannot_start_a_value() -> None:
    masker = Masker(["0123456789abcdefXYZ"])
    assert masker.feed(b"progress ...") == b"progress ..."
    assert masker.feed(b"0123456789abcdef") == b""
    assert masker.held == 16
    assert masker.feed(b"Z") == b"0123456789abcdefZ"


def test_a_long_value_costs_memory_linear_in_its_length() -> None:
    value = "".join(chr(0x61 + (i * 7919) % 26) for i in range(20_000))
    near_misses = value.encode()[:-1] * 3 + value.encode()[:10_000]
    tracemalloc.start()
    try:
        masker = Masker([value])
        shown = masker.feed(near_misses) + masker.feed(value.encode()[10_000:]) + masker.flush()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert shown == value.encode()[:-1] * 3 + MASK
    assert peak < 12 * len(near_misses)


@settings(max_examples=400, deadline=None, database=None)
@given(
    values=st.lists(st.text(alphabet="ab", min_size=1, max_size=6), min_size=1, max_size=4),
    stream=st.binary(max_size=80).map(lambda b: bytes(b"ab"[x % 2] for x in b)),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=10),
)
def test_any_values_any_splits_match_the_reference(values: list[str], stream: bytes, cuts: list[int]) -> None:
    assert fed(values, split(stream, cuts)) == union_masked(stream, values)


@settings(max_examples=100, deadline=None, database=None)
@given(
    period=st.text(alphabet="ab", min_size=1, max_size=5),
    repeats=st.integers(min_value=2, max_value=40),
    noise=st.binary(max_size=10),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10),
)
def test_long_periodic_values_in_periodic_output(
    period: str, repeats: int, noise: bytes, cuts: list[int]
) -> None:
    value = period * 8 + period[:1]
    stream = noise + period.encode() * repeats + noise + value.encode() + period.encode() * 3
    assert fed([value], split(stream, cuts)) == union_masked(stream, [value])


def test_long_values_with_split_near_misses_match_the_reference() -> None:
    values = ["".join(chr(0x41 + (i * p) % 23) for i in range(100 + p)) for p in (3, 5, 7, 11)]
    encoded = [v.encode() for v in values]
    stream = b"".join(
        e[:cut] + b"|" + e + e[: cut // 2] for e, cut in itertools.product(encoded, (1, 16, 17, 50, 99))
    )
    for size in (1, 7, 16, 64, 1000):
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert fed(values, chunks) == union_masked(stream, values), size


def long_values() -> list[str]:
    """Two values long enough for the block index, the second starting with the end of the first."""
    rng = random.Random(7)
    first = "".join(rng.choices(string.ascii_letters, k=1100))
    second = first[-300:] + "".join(rng.choices(string.ascii_letters, k=1300))
    return [first, second]


@pytest.mark.parametrize("chunk", [7, 31, 32, 33, 1000, 65536])
def test_long_values_at_every_alignment_with_near_misses(chunk: int) -> None:
    values = long_values()
    first, second = (v.encode() for v in values)
    parts = [b"<" * shift + first + b">" + first[: 40 + shift] + b"|" + second[:-1] for shift in range(70)]
    parts += [first[:-300] + second, first + first, second[:700] + second, b"end"]
    stream = b"".join(parts)
    chunks = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
    shown = fed(values, chunks)
    assert shown == union_masked(stream, values)
    assert first not in shown and second not in shown
    assert shown.count(MASK) == 70 + 3 + 1  # first+second overlapping is one; first+first two


SYLLABLES = ["".join(random.Random(seed).choices(string.ascii_letters, k=400)) for seed in range(3)]


@settings(max_examples=60, deadline=None, database=None)
@given(
    values=st.lists(st.lists(st.integers(0, 2), min_size=3, max_size=5), min_size=1, max_size=3),
    pieces=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 400)), max_size=25),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_long_values_made_of_shared_pieces_match_the_reference(
    values: list[list[int]], pieces: list[tuple[int, int]], cuts: list[int]
) -> None:
    """Long values (the block index) sharing pieces with each other and with the output."""
    masked = ["".join(SYLLABLES[i] for i in value) for value in values]
    stream = b"".join(SYLLABLES[i].encode()[:length] for i, length in pieces)
    stream += masked[0].encode() + b"".join(SYLLABLES[i].encode()[length:] for i, length in pieces)
    assert fed(masked, split(stream, cuts)) == union_masked(stream, masked)
