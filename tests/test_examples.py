"""The examples (``python examples/NAME.py``) and ``plyr-rooms demo`` succeed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
    "demo": (
        ["-m", "plyr_rooms", "demo", "--rooms", "8"],
        ["8/8 rooms ended", "ledger conserved: yes"],
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
