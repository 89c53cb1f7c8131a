"""Simulated users: two-factor login, logout, session verify and approve."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import jwt
import pytest

from plyr_rooms.simulator import Latency, SimConfig, Simulator
from plyr_rooms.simulator._probe import Probe
from plyr_rooms.simulator._users import totp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from plyr_rooms.simulator import SimPlayer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(latency=Latency.fixed(0.001), workers=None, sync_interval=0.002)
    async with Simulator(config) as running:
        yield running


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[Probe]:
    async with Probe(sim) as probe:
        yield probe


@pytest.fixture
async def player(sim: Simulator) -> SimPlayer:
    (one,) = await sim.add_players(1)
    return one


def test_totp_matches_rfc_6238() -> None:
    # RFC 6238 appendix B, SHA-1, truncated to six digits.
    secret = b"12345678901234567890"
    assert totp(secret, 59) == "287082"
    assert totp(secret, 1111111109) == "081804"


async def test_login_replaces_the_session(
    api: Probe, sim: Simulator, player: SimPlayer
) -> None:
    """Row: login bumps the nonce, so only the latest JWT works."""
    body = {"plyrId": player.plyr_id.upper(), "otp": sim.otp(player.plyr_id)}
    answer = await api.post("/user/login", body)
    assert answer.status == 200, answer.text
    assert list(answer.data) == [
        "sessionJwt", "plyrId", "gameId", "primaryAddress", "mirrorAddress",
        "avatar", "ippClaimed", "isIPP",
    ]  # fmt: skip
    claims = jwt.decode(answer.data["sessionJwt"], options={"verify_signature": False})
    assert (claims["nonce"], claims["gameId"]) == (2, sim.game_id)

    stale = await api.post(
        "/game/join", {"roomId": "1", "sessionJwts": [player.session_jwt]}
    )
    assert stale.data["invalidPlyrIds"] == {player.plyr_id: "JWT nonce is expired"}


async def test_otp_checks(api: Probe, sim: Simulator, player: SimPlayer) -> None:
    """Row: one-time codes for 5 min incl. failures; lock after 5 failures."""
    code = sim.otp(player.plyr_id)
    first = await api.post("/user/login", {"plyrId": player.plyr_id, "otp": code})
    assert first.status == 200
    again = await api.post("/user/login", {"plyrId": player.plyr_id, "otp": code})
    assert (again.status, again.data) == (401, {"error": "2FA token already used"})

    missing = await api.post("/user/login", {"plyrId": "nobody-here", "otp": "123456"})
    assert (missing.status, missing.data) == (404, {"error": "User not found"})

    wrong = [f"{n:06d}" for n in range(5)]
    for bad in wrong:
        answer = await api.post("/user/login", {"plyrId": player.plyr_id, "otp": bad})
        assert (answer.status, answer.data) == (401, {"error": "Invalid 2fa token"})

    good = sim.otp(player.plyr_id, step=1)
    locked = await api.post("/user/login", {"plyrId": player.plyr_id, "otp": good})
    assert (locked.status, locked.data) == (403, {"error": "User is temporary locked"})


@pytest.mark.parametrize(
    ("expires_in", "lifetime", "game_error"),
    [
        (None, 86_400, None),
        (3600, 3600, None),
        ("86400", 86, None),
        ("1h", 3600, "JWT deadline is expired"),
    ],
)
async def test_expires_in_traps(
    api: Probe,
    sim: Simulator,
    player: SimPlayer,
    expires_in: Any,
    lifetime: int,
    game_error: str | None,
) -> None:
    """Row: expiresIn traps: strings go through ms(); "1h" breaks the deadline."""
    body = {
        "plyrId": player.plyr_id,
        "otp": sim.otp(player.plyr_id),
        "expiresIn": expires_in,
    }
    answer = await api.post("/user/login", body)
    token = answer.data["sessionJwt"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == lifetime

    joined = await api.post("/game/join", {"roomId": "1", "sessionJwts": [token]})
    if game_error is None:
        assert joined.status == 200
    else:
        assert joined.data["invalidPlyrIds"] == {player.plyr_id: game_error}


async def test_float_expires_in_is_500(
    api: Probe, sim: Simulator, player: SimPlayer
) -> None:
    """Row: a non-integer expiresIn -> 500."""
    body = {
        "plyrId": player.plyr_id,
        "otp": sim.otp(player.plyr_id),
        "expiresIn": 3600.5,
    }
    answer = await api.post("/user/login", body)
    assert answer.status == 500
    assert answer.data["error"].startswith('"expiresIn" should be a number of seconds')


async def test_login_game_id_is_kept_verbatim(
    api: Probe, sim: Simulator, player: SimPlayer
) -> None:
    """Row: strict gameId equality (a login for "Sim-Game" fails every call)."""
    body = {
        "plyrId": player.plyr_id,
        "otp": sim.otp(player.plyr_id),
        "gameId": "Sim-Game",
    }
    token = (await api.post("/user/login", body)).data["sessionJwt"]
    joined = await api.post("/game/join", {"roomId": "1", "sessionJwts": [token]})
    assert joined.data["invalidPlyrIds"] == {player.plyr_id: "Invalid gameId"}


async def test_logout(api: Probe, player: SimPlayer) -> None:
    """Row: logout bumps the nonce and zeroes the deadline."""
    answer = await api.post("/user/logout", {"sessionJwt": player.session_jwt})
    assert answer.data == {"message": "Logout success"}
    again = await api.post("/user/logout", {"sessionJwt": player.session_jwt})
    assert (again.status, again.data) == (401, {"message": "JWT nonce is expired"})
    junk = await api.post("/user/logout", {"sessionJwt": "x"})
    assert (junk.status, junk.data) == (401, {"error": "Invalid sessionJwt"})


async def test_session_verify(api: Probe, sim: Simulator, player: SimPlayer) -> None:
    """Nice to have: session verify (nonce checked, deadline not)."""
    sim.expire_session(player.plyr_id)
    answer = await api.post("/user/session/verify", {"sessionJwt": player.session_jwt})
    assert answer.data["success"] is True
    assert answer.data["payload"]["plyrId"] == player.plyr_id
    assert list(answer.data["payload"])[-3:] == ["avatar", "ippClaimed", "isIPP"]

    sim.relogin(player.plyr_id)
    answer = await api.post("/user/session/verify", {"sessionJwt": player.session_jwt})
    assert (answer.status, answer.data) == (401, {"error": "JWT nonce is expired"})


async def test_approve_replaces(api: Probe, sim: Simulator, player: SimPlayer) -> None:
    """Row: allowance ledger: replace-on-approve, lower-cased keys, GET allowance."""
    body: dict[str, Any] = {
        "plyrId": player.plyr_id,
        "otp": sim.otp(player.plyr_id),
        "gameId": "SIM-GAME",
        "tokens": ["PLYR", "gamr"],
        "amounts": [5, "7.5"],
    }
    answer = await api.post("/game/approve", body)
    assert answer.data == {"message": "Approved", "success": True}
    assert sim.ledger().allowances[player.plyr_id] == {
        "plyr": Decimal(5),
        "gamr": Decimal("7.5"),
    }
    allowance = await api.get(f"/game/allowance/{player.plyr_id}/sim-game/gamr")
    assert allowance.data == {"allowance": 7.5}

    body["otp"] = sim.otp(player.plyr_id, step=1)
    body["expiresIn"] = None
    body["amounts"] = [1, 0]
    answer = await api.post("/game/approve", body)
    assert (answer.status, answer.data) == (
        401,
        {"error": "Approve amount was incorrect."},
    )
    assert sim.ledger().allowances[player.plyr_id]["plyr"] == Decimal(1)
    # A null lifetime reads as 0 here, yet pay still honours the approval.
    allowance = await api.get(f"/game/allowance/{player.plyr_id}/sim-game/plyr")
    assert allowance.data == {"allowance": 0}


async def test_approve_checks(api: Probe, sim: Simulator, player: SimPlayer) -> None:
    """Approve's chain: token first, then game id."""
    base = {
        "plyrId": player.plyr_id,
        "gameId": "sim-game",
        "token": "plyr",
        "amount": 1,
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({"token": None}, "Token is required"),
        ({"token": "doge"}, "Invalid token: doge"),
        ({"gameId": ""}, "Game ID is required"),
        ({"gameId": "someone-else"}, "Invalid game ID"),
    ]
    # A code is single-use per plyrId *as sent*, so each case spells it anew.
    pid = player.plyr_id
    spellings = [pid, pid.upper(), pid.title(), pid.title().swapcase()]
    for spelling, (change, error) in zip(spellings, cases, strict=True):
        body = {**base, **change, "plyrId": spelling}
        body["otp"] = sim.otp(player.plyr_id)
        answer = await api.post("/game/approve", body)
        assert (answer.status, answer.data) == (401, {"error": error}), change


async def test_instant_play_pass(api: Probe, sim: Simulator) -> None:
    """Row: IPP starts at nonce 1 with a 30-year deadline; no 2FA, no logout."""
    answer = await api.post("/instantPlayPass/register", {"tokens": ["plyr"]})
    assert answer.status == 200, answer.text
    data = answer.data
    assert (data["isIPP"], data["ippClaimed"], data["gameId"]) == (
        True,
        False,
        "sim-game",
    )
    claims = jwt.decode(data["sessionJwt"], options={"verify_signature": False})
    assert claims["nonce"] == 1
    plyr_id = data["plyrId"]
    deadline = sim.state.sessions.users[plyr_id].deadline["sim-game"]
    assert deadline > (claims["iat"] + 29 * 365 * 86_400) * 1000
    assert sim.ledger().allowances[plyr_id] == {"plyr": Decimal(100_000_000)}

    joined = await api.post(
        "/game/join", {"roomId": "1", "sessionJwts": [data["sessionJwt"]]}
    )
    assert joined.status == 200
    login = await api.post("/user/login", {"plyrId": plyr_id, "otp": "000000"})
    assert (login.status, login.data["error"]) == (
        403,
        "User is instant play pass, can not use 2fa to login",
    )
    logout = await api.post("/user/logout", {"sessionJwt": data["sessionJwt"]})
    assert logout.data == {"error": "Instant Play Pass user cannot logout"}

    before = len(sim.state.sessions.users)
    broken = await api.post("/instantPlayPass/register", {})
    assert broken.status == 500
    assert len(sim.state.sessions.users) == before + 1
