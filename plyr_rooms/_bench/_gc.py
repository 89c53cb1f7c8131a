"""The cyclic garbage collector during a measured run: its settings and its cost.

With thousands of rooms in flight the process holds millions of objects, and
every full collection walks them all; at CPython's default thresholds that can
be a third of the client's CPU. A run may set other thresholds (what an operator
running that many rooms would do) and always reports what the collector cost.
"""

from __future__ import annotations

import contextlib
import gc
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["collector"]


@contextlib.contextmanager
def collector(threshold: tuple[int, ...] | None) -> Iterator[dict[str, Any]]:
    """Run the block with *threshold* (None: as it is); yield what GC cost.

    The yielded dict is filled when the block ends: ``seconds`` spent in
    collections, ``collections`` per generation, and the ``threshold`` in force.
    """
    stats: dict[str, Any] = {}
    before = gc.get_threshold()
    counts = [0, 0, 0]
    spent = 0.0
    began = 0.0

    def watch(phase: str, info: dict[str, Any]) -> None:
        nonlocal spent, began
        if phase == "start":
            began = time.perf_counter()
        else:
            spent += time.perf_counter() - began
            counts[info["generation"]] += 1

    if threshold is not None:
        gc.set_threshold(*threshold)

    gc.callbacks.append(watch)
    try:
        yield stats
    finally:
        gc.callbacks.remove(watch)
        stats.update(
            seconds=spent, collections=counts, threshold=list(gc.get_threshold())
        )
        gc.set_threshold(*before)
