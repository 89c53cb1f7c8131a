"""``plyr-rooms simulate``: options, the announcement, and a served request."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

import anyio
import pytest

from plyr_rooms import _cli_simulate
from plyr_rooms.simulator import Faults, Latency
from plyr_rooms.simulator._probe import Probe

if TYPE_CHECKING:
    from plyr_rooms.simulator import SimPlayer, Simulator

pytestmark = pytest.mark.anyio


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    _cli_simulate.add_parser(parser.add_subparsers())
    return parser.parse_args(["simulate", *argv])


def test_options() -> None:
    args = parse(
        "--latency", "uniform:0.1,0.5", "--workers", "unbounded",
        "--faults", "revert=0.05,stuck=0.01,rate_limit_rps=20", "--seed", "4",
    )  # fmt: skip
    assert args.latency == Latency.uniform(0.1, 0.5)
    assert args.workers is None
    assert args.faults == Faults(revert_rate=0.05, stuck_rate=0.01, rate_limit_rps=20)
    assert (args.seed, args.port, args.host) == (4, 8787, "127.0.0.1")
    assert parse("--latency", "lognormal:3,0.5").latency == Latency.lognormal(3, 0.5)


@pytest.mark.parametrize(
    "argv",
    [("--latency", "gauss:1"), ("--workers", "-2"), ("--faults", "meteor=1")],
)
def test_bad_options_exit(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


async def test_serves_and_announces(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--port", "0", "--players", "2", "--json", "--latency", "fixed:0.001")
    seen: list[str] = []

    async def ready(sim: Simulator, players: list[SimPlayer]) -> None:
        await _cli_simulate._announce(as_json=True)(sim, players)
        async with Probe(sim) as api:
            answer = await api.post("/game/create", {"sync": True})
            seen.append(answer.data["status"])

        scope.cancel()

    with anyio.CancelScope() as scope:
        await _cli_simulate.serve(args, ready)

    assert seen == ["SUCCESS"]
    summary = json.loads(capsys.readouterr().out)
    assert summary["url"].startswith("http://127.0.0.1:")
    assert summary["url"].endswith("/api")
    assert [p["plyr_id"] for p in summary["players"]] == [
        "player-00001",
        "player-00002",
    ]
    assert all(p["session_jwt"].count(".") == 2 for p in summary["players"])


async def test_text_announcement(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--port", "0", "--players", "1")

    async def ready(sim: Simulator, players: list[SimPlayer]) -> None:
        await _cli_simulate._announce(as_json=False)(sim, players)
        scope.cancel()

    with anyio.CancelScope() as scope:
        await _cli_simulate.serve(args, ready)

    out = capsys.readouterr().out
    assert "export PLYR_API_KEY=" in out
    assert "export PLYR_API_SECRET=" in out
    assert "player-00001 eyJ" in out
