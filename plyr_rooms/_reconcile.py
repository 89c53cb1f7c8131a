"""Settling a room's unsettled step from what the service says (never re-sending).

A private module: :class:`~plyr_rooms.room.GameRoom` inherits these methods.
"""

from __future__ import annotations

import logging

from ._roomengine import RoomEngine
from ._roomvalues import Unsettled, revert_proves_nothing
from .errors import InvalidTransition, TaskFailed, TaskLost, TaskTimeout
from .lifecycle import Step, advance
from .tasks import TaskRef, TaskResult, TaskState

__all__ = ["Reconciling"]

logger = logging.getLogger(__name__)


class Reconciling(RoomEngine):
    """Reconcile and resolve: how an unsettled room becomes settled again."""

    async def reconcile(self, *, task_wait: float = 0.0) -> bool:
        """Settle the unsettled step from what the service says; nothing is re-sent.

        The task's status decides when it is SUCCESS or a revert; otherwise, for
        steps that move players in or out, ``isJoined`` does. That nobody moved
        drops a step that moves money only once its task ended FAILED: a task
        still PENDING (or one whose id never came back) may yet run. A lost
        create counts as not done (at worst an empty room is left on chain). A
        PENDING task is waited for up to *task_wait* seconds (through the poller).

        Returns:
            True if the room is settled now (the step applied, with its hooks, or
            dropped); False if the evidence is still not conclusive (see
            :meth:`resolve`).
        """
        async with self._exclusive():
            gone = self.unsettled
            if gone is None:
                return True

            applied, result = await self._evidence(gone, task_wait)
            if applied is None:
                logger.debug("room %s: %s still unsettled", self.key, gone.step)
                return False

            await self._settle_unsettled(gone, applied, result)
            return True

    async def resolve(self, applied: bool) -> None:
        """Settle the unsettled step by the operator's word: it did or did not happen.

        Raises:
            InvalidTransition: if the room is not unsettled.
        """
        async with self._exclusive():
            gone = self.unsettled
            if gone is None:
                raise InvalidTransition(self.state, None, (), "nothing is unsettled")

            await self._settle_unsettled(gone, applied, None)

    async def _settle_unsettled(
        self, gone: Unsettled, applied: bool, result: TaskResult | None
    ) -> None:
        self.unsettled = None
        if not applied:
            await self._j_settled(gone.seq, "NOT_APPLIED", None, record=True)
            return

        new = advance(self.book, gone.step, gone.plyr_ids, gone.payments)
        await self._finish(
            gone.step, new, result, gone.seq, gone.plyr_ids, gone.payments
        )

    async def _evidence(
        self, gone: Unsettled, task_wait: float
    ) -> tuple[bool | None, TaskResult | None]:
        result = None
        if gone.task_id is not None:
            result = await self._status(gone, task_wait)
            if result.state is TaskState.SUCCESS:
                return True, result

            window = self.services.revert_window
            if result.state is TaskState.FAILED and revert_proves_nothing(
                result, gone.step, gone.payments, window
            ):
                return False, result

        joined = await self._membership(gone)
        if joined is False and not _is_final(gone, result):
            # Nobody moved yet, but the task may still be queued (PENDING, or no
            # task id at all): a step that moves money may yet happen, so only
            # the idempotent join and leave may be dropped on that evidence.
            joined = None

        if joined is not None:
            return joined, result

        lost = result is None or result.state in (TaskState.NOT_FOUND, TaskState.FAILED)
        if gone.step is Step.CREATE and lost:
            return False, result

        return None, result

    async def _status(self, gone: Unsettled, task_wait: float) -> TaskResult:
        assert gone.task_id is not None
        result = await self.services.client.task_status(gone.task_id)
        if result.state.settled or task_wait <= 0:
            return result

        ref = TaskRef(gone.task_id, gone.step.method)
        try:
            return await self.services.poller.wait(ref, timeout=task_wait)
        except TaskFailed as failed:
            return failed.result
        except (TaskTimeout, TaskLost):
            return result

    async def _membership(self, gone: Unsettled) -> bool | None:
        # For steps that move players in or out, isJoined tells whether the step
        # (one transaction, all or nothing) happened.
        if self.room_id is None:
            return None

        parts = gone.step.parts
        ids = gone.plyr_ids or tuple(dict.fromkeys(p.plyr_id for p in gone.payments))
        expected: dict[str, bool] = {}
        if Step.JOIN in parts:
            expected.update({p: True for p in ids if p not in self.book.players})

        if Step.LEAVE in parts:
            expected.update({p: False for p in ids if p in self.book.members()})

        if not expected:
            return None

        client = self.services.client
        seen = [
            await client.is_joined(self.room_id, p) == e for p, e in expected.items()
        ]
        if all(seen):
            return True

        return False if not any(seen) else None


def _is_final(gone: Unsettled, result: TaskResult | None) -> bool:
    # Whether "nobody moved" proves the step will never happen: its task ended
    # FAILED (the worker gave up), or the step is a plain join or leave, which
    # may be sent again harmlessly if it does happen later.
    if gone.step in (Step.JOIN, Step.LEAVE):
        return True

    return result is not None and result.state is TaskState.FAILED
