from __future__ import annotations

import pytest

from plyr_rooms.errors import TaskFailed
from plyr_rooms.tasks import TaskResult, TaskState

ADDRESS = "0xAbC0000000000000000000000000000000000001"


class TestStatusShapes:
    def test_success_with_method_and_body(self) -> None:
        result = TaskResult.from_json(
            {
                "taskId": "1717171717171-0",
                "taskData": {
                    "method": "createGameRoom",
                    "body": {"gameId": "g", "expiresIn": 2592000},
                    "result": {"gameId": "g", "roomId": "12", "roomAddress": ADDRESS},
                },
                "status": "SUCCESS",
                "hash": "0x" + "ab" * 32,
                "errorMessage": None,
                "completedAt": "2025-05-31T12:34:56.789Z",
            }
        )
        assert result.state is TaskState.SUCCESS
        assert result.task_id == "1717171717171-0"
        assert result.method == "createGameRoom"
        assert result.body == {"gameId": "g", "expiresIn": 2592000}
        assert (result.room_id, result.room_address) == ("12", ADDRESS)
        assert result.error_message is None

    def test_success_without_result_has_no_room(self) -> None:
        result = TaskResult.from_json(
            {
                "taskId": "1-0",
                "taskData": {"method": "batchPayGameRoom", "body": {"roomId": "1"}},
                "status": "SUCCESS",
            }
        )
        assert result.result is None
        assert result.room_id is None

    def test_historic_numbered_shape(self) -> None:
        result = TaskResult.from_json(
            {
                "taskId": "1-0",
                "taskData": {
                    "0": "createGameRoom",
                    "1": '{"gameId":"g","expiresIn":86400}',
                    "result": {"roomId": 3, "roomAddress": ADDRESS},
                },
                "status": "SUCCESS",
            }
        )
        assert result.method == "createGameRoom"
        assert result.body == {"gameId": "g", "expiresIn": 86400}
        assert result.room_id == "3"

    def test_room_read_from_a_top_level_result(self) -> None:
        """The status code copies a top-level ``result``; the room is read there
        when taskData has none."""
        result = TaskResult.from_json(
            {
                "taskId": "1-0",
                "taskData": {"method": "createGameRoom", "body": {}},
                "status": "SUCCESS",
                "result": {"roomId": "4", "roomAddress": ADDRESS},
            }
        )
        assert (result.room_id, result.room_address) == ("4", ADDRESS)

        nested = TaskResult.from_json(
            {
                "taskId": "1-0",
                "taskData": {"method": "createGameRoom", "result": {"roomId": "5"}},
                "status": "SUCCESS",
                "result": {"roomId": "4"},
            }
        )
        assert nested.room_id == "5"

    def test_failed_array_shape(self) -> None:
        result = TaskResult.from_json(
            {
                "taskId": "1-0",
                "taskData": ["createGameRoom", '{"gameId":"g","expiresIn":2592000}'],
                "status": "FAILED",
                "hash": None,
                "errorMessage": "Transaction Receipt Failed",
                "completedAt": "x",
            }
        )
        assert result.state is TaskState.FAILED
        assert result.method == "createGameRoom"
        assert result.body == {"gameId": "g", "expiresIn": 2592000}
        assert result.room_id is None
        assert "Transaction Receipt Failed" in str(TaskFailed(result))

    @pytest.mark.parametrize("status", ["PENDING", "NOT_FOUND"])
    def test_bare_statuses_take_the_asked_id(self, status: str) -> None:
        result = TaskResult.from_json({"status": status}, task_id="5-1")
        assert result.state is TaskState(status)
        assert result.task_id == "5-1"
        assert not result.state.settled

    def test_sync_timeout_body(self) -> None:
        result = TaskResult.from_json(
            {
                "taskId": "9-0",
                "status": "TIMEOUT",
                "errorMessage": "Task timeout, but still maybe success",
            }
        )
        assert result.state is TaskState.TIMEOUT
        assert result.task_id == "9-0"

    @pytest.mark.parametrize(
        "body", [None, [], {"task": {"id": "1-0"}}, {"status": "DONE"}]
    )
    def test_not_a_status_body(self, body: object) -> None:
        with pytest.raises(ValueError, match="status"):
            TaskResult.from_json(body)

    @pytest.mark.parametrize(
        ("task_id", "completed_at", "seconds"),
        [
            ("1717171717171-0", "2024-05-31T16:09:19.171Z", 42.0),
            ("1717171717171-3", "2024-05-31T16:08:37.671Z", 0.5),
            ("1717171717171-0", None, None),
            ("opaque", "2024-05-31T16:09:19.171Z", None),
            ("1717171717171-0", "yesterday", None),
            ("1717171717171-0", "2024-05-31T16:09:19", None),
        ],
    )
    def test_service_seconds_from_id_and_completion(
        self, task_id: str, completed_at: str | None, seconds: float | None
    ) -> None:
        """Enqueue time from the stream id, completion from completedAt."""
        body = {"taskId": task_id, "status": "FAILED", "completedAt": completed_at}
        result = TaskResult.from_json(body)
        if seconds is None:
            assert result.service_seconds is None
        else:
            assert result.service_seconds == pytest.approx(seconds, abs=1e-6)
