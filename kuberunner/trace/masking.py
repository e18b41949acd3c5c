"""Masking secret values out of a byte stream that arrives in chunks (sans-I/O).

Every occurrence of every value is masked, overlapping ones too: where occurrences overlap (two
values, or one value with itself, as "abab" in "ababab"), their union becomes one `[MASKED]`, so no
byte of any value is ever shown. Occurrences that only touch stay separate `[MASKED]`s. The result
does not depend on where the stream was cut into chunks.

Cost, whatever the job prints: memory is linear in the values' total length plus the chunk, and at
most (longest value - 1) bytes are held back between chunks. No regex alternation: `re` tries
every value at every byte (8 MB/s with 100 values). Instead:

- a long value (at least `_INDEXED` bytes, no repeated block) is found through an index of its
  `_BLOCK`-byte blocks at every `_VALUE_STRIDE`-th offset: the output is cut into blocks at every
  `_BLOCK`-th byte, and since the two strides differ by one, every occurrence contains an output
  block that is one of its indexed blocks. A near miss costs one comparison, not one per block;
- any other value is searched with `bytes.find` (CPython's two-way search: linear, in C); the
  overlapping occurrences of a periodic value are measured with slice comparisons, not found one
  by one.

The held tail is scanned again with the next chunk, so small chunks cost more per byte with long
values (bench/masking.py). The slow case is a value with long periodic stretches ("aaaa…b") in
output made of those stretches: many of its prefixes then fit the tail, and each is compared.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from itertools import compress
from operator import itemgetter

MASK = b"[MASKED]"

_TAIL_BLOCK = 16
_SHORT = 2 * _TAIL_BLOCK
"""A held tail shorter than this is looked up in a set of value prefixes (fewer than `_SHORT` per
value). A longer one ends with a `_TAIL_BLOCK`-byte block that starts at a multiple of
`_TAIL_BLOCK` in the value, `_TAIL_BLOCK` possible ends back at most: those blocks are indexed."""

_BLOCK = 32
_VALUE_STRIDE = _BLOCK - 1
_INDEXED = _VALUE_STRIDE * _BLOCK + _BLOCK
"""The shortest value the index finds for sure: an occurrence spans `_VALUE_STRIDE` output blocks
in a row, one of which starts at an indexed offset of the value."""
_OUTPUT_BLOCKS = struct.Struct(f"{_BLOCK}s")


class Masker:
    """Replaces masked values in a byte stream, also when a value is split across chunks.

    `feed` returns what is safe to show now and holds back the longest tail that may still become
    part of a value; `flush` ends the stream.
    """

    def __init__(self, values: Iterable[str]) -> None:
        encoded = sorted({v.encode("utf-8", "surrogateescape") for v in values if v})
        self._values = encoded
        self._longest = max((len(v) for v in encoded), default=0)
        self._index: dict[bytes, list[tuple[int, bytes]]] = {}
        self._searched = [v for v in encoded if not self._add_to_index(v)]
        searched = set(self._searched)
        self._short_prefixes = frozenset(v[:n] for v in encoded for n in range(1, min(len(v), _SHORT)))
        self._prefix_blocks: dict[bytes, list[tuple[int, bytes]]] = {}
        for value in encoded:
            # The index finds the held tails of its values from `_INDEXED - 1` bytes on.
            stop = len(value) if value in searched else _INDEXED
            for offset in range(0, stop - _TAIL_BLOCK, _TAIL_BLOCK):
                block = value[offset : offset + _TAIL_BLOCK]
                self._prefix_blocks.setdefault(block, []).append((offset, value))
        self._held = b""
        self._covered = 0
        """How many of the held bytes an already shown `[MASKED]` stands for: a later occurrence
        overlapping them continues that one instead of starting a new one."""

    @property
    def held(self) -> int:
        return len(self._held)

    def feed(self, data: bytes) -> bytes:
        if not self._values:
            return data
        buffer = self._held + data if self._held else data
        found, partial = self._find(buffer)
        keep = self._hold_length(buffer, partial)
        shown, self._covered = _masked(buffer, found, cut=len(buffer) - keep, covered=self._covered)
        self._held = buffer[len(buffer) - keep :]
        return shown

    def flush(self) -> bytes:
        """The held tail, masked as the end of the stream; nothing is held afterwards."""
        held, covered = self._held, self._covered
        self.discard()
        return self._final(held, covered)

    def discard(self) -> None:
        self._held = b""
        self._covered = 0

    def mask(self, data: bytes) -> bytes:
        """Mask a complete piece of text, such as a runner line."""
        return self._final(data, 0)

    def _final(self, data: bytes, covered: int) -> bytes:
        if not self._values or not data:
            return data
        return _masked(data, self._find(data)[0], cut=len(data), covered=covered)[0]

    def _add_to_index(self, value: bytes) -> bool:
        """Index `value` if it is long and none of its indexed blocks repeats (a periodic stretch
        would make every output block of that stretch a candidate at every one of its offsets)."""
        if len(value) < _INDEXED:
            return False
        blocks = {value[o : o + _BLOCK]: o for o in range(0, len(value) - _BLOCK + 1, _VALUE_STRIDE)}
        if len(blocks) < (len(value) - _BLOCK) // _VALUE_STRIDE + 1:
            return False
        for block, offset in blocks.items():
            self._index.setdefault(block, []).append((offset, value))
        return True

    def _find(self, buffer: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, bytes]]]:
        """Spans covering every occurrence, sorted; and (length, value) for each indexed value the
        index says may start in `buffer` and go on past its end (a held-tail candidate)."""
        found = [span for value in self._searched for span in _occurrences(buffer, value)]
        partial: list[tuple[int, bytes]] = []
        if self._index:
            self._indexed_occurrences(buffer, found, partial)
        found.sort()
        return found, partial

    def _indexed_occurrences(
        self, buffer: bytes, found: list[tuple[int, int]], partial: list[tuple[int, bytes]]
    ) -> None:
        whole = len(buffer) - len(buffer) % _BLOCK
        hits = list(map(self._index.get, map(itemgetter(0), _OUTPUT_BLOCKS.iter_unpack(buffer[:whole]))))
        tried: set[tuple[int, int]] = set()
        for at, entries in zip(compress(range(0, whole, _BLOCK), hits), filter(None, hits), strict=True):
            for offset, value in entries:
                start = at - offset
                # A near miss hits many blocks of one value, all at the same start: compare once.
                if start < 0 or (start, id(value)) in tried:
                    continue
                tried.add((start, id(value)))
                if start + len(value) > len(buffer):
                    partial.append((len(buffer) - start, value))
                elif buffer.startswith(value, start):
                    found.append((start, start + len(value)))

    def _hold_length(self, buffer: bytes, candidates: list[tuple[int, bytes]]) -> int:
        """The longest tail of `buffer` that is a proper prefix of a value (it may still become one)."""
        limit = min(self._longest - 1, len(buffer))
        for back in range(min(_TAIL_BLOCK, limit - _SHORT + 1)):
            end = len(buffer) - back
            for offset, value in self._prefix_blocks.get(buffer[end - _TAIL_BLOCK : end], ()):
                length = offset + _TAIL_BLOCK + back
                if _SHORT <= length <= limit and length < len(value):
                    candidates.append((length, value))
        for length, value in sorted(candidates, reverse=True):
            if buffer.endswith(memoryview(value)[:length]):
                return length
        for length in range(min(limit, _SHORT - 1), 0, -1):
            if buffer[-length:] in self._short_prefixes:
                return length
        return 0


def _masked(buffer: bytes, found: list[tuple[int, int]], *, cut: int, covered: int) -> tuple[bytes, int]:
    """`buffer[:cut]` with the `found` spans masked (overlapping ones as one), and how far past `cut`
    the last shown `[MASKED]` reaches. The first `covered` bytes belong to a `[MASKED]` shown before."""
    out: list[bytes] = []
    position = 0
    run_start, run_end, shown = 0, covered, True
    for start, end in [*found, (len(buffer) + 1, len(buffer) + 1)]:
        if start < run_end:
            run_end = max(run_end, end)
            continue
        if run_end > run_start:
            if run_start >= cut and not shown:
                break
            out.append(buffer[position:run_start])
            if not shown:
                out.append(MASK)
            if run_end > cut:
                return b"".join(out), run_end - cut
            position = run_end
        run_start, run_end, shown = start, end, False
    out.append(buffer[position:cut])
    return b"".join(out), 0


def _occurrences(buffer: bytes, value: bytes) -> list[tuple[int, int]]:
    """Spans covering every occurrence of `value`; overlapping occurrences may share one span."""
    spans: list[tuple[int, int]] = []
    size = len(value)
    position = buffer.find(value)
    while position >= 0:
        following = buffer.find(value, position + 1)
        if following < 0 or following >= position + size:
            spans.append((position, position + size))
            position = following
            continue
        # Two overlapping occurrences: `value` has period `step`, and so has the text from
        # `position` on as far as the periodic stretch goes; it holds an occurrence every `step`.
        step = following - position
        stretch = _periodic_end(buffer, position, step, following + size)
        last = position + (stretch - size - position) // step * step
        spans.append((position, last + size))
        position = buffer.find(value, last + 1)
    return spans


def _periodic_end(buffer: bytes, start: int, step: int, known: int) -> int:
    """Where `buffer[start:]` stops repeating with period `step`, knowing it does up to `known`."""
    end, stride = known, max(step, 64)
    # Gallop while whole strides repeat, then narrow down to the first byte that does not.
    while end < len(buffer) and _repeats(buffer, end, min(end + stride, len(buffer)), step):
        end, stride = min(end + stride, len(buffer)), stride * 2
    while stride > 1 and end < len(buffer):
        stride //= 2
        stop = min(end + stride, len(buffer))
        if _repeats(buffer, end, stop, step):
            end = stop
    return end


def _repeats(buffer: bytes, start: int, stop: int, step: int) -> bool:
    return buffer[start:stop] == buffer[start - step : stop - step]
