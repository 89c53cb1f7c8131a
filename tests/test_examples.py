"""The examples (``python examples/NAME.py``) and ``plyr-rooms demo`` succeed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from plyr_rooms.cli import build_parser

if TYPE_CHECKING:
    from plyr_rooms.simulator import Simulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: Each run, small: its command line and lines its summary must print.
RUNS = {
    "dice_duel.py": ([str(EXAMPLES / "dice_duel.py")], ["wins", "6 tasks"]),
    "tournament.py": (
        [str(EXAMPLES / "tournament.py"), "--tables", "3"],
        ["3/3 tables ended", "conserved: True"],
    ),
    "game_server.py": (
        [str(EXAMPLES / "game_server.py"), "--players", "4"],
        ["4/4 players watched"],
    ),
    "demo-chaos": (
        ["-m", "plyr_rooms", "demo", "--rooms", "12", "--faults", "chaos"],
        ["12/12 rooms ended", "ledger conserved: yes"],
    ),
}


@pytest.fixture(scope="module")
def outputs() -> dict[str, subprocess.CompletedProcess[str]]:
    # The three run side by side: each mostly waits on its simulated tasks.
    started = {
        name: subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, _) in RUNS.items()
    }
    done = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=90)
        done[name] = subprocess.CompletedProcess(
            process.args, process.returncode, out, err
        )

    return done


@pytest.mark.parametrize("name", sorted(RUNS))
def test_example_runs(
    name: str, outputs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    """The example exits 0 and prints its summary."""
    run = outputs[name]
    assert run.returncode == 0, run.stderr
    for expected in RUNS[name][1]:
        assert expected in run.stdout


def test_demo_runs_duels_and_checks_the_ledger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``plyr-rooms demo`` ends every room and finds every token."""
    args = build_parser().parse_args(["demo", "--rooms", "4", "--walk", "steps"])
    assert anyio.run(args.handler, args, backend="asyncio") == 0
    out = capsys.readouterr().out
    assert "4/4 rooms ended" in out
    assert "tasks: 24;" in out
    assert "ledger conserved: yes" in out


def test_demo_refuses_jwts_without_an_endpoint() -> None:
    """Session JWTs only make sense with --endpoint."""
    args = build_parser().parse_args(["demo", "--jwt", "x.y.z"])
    assert anyio.run(args.handler, args, backend="asyncio") == 2


async def test_demo_runs_one_duel_on_an_endpoint(
    plyr_sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With --endpoint and player JWTs the demo walks one room on that API."""
    alice, bob = await plyr_sim.add_players(2)
    monkeypatch.setenv("PLYR_API_KEY", plyr_sim.api_key)
    monkeypatch.setenv("PLYR_API_SECRET", plyr_sim.api_secret)
    argv = ["demo", "--endpoint", plyr_sim.url, "--walk", "atomic", "--stake", "1"]
    argv += ["--jwt", alice.session_jwt, "--jwt", bob.session_jwt]
    args = build_parser().parse_args(argv)
    assert await args.handler(args) == 0
    out = capsys.readouterr().out
    assert "create_join_pay: NEW -> PAID" in out
    assert "ended after 2 tasks" in out
    assert alice.session_jwt not in out
