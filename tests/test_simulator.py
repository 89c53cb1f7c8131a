"""The simulator against the API reference's section 9 checklist, over real HTTP.

These tests talk to the simulator with raw signed requests (``Probe``), never
through ``plyr_rooms.client``, so the simulator is checked on its own. Each
test names the checklist row it covers.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import random
import statistics
import time
import types
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import jwt
import pytest

from plyr_rooms.signing import canonical_json, sign_text
from plyr_rooms.simulator import Latency, SimConfig, SimPlayer, Simulator
from plyr_rooms.simulator import _http as sim_http
from plyr_rooms.simulator._eth import is_address
from plyr_rooms.simulator._http import parse_body
from plyr_rooms.simulator._probe import Answer, Probe
from plyr_rooms.tasks import TaskState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# Marked here (not only by the conftest) so that anyio sees the mark while
# collecting, which keeps the parameters of parametrized tests.
pytestmark = pytest.mark.anyio

FAST = SimConfig(
    latency=Latency.fixed(0.002),
    workers=None,
    sync_interval=0.005,
    retry_sleep_scale=0.001,
)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(FAST) as running:
        yield running


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[Probe]:
    async with Probe(sim) as probe:
        yield probe


async def open_room(api: Probe, players: list[SimPlayer]) -> str:
    created = await api.post("/game/create", {"sync": True})
    room_id = str(created.data["taskData"]["result"]["roomId"])
    if players:
        jwts = [p.session_jwt for p in players]
        joined = await api.post("/game/join", {"roomId": room_id, "sessionJwts": jwts})
        await api.settle(joined.task_id)

    return room_id


async def run(api: Probe, path: str, body: dict[str, Any]) -> Answer:
    """Submit asynchronously and return the settled status answer."""
    submitted = await api.post(path, body)
    assert submitted.status == 200, submitted.text
    return await api.settle(submitted.task_id)


def pay_body(
    room_id: str, players: list[SimPlayer], amounts: list[Any]
) -> dict[str, Any]:
    return {
        "roomId": room_id,
        "sessionJwts": [p.session_jwt for p in players],
        "tokens": ["plyr"] * len(players),
        "amounts": amounts,
    }


class TestTransport:
    async def test_paths_are_case_insensitive_with_trailing_slash(
        self, api: Probe
    ) -> None:
        """Row: all routes under /api; case-insensitive paths; trailing slash."""
        answer = await api.get("/NoW/")
        assert answer.status == 200
        assert answer.data["now"].endswith("Z")

        outside = await api.request("GET", "/now", absolute=True)
        assert (outside.status, outside.text) == (404, "Not Found")
        assert outside.headers["Content-Type"].startswith("text/plain")

    async def test_wrong_method_is_405_text(self, api: Probe) -> None:
        """Row: 405 text/plain Method Not Allowed."""
        answer = await api.request("DELETE", "/game/create", headers=api.headers("{}"))
        assert (answer.status, answer.text) == (405, "Method Not Allowed")

    async def test_welcome_needs_no_auth(self, api: Probe) -> None:
        """Row: GET /api/ welcome message."""
        answer = await api.request("GET", "/")
        assert answer.data == {"message": "Welcome to the API"}

    @pytest.mark.parametrize(
        "text",
        [
            "{bad",
            "null",
            "42",
            '"x"',
            '{"__proto__":{"a":1}}',
            '{"a":{"constructor":{"prototype":{"b":1}}}}',
            "{}{",
        ],
    )
    async def test_malformed_json_is_400_text(self, api: Probe, text: str) -> None:
        """Row: strict JSON; malformed / null / __proto__ / constructor.prototype
        -> 400 text Bad Request."""
        headers = api.headers("{}")
        headers["Content-Type"] = "application/json"
        answer = await api.request(
            "POST", "/game/create", data=text.encode(), headers=headers
        )
        assert (answer.status, answer.text) == (400, "Bad Request")

    async def test_a_bom_before_the_body_is_tolerated(self, api: Probe) -> None:
        """Row: a UTF-8 BOM before the JSON body is skipped; the body signs as
        the JSON after it."""
        headers = api.headers('{"expiresIn":600}')
        headers["Content-Type"] = "application/json"
        data = b"\xef\xbb\xbf" + b'{"expiresIn":600}'
        answer = await api.request("POST", "/game/create", data=data, headers=headers)
        assert answer.status == 200, answer.text
        assert isinstance(answer.data, dict)
        assert answer.data["task"]["status"] == "PENDING"

    async def test_body_limit(self, api: Probe) -> None:
        """Row: 1 MB body limit."""
        text = '{"pad":"' + "x" * (1024 * 1024) + '"}'
        headers = api.headers(text)
        headers["Content-Type"] = "application/json"
        answer = await api.request(
            "POST", "/game/create", data=text.encode(), headers=headers
        )
        assert answer.status == 413

    async def test_other_content_types_sign_an_empty_object(self, api: Probe) -> None:
        """Row: other content types -> {} (and that is what gets signed)."""
        headers = api.headers("{}")
        headers["Content-Type"] = "text/plain"
        data = b'{"sync": true}'
        answer = await api.request("POST", "/game/create", data=data, headers=headers)
        assert answer.status == 200
        assert answer.data["task"]["status"] == "PENDING"

    async def test_form_bodies_are_parsed_as_strings(self, api: Probe) -> None:
        """Row: form bodies parsed (all values strings; "0" is truthy)."""
        headers = api.headers(canonical_json({"sync": "0"}))
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        answer = await api.request(
            "POST", "/game/create", data=b"sync=0", headers=headers
        )
        assert answer.data["status"] == "SUCCESS"


class TestAuthentication:
    async def test_signatures_are_compared_in_constant_time(
        self, api: Probe, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Row: the signature check is hmac.compare_digest, not ==, for a good
        signature and a bad one alike."""
        seen: list[tuple[bytes, bytes]] = []
        compare = hmac.compare_digest

        def recording(a: bytes, b: bytes) -> bool:
            seen.append((a, b))
            return compare(a, b)

        monkeypatch.setattr(hmac, "compare_digest", recording)
        good = api.headers("{}")
        bad = {**good, "signature": "0" * 64}
        assert (await api.request("GET", "/now", headers=good)).status == 200
        assert (await api.request("GET", "/now", headers=bad)).status == 401
        assert [b for _, b in seen] == [good["signature"].encode(), b"0" * 64]

    async def test_signature_covers_the_reserialised_body(self, api: Probe) -> None:
        """Row: HMAC over timestamp + JSON.stringify(parsed body)."""
        text = '{ "expiresIn" : 6.0e1,\n "note": "caf\\u00e9" }'
        good = api.headers('{"expiresIn":60,"note":"café"}')
        good["Content-Type"] = "application/json"
        answer = await api.request(
            "POST", "/game/create", data=text.encode(), headers=good
        )
        assert answer.status == 200, answer.text

        raw = api.headers(text)
        raw["Content-Type"] = "application/json"
        answer = await api.request(
            "POST", "/game/create", data=text.encode(), headers=raw
        )
        assert answer.data == {"error": "Invalid signature"}

    async def test_get_signs_an_empty_object_not_null(self, api: Probe) -> None:
        """Row: GET -> "{}"; lower-case hex only."""
        answer = await api.request("GET", "/now", headers=api.headers("null"))
        assert (answer.status, answer.data) == (401, {"error": "Invalid signature"})

        headers = api.headers("{}")
        headers["signature"] = headers["signature"].upper()
        answer = await api.request("GET", "/now", headers=headers)
        assert answer.data == {"error": "Invalid signature"}

    async def test_order_of_checks(self, api: Probe, sim: Simulator) -> None:
        """Row: check order and messages of 2.5."""
        stale = str(int(time.time() * 1000) - 301_000)
        cases = [
            (
                {"apikey": sim.api_key, "timestamp": stale},
                "Missing authentication headers",
            ),
            ({**api.headers("{}"), "apikey": "nope"}, "Invalid API key"),
            (
                {**api.headers("{}", timestamp=stale), "signature": "0" * 64},
                "Invalid signature",
            ),
            (api.headers("{}", timestamp=stale), "Request expired"),
        ]
        for headers, message in cases:
            answer = await api.request("GET", "/now", headers=headers)
            assert (answer.status, answer.data) == (401, {"error": message})

    async def test_window_and_nan_timestamps(self, api: Probe) -> None:
        """Row: +/-300 000 ms window; NaN timestamps pass; parseInt prefixes count."""
        now = int(time.time() * 1000)
        for stamp, status in [
            (str(now + 290_000), 200),
            (str(now - 290_000), 200),
            (str(now + 310_000), 401),
            ("not-a-number", 200),
            ("1700000000000abc", 401),
            (hex(now), 200),  # parseInt reads "0x" digits in base 16
            (hex(now).upper().replace("X", "x"), 200),
            ("0x1", 401),
        ]:
            answer = await api.request(
                "GET", "/now", headers=api.headers("{}", timestamp=stamp)
            )
            assert answer.status == status, stamp

    async def test_the_window_is_inclusive_to_the_millisecond(
        self, api: Probe, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Row: exactly 300 000 ms away is accepted, 300 001 is not."""
        now = int(time.time() * 1000)
        # The simulator's clock stands still 0.4 ms past *now*: the server's
        # Date.now() is whole milliseconds, so an exact 300,000 stays inside.
        clock = types.SimpleNamespace(time_ns=lambda: now * 1_000_000 + 400_000)
        monkeypatch.setattr(sim_http, "time", clock)
        for stamp, status in [
            (now - 300_000, 200),
            (now + 300_000, 200),
            (now - 300_001, 401),
            (now + 300_001, 401),
        ]:
            answer = await api.request(
                "GET", "/now", headers=api.headers("{}", timestamp=str(stamp))
            )
            assert answer.status == status, stamp - now

    async def test_roles(self, api: Probe) -> None:
        """Row: role hierarchy with 403."""
        answer = await api.get("/status")
        assert (answer.status, answer.data) == (
            403,
            {"error": "Insufficient permissions"},
        )

    async def test_caller_game_is_the_key_owner(
        self, api: Probe, sim: Simulator
    ) -> None:
        """Row: caller's game = the API key's plyrId (body gameId changes nothing)."""
        answer = await api.post("/game/create", {"gameId": "other", "sync": 1})
        assert answer.data["taskData"]["result"]["gameId"] == sim.game_id


class TestSessions:
    async def test_jwt_claims_and_public_key(self, api: Probe, sim: Simulator) -> None:
        """Row: ES256 JWTs with the claims in order; base64 PEM public key."""
        (player,) = await sim.add_players(1)
        answer = await api.get("/jwt/publicKey")
        pem = base64.b64decode(answer.data["publicKey"])
        assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")

        claims = jwt.decode(player.session_jwt, pem, algorithms=["ES256"])
        assert list(claims) == [
            "plyrId", "nonce", "gameId", "primaryAddress", "mirrorAddress", "iat", "exp"
        ]  # fmt: skip
        assert claims["plyrId"] == player.plyr_id
        assert claims["gameId"] == sim.game_id
        assert claims["exp"] - claims["iat"] == 86_400
        assert jwt.get_unverified_header(player.session_jwt)["alg"] == "ES256"

    async def test_only_the_newest_jwt_works(self, api: Probe, sim: Simulator) -> None:
        """Row: per (user, game) nonce: a new login kills the previous JWT."""
        (player,) = await sim.add_players(1)
        room_id = await open_room(api, [])
        fresh = sim.relogin(player.plyr_id)
        body = {"roomId": room_id, "sessionJwts": [player.session_jwt]}
        answer = await api.post("/game/join", body)
        assert answer.status == 401
        assert answer.data == {
            "error": "Invalid sessionJwts",
            "invalidPlyrIds": {player.plyr_id: "JWT nonce is expired"},
        }
        answer = await api.post(
            "/game/join", {"roomId": room_id, "sessionJwts": [fresh]}
        )
        assert answer.status == 200

    async def test_lapsed_deadline(self, api: Probe, sim: Simulator) -> None:
        """Row: per (user, game) deadline."""
        (player,) = await sim.add_players(1)
        sim.expire_session(player.plyr_id)
        answer = await api.post(
            "/game/join", {"roomId": "1", "sessionJwts": [player.session_jwt]}
        )
        assert answer.data["invalidPlyrIds"] == {
            player.plyr_id: "JWT deadline is expired"
        }

    async def test_check_session_jwts_errors(self, api: Probe, sim: Simulator) -> None:
        """Row: checkSessionJwts order, `unknown` key, 400 empty, gameId override."""
        (player,) = await sim.add_players(1)
        body: dict[str, Any] = {
            "roomId": "1",
            "sessionJwts": ["junk", "x.y.z", player.session_jwt],
        }
        answer = await api.post("/game/join", body)
        assert answer.data["invalidPlyrIds"] == {"unknown": "Invalid sessionJwt"}

        body = {
            "roomId": "1",
            "sessionJwts": [player.session_jwt],
            "gameId": "Sim-Game",
        }
        answer = await api.post("/game/join", body)
        assert answer.data["invalidPlyrIds"] == {player.plyr_id: "Invalid gameId"}

        empties: list[object] = [[], None, ""]
        for empty in empties:
            answer = await api.post("/game/join", {"roomId": "1", "sessionJwts": empty})
            assert (answer.status, answer.data) == (
                400,
                {"error": "sessionJwts is empty"},
            )

        answer = await api.post("/game/join", {"roomId": "1", "sessionJwts": "abc"})
        assert answer.status == 500


class TestTasks:
    async def test_ids_and_async_reply(self, api: Probe) -> None:
        """Row: task ids "<ms>-<seq>", monotonic; async reply {task:{id,status}}."""
        ids = []
        for _ in range(5):
            answer = await api.post("/game/create", {})
            assert list(answer.data) == ["task"]
            assert answer.data["task"]["status"] == "PENDING"
            ids.append(answer.task_id)

        keys = [tuple(int(part) for part in task_id.split("-")) for task_id in ids]
        assert keys == sorted(keys)
        assert len(set(keys)) == 5

    async def test_status_shapes(self, api: Probe, sim: Simulator) -> None:
        """Row: status endpoint shapes, key order, bare PENDING / NOT_FOUND, 500."""
        async with Simulator(latency=Latency.fixed(60)) as slow, Probe(slow) as probe:
            waiting = await probe.post("/game/create", {})
            pending = await probe.get(f"/task/status/{waiting.task_id}")
            assert pending.text == '{"status":"PENDING"}'

        submitted = await api.post("/game/create", {})
        done = await api.settle(submitted.task_id)
        keys = ["taskId", "taskData", "status", "hash", "errorMessage", "completedAt"]
        assert list(done.data) == keys
        assert done.data["errorMessage"] is None
        assert list(done.data["taskData"]) == ["method", "body", "result"]

        failed = await run(api, "/game/end", {"roomId": "99"})
        assert list(failed.data) == keys
        assert failed.data["hash"] is None
        assert failed.data["taskData"] == [
            "endGameRoom",
            '{"gameId":"sim-game","roomId":"99"}',
        ]

        unknown = await api.get("/task/status/1-0")
        assert unknown.text == '{"status":"NOT_FOUND"}'
        bad = await api.get("/task/status/abc")
        assert bad.status == 500
        assert (
            bad.data["error"]
            == "ERR Invalid stream ID specified as stream command argument"
        )

    async def test_result_only_when_not_empty(self, api: Probe, sim: Simulator) -> None:
        """Row: SUCCESS taskData has `result` only for create-type tasks."""
        players = await sim.add_players(1)
        room_id = await open_room(api, [])
        joined = await run(api, "/game/join", pay_body(room_id, players, []))
        assert list(joined.data["taskData"]) == ["method", "body"]

        made = await run(api, "/game/createJoinPay", pay_body("", players, ["1"]))
        result = made.data["taskData"]["result"]
        assert list(result) == ["gameId", "roomId", "roomAddress"]

    async def test_body_is_what_the_controller_enqueued(
        self, api: Probe, sim: Simulator
    ) -> None:
        """Row: taskData.body: lower-cased, merged, defaulted, join subset, roomId."""
        players = await sim.add_players(2)
        created = await run(api, "/game/create", {"expiresIn": 0})
        assert created.data["taskData"]["body"] == {
            "gameId": "sim-game",
            "expiresIn": 2592000,
        }

        room_id = await open_room(api, players[:1])
        jwts = [p.session_jwt for p in players]
        joined = await run(
            api, "/game/join", {"roomId": int(room_id), "sessionJwts": jwts}
        )
        assert joined.data["taskData"]["body"] == {
            "plyrIds": [players[1].plyr_id],
            "gameId": "sim-game",
            "roomId": int(room_id),
        }

        body = pay_body(
            room_id, [players[0], players[0], players[1]], ["0.1", 0.2, "3"]
        )
        body["tokens"] = ["PLYR", "plyr", "Plyr"]
        paid = await run(api, "/game/pay", body)
        assert paid.data["taskData"]["body"] == {
            "plyrIds": [players[0].plyr_id, players[1].plyr_id],
            "gameId": "sim-game",
            "roomId": room_id,
            "tokens": ["plyr", "plyr"],
            "amounts": ["0.3", "3"],
        }

    async def test_sync_truthiness_and_failed_is_200(self, api: Probe) -> None:
        """Row: sync truthy test; 200 for SUCCESS and FAILED."""
        truthy: list[object] = [True, 1, "yes", "false", [], {}]
        for flag in truthy:
            answer = await api.post("/game/create", {"sync": flag})
            assert answer.data["status"] == "SUCCESS", flag

        falsy: list[object] = [False, 0, None, ""]
        for flag in falsy:
            answer = await api.post("/game/create", {"sync": flag})
            assert "task" in answer.data, flag

        failed = await api.post("/game/end", {"roomId": "77", "sync": True})
        assert (failed.status, failed.data["status"]) == (200, "FAILED")

    async def test_sync_timeout_is_504(self) -> None:
        """Row: 504 TIMEOUT body when the sync budget runs out."""
        config = SimConfig(
            latency=Latency.fixed(5.0), sync_checks=3, sync_interval=0.005
        )
        async with Simulator(config) as sim, Probe(sim) as api:
            answer = await api.post("/game/create", {"sync": True})
            assert answer.status == 504
            assert answer.data == {
                "taskId": answer.data["taskId"],
                "status": "TIMEOUT",
                "errorMessage": "Task timeout, but still maybe success, you can check"
                " the task status by taskId later",
            }

    async def test_sync_join_waits_for_everyone(
        self, api: Probe, sim: Simulator
    ) -> None:
        """Row: join's second sync phase (a FAILED join still answers 200)."""
        players = await sim.add_players(2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await api.post(
            "/game/join", {**pay_body("5", players, []), "sync": True}
        )
        elapsed = loop.time() - started
        assert (answer.status, answer.data["status"]) == (200, "FAILED")
        assert answer.data["errorMessage"] == "Transaction Receipt Failed"
        # The second phase re-read isJoined sync_checks times before answering.
        phase = FAST.sync_checks * 2 * FAST.sync_interval
        assert elapsed >= phase

        room_id = await open_room(api, [])
        started = loop.time()
        answer = await api.post(
            "/game/join", {**pay_body(room_id, players, []), "sync": True}
        )
        assert (answer.status, answer.data["status"]) == (200, "SUCCESS")
        assert loop.time() - started < phase  # everyone in: no second wait

    async def test_sequential_worker_keeps_submission_order(self) -> None:
        """Row: configurable worker: sequential processing with per-task latency."""
        config = SimConfig(latency=Latency.uniform(0.001, 0.004), workers=1, seed=3)
        async with Simulator(config) as sim, Probe(sim) as api:
            ids = [(await api.post("/game/create", {})).task_id for _ in range(8)]
            await api.settle(ids[-1])
            records = sim.ledger().tasks
            assert [r.task_id for r in records] == ids
            finished = [r.completed_at for r in records]
            assert all(t is not None for t in finished)
            assert finished == sorted(finished)  # type: ignore[type-var]
            rooms = [(await api.get(f"/task/status/{i}")).data for i in ids]
            assert [r["taskData"]["result"]["roomId"] for r in rooms] == [
                str(n) for n in range(1, 9)
            ]

    async def test_transient_errors_retry_three_times(
        self, api: Probe, sim: Simulator
    ) -> None:
        """Row: transient errors: 3 attempts, errorMessage = shortMessage."""
        players = await sim.add_players(1)
        room_id = await open_room(api, players)
        failed = await run(api, "/game/pay", pay_body(room_id, players, [1e-7]))
        assert failed.data["status"] == "FAILED"
        assert (
            failed.data["errorMessage"]
            == "Number `1e-7` is not a valid decimal number."
        )
        # Three attempts, each followed by a 1, 2, 3 s sleep scaled down.
        record = sim.ledger().tasks[-1]
        assert record.completed_at is not None
        least = 3 * 0.002 + 6 * FAST.retry_sleep_scale
        assert record.completed_at - record.submitted_at >= least

    def test_latency_models_are_seeded_and_shaped(self) -> None:
        """Task latency: fixed, uniform or log-normal, drawn from a seeded source."""
        models = [
            Latency.fixed(0.3),
            Latency.uniform(0.1, 0.5),
            Latency.lognormal(2.0, 0.5),
        ]
        for model in models:
            first = [model.sample(random.Random(5)) for _ in range(3)]
            rng_a, rng_b = random.Random(9), random.Random(9)
            assert [model.sample(rng_a) for _ in range(50)] == [
                model.sample(rng_b) for _ in range(50)
            ]
            assert len(set(first)) == 1

        assert {Latency.fixed(0.3).sample(random.Random(n)) for n in range(5)} == {0.3}
        rng = random.Random(1)
        uniform = [Latency.uniform(0.1, 0.5).sample(rng) for _ in range(2000)]
        assert all(0.1 <= x <= 0.5 for x in uniform)
        assert 0.28 < statistics.fmean(uniform) < 0.32
        lognormal = [Latency.lognormal(2.0, 0.5).sample(rng) for _ in range(2000)]
        assert 1.8 < statistics.median(lognormal) < 2.2
        assert max(lognormal) > 2 * 2.0  # a long right tail
        assert min(lognormal) > 0

    def test_sync_budget_defaults_to_the_servers(self) -> None:
        """Row: sync mode polls 50 times, 500 ms apart; one sequential consumer."""
        config = SimConfig()
        assert (config.sync_checks, config.sync_interval) == (50, 0.5)
        assert config.workers == 1
        assert config.retry_sleep_scale == 1.0

    @pytest.mark.parametrize("workers", [1, 2, None])
    async def test_worker_concurrency(self, workers: int | None) -> None:
        """Row: configurable worker: at most `workers` tasks in service at once."""
        latency = 0.1
        config = SimConfig(latency=Latency.fixed(latency), workers=workers)
        async with Simulator(config) as sim, Probe(sim) as api:
            ids = [(await api.post("/game/create", {})).task_id for _ in range(6)]
            for task_id in ids:
                await api.settle(task_id)

            records = sim.ledger().tasks

        spans = []
        for record in records:
            assert record.completed_at is not None
            spans.append((record.completed_at - latency, record.completed_at))

        # Tasks in service at the same moment (a start inside another's span).
        overlap = max(
            sum(1 for s, e in spans if s <= start < e - 1e-9) for start, _ in spans
        )
        assert overlap <= (workers or 6)
        if workers is not None:
            last = max(end for _, end in spans)
            assert last - records[0].submitted_at >= latency * (6 // workers)
        else:
            assert overlap > 2


class TestRooms:
    async def test_room_ids_and_addresses(self, api: Probe) -> None:
        """Row: sequential room ids from "1"; deterministic EIP-55 roomAddress."""
        results = [(await run(api, "/game/create", {})).data for _ in range(3)]
        rooms = [r["taskData"]["result"] for r in results]
        assert [r["roomId"] for r in rooms] == ["1", "2", "3"]
        for room in rooms:
            address = room["roomAddress"]
            assert is_address(address)
            assert address != address.lower()

        # Deterministic: another simulator of the same game gives the same rooms.
        async with Simulator(FAST) as other, Probe(other) as probe:
            again = [(await run(probe, "/game/create", {})).data for _ in range(3)]

        assert [r["taskData"]["result"] for r in again] == rooms

    async def test_numeric_room_id_is_500(self, api: Probe, sim: Simulator) -> None:
        """Row: 500 for non-string roomId on pay/earn/leave/end/helpers."""
        players = await sim.add_players(1)
        await open_room(api, players)
        jwts = [players[0].session_jwt]
        earn = {"plyrIds": [players[0].plyr_id], "tokens": ["plyr"], "amounts": [0]}
        bodies = {
            "/game/pay": pay_body(1, players, ["1"]),  # type: ignore[arg-type]
            "/game/earn": {"roomId": 1, **earn},
            "/game/leave": {"roomId": 1, "sessionJwts": jwts},
            "/game/end": {"roomId": 1},
            "/game/joinPay": pay_body(1, players, ["1"]),  # type: ignore[arg-type]
            "/game/earnLeave": {"roomId": 1, **earn},
        }  # fmt: skip
        for path, body in bodies.items():
            answer = await api.post(path, body)
            assert answer.status == 500, path
            assert answer.data["error"] == "roomId.toLowerCase is not a function", path

    async def test_join_when_all_joined_has_no_task(
        self, api: Probe, sim: Simulator
    ) -> None:
        """Row: `All players are already joined`, 200, no task (even with sync)."""
        players = await sim.add_players(2)
        room_id = await open_room(api, players)
        answer = await api.post(
            "/game/join", {**pay_body(room_id, players, []), "sync": True}
        )
        assert (answer.status, answer.data) == (
            200,
            {"message": "All players are already joined"},
        )

    async def test_pay_chain_errors(self, api: Probe, sim: Simulator) -> None:
        """Row: pay's middleware chain: 401 strings vs arrays."""
        players = await sim.add_players(2)
        room_id = await open_room(api, players[:1])
        second = players[1].plyr_id
        cases: list[tuple[dict[str, Any], object]] = [
            ({"tokens": None}, "Token is required"),
            ({"tokens": ["plyr", "doge"]}, "Invalid token: doge"),
            ({"amounts": ["1"]}, "Tokens and amounts must be the same length"),
            (
                {"amounts": ["-1", "2000"]},
                ["Invalid amount: -1", f"Insufficient allowance: {second}"],
            ),
            ({}, [f"Player is not joined: {second}"]),
        ]
        for change, error in cases:
            body = {**pay_body(room_id, players, ["1", "1"]), **change}
            answer = await api.post("/game/pay", body)
            assert (answer.status, answer.data) == (401, {"error": error}), change

    async def test_helper_length_mismatch_is_400(
        self, api: Probe, sim: Simulator
    ) -> None:
        """Row: 400 `Input params was incorrect.` for the helpers."""
        players = await sim.add_players(2)
        body = {
            **pay_body("1", players, ["1", "1"]),
            "tokens": ["plyr"],
            "amounts": ["1"],
        }
        answer = await api.post("/game/joinPay", body)
        assert (answer.status, answer.data) == (
            400,
            {"error": "Input params was incorrect."},
        )

        body = {"roomId": "1", "plyrIds": ["a1"], "tokens": ["plyr"], "amounts": []}
        answer = await api.post("/game/earnLeave", body)
        assert (answer.status, answer.data) == (
            400,
            {"error": "Input params was incorrect."},
        )

    async def test_token_addresses_pass_then_fail(
        self, api: Probe, sim: Simulator
    ) -> None:
        """Row: addresses accepted by the API; the task FAILS with errorMessage null."""
        players = await sim.add_players(1)
        room_id = await open_room(api, players)
        # Amount 0 skips the allowance check, which knows only listed tokens.
        body = {**pay_body(room_id, players, [0]), "tokens": ["0x" + "0" * 40]}
        failed = await run(api, "/game/pay", body)
        assert failed.data["status"] == "FAILED"
        assert failed.data["errorMessage"] is None

    @pytest.mark.parametrize(
        ("amount", "message"),
        [
            ("1e3", "Number `1e3` is not a valid decimal number."),
            (1e21, "Number `1e+21` is not a valid decimal number."),
            ("", "Number `` is not a valid decimal number."),
        ],
    )
    async def test_amounts_parse_like_parse_units(
        self, api: Probe, sim: Simulator, amount: object, message: str
    ) -> None:
        """Row: parseUnits rules: exponent forms and "" -> FAILED with viem's text."""
        players = await sim.add_players(1)
        sim.approve(players[0].plyr_id, "1e30")
        room_id = await open_room(api, players)
        failed = await run(api, "/game/joinPay", pay_body(room_id, players, [amount]))
        assert (failed.data["status"], failed.data["errorMessage"]) == (
            "FAILED",
            message,
        )

    async def test_negative_earn_fails_in_the_worker(
        self, api: Probe, sim: Simulator
    ) -> None:
        """Row: negatives -> FAILED with viem's range error (pay: 401 first)."""
        players = await sim.add_players(1)
        room_id = await open_room(api, players)
        answer = await api.post("/game/pay", pay_body(room_id, players, ["-1"]))
        assert (answer.status, answer.data) == (401, {"error": ["Invalid amount: -1"]})

        body = {"roomId": room_id, "plyrIds": [players[0].plyr_id], "tokens": ["plyr"]}
        failed = await run(api, "/game/earn", {**body, "amounts": ["-1"]})
        assert failed.data["errorMessage"] == (
            'Number "-1000000000000000000n" is not in safe 256-bit unsigned integer'
            f" range (0n to {2**256 - 1}n)"
        )

    async def test_excess_decimals_round(self, api: Probe, sim: Simulator) -> None:
        """Row: rounding of excess decimals (half up at the 18th decimal)."""
        players = await sim.add_players(1)
        room_id = await open_room(api, players)
        body = pay_body(room_id, players, ["0.0000000000000000015"])
        assert (await run(api, "/game/pay", body)).data["status"] == "SUCCESS"
        funds = sim.ledger().rooms[room_id].funds["plyr"]
        assert funds == Decimal("0.000000000000000002")

    async def test_earn_amounts_default_to_zero(
        self, api: Probe, sim: Simulator
    ) -> None:
        """Row: earn falsy -> 0; earn's missing amounts -> 0."""
        players = await sim.add_players(2)
        room_id = await open_room(api, players)
        ids = [p.plyr_id for p in players]
        body = {
            "roomId": room_id,
            "plyrIds": ids,
            "tokens": ["plyr", "plyr"],
            "amounts": [""],
        }
        earned = await run(api, "/game/earn", body)
        assert earned.data["status"] == "SUCCESS"
        assert earned.data["taskData"]["body"]["amounts"] == ["", None]

    async def test_allowances(self, api: Probe, sim: Simulator) -> None:
        """Row: allowance ledger: per-entry check, skip at 0, decrement-or-delete."""
        players = await sim.add_players(1, allowance=5)
        (player,) = players
        room_id = await open_room(api, players)
        # Each entry alone fits, so two entries of 3 pass the check.
        paid = await run(
            api, "/game/pay", pay_body(room_id, [player, player], ["3", "1"])
        )
        assert paid.data["status"] == "SUCCESS"
        assert sim.ledger().allowances[player.plyr_id]["plyr"] == Decimal(1)

        answer = await api.get(
            f"/game/allowance/{player.plyr_id.upper()}/SIM-GAME/PLYR"
        )
        assert answer.data == {"allowance": 1}

        await run(api, "/game/pay", pay_body(room_id, [player], [0]))
        assert sim.ledger().allowances[player.plyr_id]["plyr"] == Decimal(1)
        await run(api, "/game/pay", pay_body(room_id, [player], ["1"]))
        assert sim.ledger().allowances[player.plyr_id]["plyr"] == Decimal(0)
        sim.approve(player.plyr_id, "0.5")
        answer = await api.post(
            "/game/pay", pay_body(room_id, [player], ["0.4", "0.4"][:1])
        )
        await api.settle(answer.task_id)
        assert sim.ledger().allowances[player.plyr_id]["plyr"] == Decimal("0.1")

    async def test_allowance_delete_helpers_and_expiry(
        self, api: Probe, sim: Simulator
    ) -> None:
        """Row: allowance ledger: delete when short, joinPay/createJoinPay spend,
        the check ignores expiry while GET allowance honours it."""
        (player,) = await sim.add_players(1, allowance=5)
        pid = player.plyr_id
        room_id = await open_room(api, [player])
        # Two entries of 3 each fit alone; merged they exceed 5: deleted.
        body = pay_body(room_id, [player, player], ["3", "3"])
        assert (await run(api, "/game/pay", body)).data["status"] == "SUCCESS"
        assert pid not in sim.ledger().allowances
        answer = await api.post("/game/pay", pay_body(room_id, [player], ["1"]))
        assert (answer.status, answer.data) == (
            401,
            {"error": [f"User not approved: {pid}"]},
        )

        sim.approve(pid, 10)
        joined = await run(api, "/game/joinPay", pay_body(room_id, [player], ["2"]))
        assert joined.data["status"] == "SUCCESS"
        assert sim.ledger().allowances[pid]["plyr"] == Decimal(8)
        made = await run(api, "/game/createJoinPay", pay_body("", [player], ["3"]))
        assert made.data["status"] == "SUCCESS"
        assert sim.ledger().allowances[pid]["plyr"] == Decimal(5)

        # A lapsed approval reads as 0, yet pay's per-entry check still passes.
        sim.state.chain.allowances[(pid, sim.game_id, "plyr")].created_at -= 10**9
        answer = await api.get(f"/game/allowance/{pid}/{sim.game_id}/plyr")
        assert answer.data == {"allowance": 0}
        paid = await run(api, "/game/pay", pay_body(room_id, [player], ["1"]))
        assert paid.data["status"] == "SUCCESS"
        assert sim.ledger().allowances[pid]["plyr"] == Decimal(4)

    async def test_earn_pays_the_fee_and_end_needs_empty_rooms(
        self, api: Probe, sim: Simulator
    ) -> None:
        """Row: chain model: 2 % fee, end needs zero balances, nothing blocked after."""
        players = await sim.add_players(2, balance=10)
        room_id = await open_room(api, players)
        await run(api, "/game/pay", pay_body(room_id, players, ["5", "5"]))
        ended = await run(api, "/game/end", {"roomId": room_id})
        assert ended.data["errorMessage"] == "Transaction Receipt Failed"

        ids = [p.plyr_id for p in players]
        body = {
            "roomId": room_id,
            "plyrIds": ids,
            "tokens": ["plyr"] * 2,
            "amounts": ["10", "0"],
        }
        assert (await run(api, "/game/earn", body)).data["status"] == "SUCCESS"
        assert (await run(api, "/game/end", {"roomId": room_id})).data[
            "status"
        ] == "SUCCESS"
        ledger = sim.ledger()
        assert ledger.balances[ids[0]]["plyr"] == Decimal("14.8")
        assert ledger.fee_account["plyr"] == Decimal("0.2")
        assert ledger.total("plyr") == Decimal(20)
        assert ledger.rooms[room_id].ended

        paid = await run(api, "/game/pay", pay_body(room_id, players[:1], ["1"]))
        assert paid.data["status"] == "SUCCESS"

    async def test_pay_needs_funds(self, api: Probe, sim: Simulator) -> None:
        """Row: pay requires joined + funds (else the transaction reverts)."""
        players = await sim.add_players(1, balance=1, allowance=100)
        room_id = await open_room(api, players)
        failed = await run(api, "/game/pay", pay_body(room_id, players, ["2"]))
        assert failed.data["errorMessage"] == "Transaction Receipt Failed"
        assert sim.ledger().balances[players[0].plyr_id]["plyr"] == Decimal(1)

    async def test_composites_are_atomic(self, api: Probe, sim: Simulator) -> None:
        """Row: joinPay / earnLeave(End) are one transaction."""
        rich, poor = await sim.add_players(1, balance=10) + await sim.add_players(
            1, balance=0
        )
        room_id = await open_room(api, [])
        failed = await run(
            api, "/game/joinPay", pay_body(room_id, [rich, poor], ["1", "1"])
        )
        assert failed.data["status"] == "FAILED"
        ledger = sim.ledger()
        assert ledger.rooms[room_id].joined == frozenset()
        assert ledger.balances[rich.plyr_id]["plyr"] == Decimal(10)

        paid = await run(api, "/game/joinPay", pay_body(room_id, [rich], ["4"]))
        assert paid.data["status"] == "SUCCESS"
        body = {
            "roomId": room_id,
            "plyrIds": [rich.plyr_id],
            "tokens": ["plyr"],
            "amounts": ["3"],
        }
        assert (await run(api, "/game/earnLeaveEnd", body)).data["status"] == "FAILED"
        assert sim.ledger().rooms[room_id].joined == frozenset({rich.plyr_id})
        body["amounts"] = ["4"]
        assert (await run(api, "/game/earnLeaveEnd", body)).data["status"] == "SUCCESS"
        room = sim.ledger().rooms[room_id]
        assert (room.joined, room.ended) == (frozenset(), True)

    async def test_close_always_fails(self, api: Probe) -> None:
        """Row: middleware chains: the undocumented close route and its broken task."""
        room_id = await open_room(api, [])
        body = {"gameId": "sim-game", "roomId": room_id, "sync": True}
        answer = await api.post("/game/close", body)
        assert (answer.status, answer.data["status"]) == (200, "FAILED")
        assert (
            answer.data["errorMessage"] == "ABI encoding params/values length mismatch."
        )
        assert answer.data["taskData"][0] == "closeGameRoom"

    async def test_is_joined(self, api: Probe, sim: Simulator) -> None:
        """Row: GET /api/game/isJoined (400 order, lower-casing, 500 on bad roomId)."""
        players = await sim.add_players(1)
        room_id = await open_room(api, players)
        upper = players[0].plyr_id.upper()
        for query, status, data in [
            ("", 400, {"error": "plyrId is required"}),
            ("?roomId=1", 400, {"error": "plyrId is required"}),
            (f"?plyrId={upper}", 400, {"error": "roomId is required"}),
            (f"?plyrId={upper}&roomId={room_id}", 200, {"isJoined": True}),
            (f"?plyrId={upper}&roomId=42", 200, {"isJoined": False}),
            (f"?plyrId={sim.game_id}&roomId=42", 200, {"isJoined": True}),
        ]:
            answer = await api.get(f"/game/isJoined{query}")
            assert (answer.status, answer.data) == (status, data), query

        for query in ("?plyrId=a&roomId=abc", "?plyrId=a&roomId=1&roomId=2"):
            answer = await api.get(f"/game/isJoined{query}")
            assert answer.status == 500
            assert "stack" in answer.data

    async def test_balances_endpoint(self, api: Probe, sim: Simulator) -> None:
        """Row: balances endpoint reflecting the mirror balances."""
        (player,) = await sim.add_players(1, balance="12.5", tokens=("plyr", "gamr"))
        answer = await api.get(f"/user/balance/{player.plyr_id}")
        assert answer.data == {"plyr": "12.5", "gamr": "12.5"}
        answer = await api.get(f"/user/balance/{player.plyr_id}/GAMR")
        assert answer.data == {"GAMR": "12.5"}
        answer = await api.get(f"/user/balance/{player.plyr_id.upper()}")
        assert (answer.status, answer.data) == (404, {"error": "User not found"})
        answer = await api.get(f"/user/balance/{player.plyr_id}/doge")
        assert (answer.status, answer.data) == (401, {"error": "Invalid tokenName"})


async def test_counters(api: Probe, sim: Simulator) -> None:
    """Counters: requests per route, status polls, tasks per method."""
    submitted = await api.post("/game/create", {})
    await api.settle(submitted.task_id)
    await api.get(f"/task/status/{submitted.task_id}")
    await api.request("GET", "/missing")
    counters = sim.counters()
    assert counters.requests_by_route == {
        "POST /api/game/create": 1,
        "GET /api/task/status/:taskId": 2,
        "404": 1,
    }
    assert counters.status_polls == 2
    assert counters.tasks_by_method == {"createGameRoom": 1}
    assert [r.state for r in counters.tasks] == [TaskState.SUCCESS]


async def test_plyr_sim_fixture(plyr_sim: Simulator) -> None:
    """The pytest plugin's fixture serves a running simulator."""
    async with Probe(plyr_sim) as probe:
        answer = await probe.post("/game/create", {"sync": True})
        assert answer.data["status"] == "SUCCESS"


SECRET_27 = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "signature"),
    [
        ("", "00ad48c27e319600e7070d6616f6c8ee5ed0c56038be6792c8e035bbea96d26a"),
        (
            '{"roomId":"7","sessionJwts":["eyJ.a.b"],"tokens":["plyr"],'
            '"amounts":[1.0],"sync":false}',
            "90a49b0ea19c453702aed41203682a171dca2eddbe8366947891b7938007a666",
        ),
        (
            '{"plyrIds":["caf\\u00e9-01"],"note":"a\\u2028b",'
            '"amounts":[1e21, 0.0000001, -0.0]}',
            "273d921f4894da6b6fa0e64b38250f326aa12e84d239d1f40c99b2483d1df09b",
        ),
    ],
)
def test_server_side_signing_matches_the_reference_vectors(
    text: str, signature: str
) -> None:
    """Row: HMAC vectors of 2.7, through the simulator's own parse and serialise."""
    body = parse_body("application/json", text.encode())
    expected = sign_text(SECRET_27, "1700000000000", canonical_json(body))
    assert expected == signature
