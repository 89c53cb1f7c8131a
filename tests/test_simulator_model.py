"""Random room operations against the simulator, checked against a tiny model.

A hypothesis state machine sends valid and invalid create, join, leave, pay,
earn, joinPay, earnLeave and end calls over HTTP. After every step, tokens are
conserved across players, rooms and the fee account, and ``isJoined`` and the
balances the API reports agree with the model.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from plyr_rooms.simulator import Latency, SimConfig, Simulator
from plyr_rooms.simulator._probe import Probe

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from plyr_rooms.simulator import SimPlayer
    from plyr_rooms.simulator._probe import Answer

WEI = 10**18
START = 100
PLAYERS = 3
CONFIG = SimConfig(
    seed=11,
    latency=Latency.fixed(0.0005),
    workers=None,
    sync_interval=0.001,
    retry_sleep_scale=0.0001,
)
amounts = st.sampled_from(["0", "0.5", "1", "2.25", "10", "60", "150"])


@attrs.define
class ModelRoom:
    joined: set[str] = attrs.Factory(set)
    funds: int = 0
    ended: bool = False


class RoomMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.sim = Simulator(CONFIG)
        self.api = Probe(self.sim)
        self.run(self.sim.__aenter__())
        self.run(self.api.__aenter__())
        allowance = 10**9
        self.players: list[SimPlayer] = self.run(
            self.sim.add_players(PLAYERS, balance=START, allowance=allowance)
        )
        self.wallets = {p.plyr_id: START * WEI for p in self.players}
        self.rooms: dict[str, ModelRoom] = {}
        self.fees = 0

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.api.__aexit__(None, None, None))
        self.run(self.sim.__aexit__(None, None, None))
        self.loop.close()

    def post(self, path: str, body: dict[str, Any]) -> Answer:
        answer: Answer = self.run(self.api.post(path, {**body, "sync": True}))
        return answer

    def pick(self, data: st.DataObject, *, known: bool = True) -> str:
        rooms = sorted(self.rooms)
        if known and rooms:
            return data.draw(st.sampled_from(rooms))

        return data.draw(st.sampled_from([*rooms, "404"]))

    def chosen(self, data: st.DataObject) -> list[SimPlayer]:
        indexes = data.draw(st.sets(st.integers(0, PLAYERS - 1), min_size=1))
        return [self.players[i] for i in sorted(indexes)]

    @rule()
    def create(self) -> None:
        answer = self.post("/game/create", {})
        assert answer.data["status"] == "SUCCESS"
        self.rooms[answer.data["taskData"]["result"]["roomId"]] = ModelRoom()

    @rule(data=st.data())
    def join(self, data: st.DataObject) -> None:
        room_id, players = self.pick(data, known=False), self.chosen(data)
        answer = self.post("/game/join", self.jwts(room_id, players))
        room = self.rooms.get(room_id)
        if room is not None and all(p.plyr_id in room.joined for p in players):
            assert answer.data == {"message": "All players are already joined"}
        elif room is None:
            assert answer.data["errorMessage"] == "Transaction Receipt Failed"
        else:
            assert answer.data["status"] == "SUCCESS"
            room.joined.update(p.plyr_id for p in players)

    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        room_id, players = self.pick(data, known=False), self.chosen(data)
        answer = self.post("/game/leave", self.jwts(room_id, players))
        room = self.rooms.get(room_id, ModelRoom())
        outside = [p.plyr_id for p in players if p.plyr_id not in room.joined]
        if outside:
            errors = [f"Player is not joined: {p}" for p in outside]
            assert (answer.status, answer.data) == (401, {"error": errors})
        else:
            assert answer.data["status"] == "SUCCESS"
            room.joined.difference_update(p.plyr_id for p in players)

    @rule(data=st.data(), amount=amounts)
    def pay(self, data: st.DataObject, amount: str) -> None:
        room_id, players = self.pick(data), self.chosen(data)[:1]
        body = {**self.jwts(room_id, players), "tokens": ["plyr"], "amounts": [amount]}
        answer = self.post("/game/pay", body)
        room, plyr_id = self.rooms.get(room_id), players[0].plyr_id
        units = int(Decimal(amount) * WEI)
        if room is None or plyr_id not in room.joined:
            assert answer.status == 401
        elif self.wallets[plyr_id] < units:
            assert answer.data["errorMessage"] == "Transaction Receipt Failed"
        else:
            assert answer.data["status"] == "SUCCESS"
            self.wallets[plyr_id] -= units
            room.funds += units

    @rule(data=st.data(), amount=amounts)
    def earn(self, data: st.DataObject, amount: str) -> None:
        room_id, (player, *_) = self.pick(data, known=False), self.chosen(data)
        body = {"roomId": room_id, "plyrIds": [player.plyr_id], "tokens": ["plyr"]}
        answer = self.post("/game/earn", {**body, "amounts": [amount]})
        room = self.rooms.get(room_id)
        units = int(Decimal(amount) * WEI)
        if room is None or player.plyr_id not in room.joined or room.funds < units:
            assert answer.data["errorMessage"] == "Transaction Receipt Failed"
        else:
            assert answer.data["status"] == "SUCCESS"
            fee = units * 2 // 100
            room.funds -= units
            self.wallets[player.plyr_id] += units - fee
            self.fees += fee

    @rule(data=st.data(), amount=amounts)
    def join_pay(self, data: st.DataObject, amount: str) -> None:
        room_id, players = self.pick(data, known=False), self.chosen(data)
        body = {**self.jwts(room_id, players), "tokens": ["plyr"] * len(players)}
        answer = self.post(
            "/game/joinPay", {**body, "amounts": [amount] * len(players)}
        )
        room, units = self.rooms.get(room_id), int(Decimal(amount) * WEI)
        if room is None or any(self.wallets[p.plyr_id] < units for p in players):
            # One transaction: nobody joins and nobody pays.
            assert answer.data["errorMessage"] == "Transaction Receipt Failed"
            return

        assert answer.data["status"] == "SUCCESS"
        for player in players:
            room.joined.add(player.plyr_id)
            self.wallets[player.plyr_id] -= units
            room.funds += units

    @rule(data=st.data(), amount=amounts)
    def earn_leave(self, data: st.DataObject, amount: str) -> None:
        room_id, (player, *_) = self.pick(data, known=False), self.chosen(data)
        body = {"roomId": room_id, "plyrIds": [player.plyr_id], "tokens": ["plyr"]}
        answer = self.post("/game/earnLeave", {**body, "amounts": [amount]})
        room, units = self.rooms.get(room_id), int(Decimal(amount) * WEI)
        if room is None or player.plyr_id not in room.joined or room.funds < units:
            assert answer.data["errorMessage"] == "Transaction Receipt Failed"
            return

        assert answer.data["status"] == "SUCCESS"
        fee = units * 2 // 100
        room.funds -= units
        self.wallets[player.plyr_id] += units - fee
        self.fees += fee
        room.joined.discard(player.plyr_id)

    @rule(data=st.data())
    def end(self, data: st.DataObject) -> None:
        room_id = self.pick(data, known=False)
        answer = self.post("/game/end", {"roomId": room_id})
        room = self.rooms.get(room_id)
        if room is None or room.funds:
            assert answer.data["errorMessage"] == "Transaction Receipt Failed"
        else:
            assert answer.data["status"] == "SUCCESS"
            room.ended = True

    def jwts(self, room_id: str, players: list[SimPlayer]) -> dict[str, Any]:
        return {"roomId": room_id, "sessionJwts": [p.session_jwt for p in players]}

    @invariant()
    def tokens_are_conserved(self) -> None:
        ledger = self.sim.ledger()
        assert ledger.total("plyr") == START * PLAYERS
        assert ledger.fee_account.get("plyr", Decimal(0)) * WEI == self.fees
        for room_id, room in self.rooms.items():
            snapshot = ledger.rooms[room_id]
            assert snapshot.funds.get("plyr", Decimal(0)) * WEI == room.funds
            assert snapshot.ended == room.ended

    @invariant()
    def api_agrees_with_the_model(self) -> None:
        for player in self.players:
            answer = self.run(self.api.get(f"/user/balance/{player.plyr_id}"))
            assert Decimal(answer.data["plyr"]) * WEI == self.wallets[player.plyr_id]
            for room_id, room in self.rooms.items():
                query = f"?roomId={room_id}&plyrId={player.plyr_id}"
                joined = self.run(self.api.get(f"/game/isJoined{query}"))
                assert joined.data == {"isJoined": player.plyr_id in room.joined}


RoomMachine.TestCase.settings = settings(
    max_examples=8,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRoomModel = RoomMachine.TestCase
