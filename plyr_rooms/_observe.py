"""Transitions and their observers: bounded buffers that never block a room."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import anyio
import attrs

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from .lifecycle import Payment, RoomState, Step
    from .tasks import TaskResult

__all__ = ["Subscription", "Transition", "TransitionHub"]


@attrs.frozen
class Transition:
    """One completed step of one room, as observers see it.

    Attributes:
        room_key: the client-side id of the room.
        room_id: the server's room id (None before create completed).
        step: the step that completed.
        old: the room's state before it.
        new: the room's state after it (FAILED when a hook failed).
        result: the task's final reading; None when no task ran (an already
            joined join, an operator's resolve) or for the FAILED move.
        plyr_ids: the players the step moved.
        payments: the pay or earn entries of the step.
    """

    room_key: str
    room_id: str | None
    step: Step
    old: RoomState
    new: RoomState
    result: TaskResult | None = None
    plyr_ids: tuple[str, ...] = ()
    payments: tuple[Payment, ...] = ()


class Subscription:
    """An async iterator over transitions with a bounded buffer.

    When the buffer is full the oldest transition is dropped and counted in
    :attr:`dropped`: a slow observer loses history, never slows a room down.
    Iteration ends when the source closes (the room ended, the manager drained)
    or :meth:`close` is called.
    """

    def __init__(self, hub: TransitionHub, size: int) -> None:
        if size < 1:
            raise ValueError(f"buffer size must be at least 1, got {size!r}")

        self.size = size
        #: Transitions dropped because the buffer was full.
        self.dropped = 0
        self._hub = hub
        self._items: collections.deque[Transition] = collections.deque()
        self._wake: anyio.Event | None = None
        self._closed = False

    def push(self, item: Transition) -> None:
        """Buffer *item* (dropping the oldest one if full); never blocks."""
        if len(self._items) >= self.size:
            self._items.popleft()
            self.dropped += 1

        self._items.append(item)
        self._notify()

    def finish(self) -> None:
        """End the iteration once the buffered transitions are read."""
        self._closed = True
        self._notify()

    def close(self) -> None:
        """Stop observing; buffered transitions are still returned."""
        self._hub.unsubscribe(self)
        self.finish()

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Transition:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration

            self._wake = anyio.Event()
            await self._wake.wait()

        return self._items.popleft()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class TransitionHub:
    """Fans transitions out to its subscriptions; costs nothing with none."""

    def __init__(self, on_publish: Callable[[Transition], None] | None = None) -> None:
        self._subs: list[Subscription] = []
        self._closed = False
        # Called first with every transition (the manager's bookkeeping).
        self._on_publish = on_publish

    def subscribe(self, buffer: int = 256) -> Subscription:
        """Return a new subscription (already finished if the hub is closed)."""
        sub = Subscription(self, buffer)
        if self._closed:
            sub.finish()
        else:
            self._subs.append(sub)

        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget *sub* (no error if it was already forgotten)."""
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, item: Transition) -> None:
        """Give *item* to every subscription; never blocks."""
        if self._on_publish is not None:
            self._on_publish(item)

        for sub in self._subs:
            sub.push(item)

    def close(self) -> None:
        """Finish every subscription; later ones start finished."""
        self._closed = True
        subs, self._subs = self._subs, []
        for sub in subs:
            sub.finish()

    @property
    def dropped(self) -> int:
        """Transitions dropped so far by the current subscriptions."""
        return sum(sub.dropped for sub in self._subs)
