# Where the scheduler keeps the tasks that wait for a check, so that a sweep
# looks only at the tasks near their due time instead of at every watched task.
#
# Both containers hold entries ``(key, ordinal, slot, item)`` and delete lazily:
# an entry is live while its slot equals the item's current ``slot``, so the
# scheduler drops every entry of a task at once by bumping that counter (when
# the task is picked, removed or placed again). What a key means, and which
# bound makes a task worth a look, is the scheduler's business.
"""Lazily pruned indices of the tasks waiting for a check."""

from __future__ import annotations

import bisect
import heapq
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = ["KeyHeap", "SortedRun", "merge_due"]

# Rebuild a container once it holds more than twice the entries it held live
# after its last rebuild (plus this slack): stale entries cost amortised O(1).
_SLACK = 64


class _Slotted(Protocol):
    ordinal: int
    slot: int


_T = TypeVar("_T", bound=_Slotted)
_Entry = tuple[float, int, int, _T]


def _live(entry: _Entry[_T]) -> bool:
    return entry[2] == entry[3].slot


class KeyHeap(Generic[_T]):
    """A min-heap of items by key; reads the items up to a bound in place."""

    def __init__(self) -> None:
        self._heap: list[_Entry[_T]] = []
        self._rebuild_at = _SLACK

    def push(self, key: float, item: _T) -> None:
        """Add *item* under *key*, live until its slot changes."""
        heapq.heappush(self._heap, (key, item.ordinal, item.slot, item))
        if len(self._heap) > self._rebuild_at:
            self._heap = [entry for entry in self._heap if _live(entry)]
            heapq.heapify(self._heap)
            self._rebuild_at = 2 * len(self._heap) + _SLACK

    def first(self) -> float | None:
        """Return the least key of a live item, or None."""
        heap = self._heap
        while heap and not _live(heap[0]):
            heapq.heappop(heap)

        return heap[0][0] if heap else None

    def ordered(self) -> Iterator[tuple[float, _T]]:
        """Yield ``(key, item)`` for the live items, least key first, lazily.

        Reads the heap in place; pushing while a walk is under way is not
        allowed.
        """
        self.first()
        heap = self._heap
        frontier = [(heap[0], 0)] if heap else []
        while frontier:
            entry, index = heapq.heappop(frontier)
            if _live(entry):
                yield entry[0], entry[3]

            for child in (2 * index + 1, 2 * index + 2):
                if child < len(heap):
                    heapq.heappush(frontier, (heap[child], child))


class SortedRun(Generic[_T]):
    """Items sorted by key, read from the smallest key up.

    Cheap when keys mostly arrive in order (appended) and leave from the front.
    """

    def __init__(self) -> None:
        self._entries: list[_Entry[_T]] = []
        # Entries before this index are all stale.
        self._head = 0
        self._rebuild_at = _SLACK
        # True only while every entry's ordinal is at least its predecessor's.
        self.ordinals_sorted = True

    def add(self, key: float, item: _T) -> None:
        """Add *item* under *key*, live until its slot changes."""
        entry = (key, item.ordinal, item.slot, item)
        entries = self._entries
        if not entries or entries[-1] < entry:
            entries.append(entry)
            at = len(entries) - 1
        else:
            at = bisect.bisect(entries, entry, lo=self._head)
            entries.insert(at, entry)

        before = entries[at - 1][1] if at > 0 else entry[1]
        after = entries[at + 1][1] if at + 1 < len(entries) else entry[1]
        if not before <= entry[1] <= after:
            self.ordinals_sorted = False

        if len(entries) - self._head > self._rebuild_at:
            self._entries = [e for e in entries[self._head :] if _live(e)]
            self._head = 0
            self._rebuild_at = 2 * len(self._entries) + _SLACK
            ordinals = [e[1] for e in self._entries]
            self.ordinals_sorted = ordinals == sorted(ordinals)

    def scan(self) -> Iterator[tuple[float, _T]]:
        """Yield ``(key, item)`` for the live items, smallest key first.

        Adding while a scan is under way is not allowed.
        """
        entries = self._entries
        head = self._head
        while head < len(entries) and not _live(entries[head]):
            head += 1

        if head > _SLACK and 2 * head > len(entries):
            del entries[:head]
            head = 0

        self._head = head
        for index in range(head, len(entries)):
            entry = entries[index]
            if _live(entry):
                yield entry[0], entry[3]


def merge_due(
    sources: Iterable[Iterator[tuple[float, _T]]],
    place: Callable[[_T], tuple[float, bool]],
    until: float,
) -> Iterator[tuple[float, bool, _T]]:
    """Yield ``(when, queued, item)`` for the items due by *until*, in order.

    The order is by due time, then ordinal. *place* gives an item's due time
    and how it was placed. Each source yields ``(bound, item)`` with bounds that
    never decrease; every item waiting must come from at least one source with
    a bound no later than its due time. Only the items whose bound comes before
    the last due time yielded are ever placed.
    """
    fronts: list[tuple[float, int, _T]] = []
    heads = list(sources)
    opened: list[tuple[float, int, bool, _T]] = []
    seen: set[int] = set()
    for number in range(len(heads)):
        _advance(heads, number, fronts, until)

    while opened or fronts:
        if opened and (not fronts or opened[0][0] < fronts[0][0]):
            when, _, queued, item = heapq.heappop(opened)
            yield when, queued, item
            continue

        _, number, item = heapq.heappop(fronts)
        if item.ordinal not in seen:
            seen.add(item.ordinal)
            when, queued = place(item)
            if when <= until:
                heapq.heappush(opened, (when, item.ordinal, queued, item))

        _advance(heads, number, fronts, until)


def _advance(
    heads: list[Iterator[tuple[float, _T]]],
    number: int,
    fronts: list[tuple[float, int, _T]],
    until: float,
) -> None:
    # Put the next item of source *number* on the fronts, unless it is done.
    head = next(heads[number], None)
    if head is not None and head[0] <= until:
        heapq.heappush(fronts, (head[0], number, head[1]))
