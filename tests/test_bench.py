"""The load-test harness at a tiny scale: it runs, and its counts add up.

Nothing here asserts a timing: the figures are the benchmark's business.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

import pytest

from plyr_rooms import _cli_bench
from plyr_rooms._bench import STEPS_PER_ROOM, BenchConfig, run_bench, table
from plyr_rooms._bench._rooms import DiscardingJournal
from plyr_rooms.journal import RoomRecord, SQLiteJournal

if TYPE_CHECKING:
    from pathlib import Path

    from plyr_rooms.simulator import Simulator

ROOMS = 3
PLAYERS = 2


def tiny(**overrides: Any) -> BenchConfig:
    """A run of a few rooms with millisecond tasks and short intervals."""
    settings: dict[str, Any] = {
        "rooms": ROOMS,
        "players": PLAYERS,
        "latency": "fixed:0.01",
        "naive_interval": 0.02,
        "sync_interval": 0.01,
        "step_timeout": 30.0,
        "cpu_requests": 40,
        "poll_schedule": {"first_delay": 0.02, "interval": 0.02, "max_interval": 0.1},
    }
    settings.update(overrides)
    return BenchConfig(**settings)


def check_counts(name: str, summary: dict[str, Any]) -> None:
    """Every room ended, and tasks = rooms x steps on both sides."""
    expected = ROOMS * STEPS_PER_ROOM[name]
    assert summary["rooms_ended"] == ROOMS, summary["first_error"]
    assert summary["rooms_failed"] == 0
    assert summary["errors"] == {}
    assert summary["tasks_expected"] == expected
    assert summary["tasks"] == expected
    assert summary["steps_returned"] == expected
    assert len(summary["samples"]["added_latency_s"]) == expected


class TestHarness:
    async def test_naive_and_sync_add_up(self) -> None:
        """Both strategies walk every room; naive checks each task at least once."""
        report = await run_bench(tiny(strategies=("naive", "sync")))

        for name, summary in report["strategies"].items():
            check_counts(name, summary)

        naive, sync = report["strategies"]["naive"], report["strategies"]["sync"]
        assert naive["status_requests"] >= naive["tasks"]
        assert naive["status_requests_client"] == naive["status_requests"]
        assert sync["status_requests_client"] == 0
        assert report["ratios_vs_naive"]["naive"]["status_per_task"] == 1.0
        assert report["cpu_per_request"]["requests_per_side"] == 40

    async def test_plyr_rooms_strategies_add_up(self) -> None:
        """The poller and room strategies walk every room with fewer requests."""
        strategies = ("shared-tasks", "shared", "atomic")
        report = await run_bench(tiny(strategies=strategies, cpu_requests=0))

        for name, summary in report["strategies"].items():
            check_counts(name, summary)
            assert summary["status_requests"] >= summary["tasks"]

        assert report["strategies"]["atomic"]["tasks"] == ROOMS * 2

    async def test_journal_costs_nothing_in_counts(self) -> None:
        """With a SQLite journal the rooms still end and the counts still add up."""
        report = await run_bench(
            tiny(strategies=("shared",), journal="sqlite", cpu_requests=0)
        )

        check_counts("shared", report["strategies"]["shared"])

    async def test_one_run_compares_a_walk_with_and_without_journal(self) -> None:
        """``+journal``, ``+discard`` and ``+thread`` walk the same rooms."""
        strategies = ("atomic", "atomic+journal", "atomic+discard", "atomic+thread")
        report = await run_bench(tiny(strategies=strategies, cpu_requests=0))

        plain, journaled, discarded, threaded = (
            report["strategies"][n] for n in strategies
        )
        check_counts("atomic+journal", journaled)
        check_counts("atomic+discard", discarded)
        check_counts("atomic+thread", threaded)
        assert plain["journal"] is None
        # Opened, then intent, task id and outcome for each of the two steps.
        for journal in (journaled, discarded, threaded):
            assert journal["journal"]["writes"] == ROOMS * 7
        targets = [c["target"] for c in report["checks"]]
        [without] = [t for t in targets if "without the journal" in t]
        assert without.startswith("atomic+journal")
        [store] = [t for t in targets if "writes nothing" in t]
        assert store.startswith("atomic+journal")

    async def test_a_discarding_journal_writes_nothing(self, tmp_path: Path) -> None:
        """The control store answers every call and leaves its file empty."""
        path = tmp_path / "discard.sqlite3"
        async with DiscardingJournal(path) as journal:
            await journal.room_opened(RoomRecord("k" * 32, "Room"))
            seq = await journal.intend("k" * 32, "create", {"roomId": None})
            await journal.submitted("k" * 32, seq, "task-1")

        async with SQLiteJournal(path) as journal:
            assert await journal.rooms(include_finished=True) == []

    async def test_in_process_run_and_table(self) -> None:
        """Clients may run in the driver's process; the table names each strategy."""
        report = await run_bench(
            tiny(strategies=("naive",), isolate=False, cpu_requests=0)
        )

        check_counts("naive", report["strategies"]["naive"])
        assert report["cpu_per_request"] is None
        text = table(report)
        assert "naive" in text
        assert "status requests / task" in text

    async def test_progress_reaches_every_room(self) -> None:
        """The progress sink hears of every room of every strategy."""
        seen: dict[str, int] = {}

        def progress(strategy: str, ended: int, failed: int, total: int) -> None:
            seen[strategy] = max(seen.get(strategy, 0), ended + failed)
            assert total == ROOMS

        await run_bench(tiny(strategies=("sync",), cpu_requests=0), progress=progress)

        assert seen == {"sync": ROOMS}


def bench_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plyr-rooms")
    _cli_bench.add_parser(parser.add_subparsers())
    return parser


class TestPlot:
    async def test_plot_draws_a_png(self, tmp_path: Path) -> None:
        """--plot writes a picture of the latencies and request rates."""
        pytest.importorskip("matplotlib")
        from plyr_rooms._bench._plot import plot

        report = await run_bench(tiny(strategies=("naive", "sync"), cpu_requests=0))
        path = tmp_path / "bench.png"

        plot(report, str(path))

        assert path.read_bytes().startswith(b"\x89PNG")


class TestCommand:
    async def test_bench_writes_json(self, tmp_path: Path) -> None:
        """``plyr-rooms bench`` runs the harness and writes its report."""
        out = tmp_path / "report.json"
        args = bench_parser().parse_args(
            [
                "bench",
                *("--rooms", "2", "--players", "2", "--strategies", "naive"),
                *("--latency", "fixed:0.01", "--naive-interval", "0.02"),
                *("--cpu-requests", "0", "--json", str(out)),
            ]
        )

        code = await args.handler(args)

        assert code == 0
        report = json.loads(out.read_text())
        assert report["strategies"]["naive"]["rooms_ended"] == 2
        assert "samples" not in report["strategies"]["naive"]

    async def test_endpoint_run_counts_on_the_client_side(
        self,
        plyr_sim: Simulator,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Against an endpoint (here a simulator posing as one) rooms still end."""
        monkeypatch.setenv("PLYR_API_KEY", plyr_sim.api_key)
        monkeypatch.setenv("PLYR_API_SECRET", plyr_sim.api_secret)
        players = await plyr_sim.add_players(2)
        lines = "".join(f"{p.plyr_id} {p.session_jwt}\n" for p in players)
        (tmp_path / "players.txt").write_text(lines)
        out = tmp_path / "report.json"
        args = bench_parser().parse_args(
            [
                "bench",
                *("--endpoint", plyr_sim.url, "--yes", "--rooms", "2"),
                *("--players-file", str(tmp_path / "players.txt"), "--players", "2"),
                *("--strategies", "naive,shared", "--naive-interval", "0.02"),
                *("--poll-schedule", "first_delay=0.02,interval=0.02,max_interval=0.1"),
                *("--json", str(out)),
            ]
        )

        assert await args.handler(args) == 0

        report = json.loads(out.read_text())
        assert report["cpu_per_request"] is None
        for summary in report["strategies"].values():
            assert summary["rooms_ended"] == 2
            assert summary["tasks"] == 2 * 6
            assert summary["status_requests"] >= summary["tasks"]

    async def test_real_endpoint_rooms_are_capped(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """More rooms than the cap against a real endpoint sends nothing."""
        monkeypatch.setenv("PLYR_API_KEY", "k")
        monkeypatch.setenv("PLYR_API_SECRET", "s")
        players = tmp_path / "players.txt"
        players.write_text("alice eyJa.b.c\nbob eyJd.e.f\n")
        args = bench_parser().parse_args(
            [
                "bench",
                *("--endpoint", "http://127.0.0.1:9", "--rooms", "6"),
                *("--players-file", str(players), "--players", "2"),
            ]
        )

        assert await args.handler(args) == 2

    def test_players_file_skips_comments(self, tmp_path: Path) -> None:
        """Player lines are read; a malformed one is named by line number only."""
        good = tmp_path / "good.txt"
        good.write_text("# players\nAlice eyJa.b.c\n\nbob eyJd.e.f\n")
        bad = tmp_path / "bad.txt"
        bad.write_text("alice\n")

        players = _cli_bench.read_players(str(good))

        assert [p.plyr_id for p in players] == ["alice", "bob"]
        with pytest.raises(ValueError, match=r"bad\.txt:1"):
            _cli_bench.read_players(str(bad))
