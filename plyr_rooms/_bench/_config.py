"""What one benchmark run does: the workload, the strategies and the target."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "STEPS_PER_ROOM",
    "STRATEGIES",
    "BenchConfig",
    "Player",
    "Target",
    "room_players",
    "valid_gc_threshold",
    "walk_of",
]

#: Every strategy the harness knows, in the order reports list them.
STRATEGIES = (
    "naive",
    "sync",
    "shared-tasks",
    "shared",
    "shared+journal",
    "shared+discard",
    "shared+thread",
    "atomic",
    "atomic+journal",
    "atomic+discard",
    "atomic+thread",
)


def valid_gc_threshold(counts: tuple[int, ...]) -> bool:
    """Return True for what ``gc.set_threshold`` takes: 1 to 3 counts >= 0."""
    return 1 <= len(counts) <= 3 and min(counts) >= 0


def walk_of(strategy: str) -> tuple[str, str | None]:
    """Return the walk *strategy* runs, and the journal it adds (None: none).

    ``"X+journal"`` walks as ``X`` does, with a journal, so that one run measures
    the walk with and without it. ``"X+discard"`` walks with a journal whose
    store writes nothing: every call is checked, queued and answered as a SQLite
    journal's is, so that the run tells what the store costs from what waiting
    on a journal costs the event loop. ``"X+thread"`` walks with the SQLite
    journal's writer in a thread of the client instead of a child process.
    """
    walk, _, journal = strategy.partition("+")
    return walk, journal or None


#: Tasks one room costs under each strategy: the six-step walk (create, join, pay,
#: earn, leave, end) or the atomic one (create-join-pay, earn-leave-end).
STEPS_PER_ROOM = {
    "naive": 6,
    "sync": 6,
    "shared-tasks": 6,
    "shared": 6,
    "shared+journal": 6,
    "shared+discard": 6,
    "shared+thread": 6,
    "atomic": 2,
    "atomic+journal": 2,
    "atomic+discard": 2,
    "atomic+thread": 2,
}


@attrs.frozen
class Player:
    """A player the benchmark seats in rooms (``session_jwt`` is a secret)."""

    plyr_id: str
    session_jwt: str = attrs.field(repr=False)


@attrs.frozen
class Target:
    """Where the measured client sends its requests.

    Attributes:
        url: the API base URL (``.../api``).
        api_key: the API key.
        api_secret: the API secret (never printed).
        players: the players rooms are filled from.
        simulated: True when a simulator process serves *url* and can report the
            completion time of every task; False for a real endpoint.
    """

    url: str
    api_key: str
    api_secret: str = attrs.field(repr=False)
    players: tuple[Player, ...] = attrs.field(repr=False)
    simulated: bool = True

    def to_json(self) -> dict[str, Any]:
        """Return the target as plain data for a child process's stdin."""
        return {
            "url": self.url,
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            "players": [[p.plyr_id, p.session_jwt] for p in self.players],
            "simulated": self.simulated,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        """Rebuild a target written by :meth:`to_json`."""
        return cls(
            url=data["url"],
            api_key=data["api_key"],
            api_secret=data["api_secret"],
            players=tuple(Player(pid, jwt) for pid, jwt in data["players"]),
            simulated=bool(data.get("simulated", True)),
        )


def _strategies(value: str | Iterable[str]) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    unknown = [name for name in names if name not in STRATEGIES]
    if unknown or not names:
        raise ValueError(f"unknown strategies {unknown!r}; known: {STRATEGIES}")

    return names


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen
class BenchConfig:
    """One benchmark run: the same workload for every strategy.

    Attributes:
        rooms: rooms per strategy, all started at once.
        players: players per room.
        strategies: which strategies to run, in this order.
        latency: the simulator's task latency (``lognormal:3,0.5``,
            ``fixed:0.02``, ``uniform:LO,HI``).
        workers: simulator worker concurrency: None for unbounded (independent
            latencies), 1 for the real service's single sequential consumer.
        faults: injected faults in the simulator's ``Faults.parse`` form.
        seed: the simulator's seed (the same for every strategy).
        stake: what each player pays into a room, in *token*.
        token: the token symbol paid and earned.
        player_pool: at most this many rooms' worth of distinct players are
            created; rooms beyond it reuse them (a player may sit in many rooms).
        naive_interval: seconds between the naive client's checks of one task.
        sync_interval: seconds between the simulator's own checks in sync mode.
        step_timeout: seconds a step may take before it counts as an error.
        journal: ``None`` (no journal), ``"memory"`` or ``"sqlite"`` for the
            room strategies (``shared``, ``atomic``).
        cpu_requests: requests per side of the per-request CPU comparison
            (bare aiohttp vs ``PlyrClient.task_status``); 0 skips it.
        isolate: run each strategy's client in its own process (clean CPU and
            peak-RSS figures); False runs it in this process (tests).
        profile_dir: write a profile of each client process there.
        profiler: ``"cprofile"`` or ``"pyinstrument"`` (if installed).
        connection_limit: the client's connection pool size; None sizes it per
            strategy (one connection per room for ``sync``, else 100).
        poller_rps: the shared poller's request-rate budget (None: its default).
        poller_concurrency: the shared poller's concurrency cap (None: default).
        poll_schedule: :class:`~plyr_rooms.poller.PollSchedule` fields to change
            (tests shorten ``first_delay`` and ``interval``); empty: its defaults.
        gc_threshold: the cyclic collector's thresholds in the client while it
            runs (as ``gc.set_threshold`` takes them); None: CPython's defaults.
    """

    rooms: int = attrs.field(default=100, validator=_positive)
    players: int = attrs.field(default=4, validator=_positive)
    strategies: tuple[str, ...] = attrs.field(
        default=("naive", "sync", "shared", "atomic"), converter=_strategies
    )
    latency: str = "lognormal:3,0.5"
    workers: int | None = None
    faults: str = ""
    seed: int = 0
    stake: str = "1"
    token: str = "plyr"
    player_pool: int = attrs.field(default=500, validator=_positive)
    naive_interval: float = attrs.field(default=1.0, validator=_positive)
    sync_interval: float = attrs.field(default=0.5, validator=_positive)
    step_timeout: float = attrs.field(default=180.0, validator=_positive)
    journal: str | None = None
    cpu_requests: int = 10000
    isolate: bool = True
    profile_dir: str | None = None
    profiler: str = "cprofile"
    connection_limit: int | None = None
    poller_rps: float | None = None
    poller_concurrency: int | None = None
    poll_schedule: dict[str, Any] = attrs.Factory(dict)
    gc_threshold: tuple[int, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )

    def poller_options(self) -> dict[str, Any]:
        """Return the keyword arguments of the shared poller this run asks for."""
        from ..poller import PollSchedule

        options: dict[str, Any] = {}
        if self.poller_rps is not None:
            options["requests_per_second"] = self.poller_rps

        if self.poller_concurrency is not None:
            options["max_concurrency"] = self.poller_concurrency

        if self.poll_schedule:
            options["schedule"] = PollSchedule(**self.poll_schedule)

        return options

    def __attrs_post_init__(self) -> None:
        if self.journal not in (None, "memory", "sqlite"):
            raise ValueError(f"journal must be memory or sqlite, got {self.journal!r}")

        if self.gc_threshold is not None and not valid_gc_threshold(self.gc_threshold):
            raise ValueError(f"gc_threshold takes 1 to 3 counts: {self.gc_threshold!r}")

        if Decimal(self.stake) <= 0:
            raise ValueError(f"stake must be > 0, got {self.stake!r}")

    @property
    def pool_size(self) -> int:
        """How many distinct players the simulator creates."""
        return min(self.rooms, self.player_pool) * self.players

    @property
    def rooms_per_player(self) -> int:
        """The most rooms one pooled player sits in."""
        return -(-self.rooms // min(self.rooms, self.player_pool))

    def to_json(self) -> dict[str, Any]:
        """Return the configuration as plain data."""
        data = attrs.asdict(self)
        data["strategies"] = list(self.strategies)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchConfig:
        """Rebuild a configuration written by :meth:`to_json`."""
        return cls(**data)


def room_players(
    pool: tuple[Player, ...], room: int, per_room: int
) -> tuple[Player, ...]:
    """Return the players of room number *room*: distinct, spread over the pool."""
    # A simulated pool holds a whole number of rooms' worth of players, so the
    # players of one room are distinct; a real endpoint's pool may be any size.
    size = len(pool)
    start = (room * per_room) % size
    return tuple(pool[(start + k) % size] for k in range(per_room))
