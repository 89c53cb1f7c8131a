"""The simulator's settings: latency model, faults and the rest of the knobs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping

__all__ = ["Faults", "Latency", "SimConfig"]


def _non_negative(
    instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _rate(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be within [0, 1], got {value!r}")


@attrs.frozen
class Latency:
    """How long the simulated chain takes to run one task attempt, in seconds.

    Build it with :meth:`fixed`, :meth:`uniform` or :meth:`lognormal`, or parse
    the command-line form with :meth:`parse`.
    """

    kind: str
    a: float
    b: float = 0.0

    @classmethod
    def fixed(cls, seconds: float) -> Latency:
        """Every attempt takes *seconds*."""
        _check(seconds >= 0, f"latency must be >= 0, got {seconds!r}")
        return cls("fixed", seconds)

    @classmethod
    def uniform(cls, low: float, high: float) -> Latency:
        """Attempts take a uniformly drawn time between *low* and *high* seconds."""
        _check(0 <= low <= high, f"need 0 <= low <= high, got {low!r}, {high!r}")
        return cls("uniform", low, high)

    @classmethod
    def lognormal(cls, median: float, sigma: float) -> Latency:
        """Attempts take ``median * exp(sigma * N(0, 1))`` seconds (a long tail)."""
        _check(median > 0 and sigma >= 0, f"bad lognormal({median!r}, {sigma!r})")
        return cls("lognormal", median, sigma)

    @classmethod
    def parse(cls, text: str) -> Latency:
        """Read ``fixed:0.05``, ``uniform:0.1,0.5`` or ``lognormal:3,0.5``.

        Raises:
            ValueError: for any other form.
        """
        kind, _, args = text.partition(":")
        try:
            numbers = [float(part) for part in args.split(",")] if args else []
        except ValueError:
            raise ValueError(f"bad latency {text!r}") from None

        kind = kind.strip().lower()
        arity = {"fixed": 1, "uniform": 2, "lognormal": 2}.get(kind)
        if arity is None or len(numbers) != arity:
            raise ValueError(
                f"bad latency {text!r}: use fixed:S, uniform:LO,HI"
                " or lognormal:MEDIAN,SIGMA"
            )

        if kind == "fixed":
            return cls.fixed(numbers[0])

        if kind == "uniform":
            return cls.uniform(numbers[0], numbers[1])

        return cls.lognormal(numbers[0], numbers[1])

    def sample(self, rng: random.Random) -> float:
        """Draw one attempt's duration from *rng*."""
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)

        if self.kind == "lognormal":
            return self.a * math.exp(self.b * rng.gauss(0.0, 1.0))

        return self.a


@attrs.frozen
class Faults:
    """Trouble the simulator injects; everything is off by default.

    Rates are fractions in [0, 1] drawn from the simulator's seeded generator.
    """

    #: Tasks that revert: FAILED ``Transaction Receipt Failed``, nothing executed.
    revert_rate: float = attrs.field(default=0.0, validator=_rate)
    #: Tasks that execute on the ledger yet report FAILED with ``errorMessage: null``.
    failed_but_executed_rate: float = attrs.field(default=0.0, validator=_rate)
    #: Tasks whose first attempt executes but loses its receipt, so the retry
    #: executes them a second time (a double pay, a second room) and succeeds.
    double_execution_rate: float = attrs.field(default=0.0, validator=_rate)
    #: Tasks whose first attempt executes but loses its receipt, and whose retry
    #: then reverts: FAILED ``Transaction Receipt Failed`` although the operation
    #: happened once. Their result comes after the attempt's 40 s receipt budget.
    late_revert_rate: float = attrs.field(default=0.0, validator=_rate)
    #: Tasks that stay PENDING forever (a worker crashed mid-task).
    stuck_rate: float = attrs.field(default=0.0, validator=_rate)
    #: Seconds after submission during which the status endpoint says NOT_FOUND.
    not_found_window: float = attrs.field(default=0.0, validator=_non_negative)
    #: Requests per second allowed per API key; beyond it the answer is 429.
    rate_limit_rps: float | None = None
    #: The 429's Retry-After in seconds; None sends no Retry-After header.
    rate_limit_retry_after: float | None = 1.0
    #: Send the 429 as a proxy's HTML page instead of JSON.
    rate_limit_html: bool = False
    #: Requests answered 5xx before any handling.
    server_error_rate: float = attrs.field(default=0.0, validator=_rate)
    #: Requests whose connection is closed before any response (nothing handled).
    drop_rate: float = attrs.field(default=0.0, validator=_rate)

    @classmethod
    def parse(cls, text: str) -> Faults:
        """Read ``revert=0.05,stuck=0.01,rate_limit_rps=20`` (names without ``_rate``).

        Raises:
            ValueError: for an unknown name or a bad value.
        """
        names = {field.name for field in attrs.fields(cls)}
        values: dict[str, object] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, _, raw = item.partition("=")
            key = key.strip().replace("-", "_")
            name = key if key in names else f"{key}_rate"
            if name not in names:
                raise ValueError(f"unknown fault {key!r}; known: {sorted(names)}")

            values[name] = _fault_value(name, raw.strip())

        return cls(**values)  # type: ignore[arg-type]


def _fault_value(name: str, raw: str) -> object:
    if name == "rate_limit_html":
        return raw.lower() in ("", "1", "true", "yes", "on")

    if raw.lower() in ("none", "null", "off"):
        return None

    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"bad value {raw!r} for fault {name!r}") from None


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _default_tokens() -> Mapping[str, int]:
    return {"plyr": 18, "gamr": 18}


def _lower_tokens(tokens: Mapping[str, int]) -> Mapping[str, int]:
    return {symbol.lower(): int(decimals) for symbol, decimals in tokens.items()}


_DEFAULT_LATENCY = Latency("fixed", 0.05)
_NO_FAULTS = Faults()


@attrs.frozen
class SimConfig:
    """Everything that shapes one simulator run.

    Attributes:
        seed: seeds every random choice (latency, faults, ids of players).
        latency: the duration of one task attempt.
        workers: 1 is the real service's single sequential consumer; None runs
            every task on its own clock so load tests are not throttled here.
        tokens: token symbol -> decimals (the token list).
        platform_fee_percent: share of every earn sent to the fee account.
        faults: injected trouble.
        sync_checks: how many status checks a ``sync`` call makes.
        sync_interval: seconds between those checks (join's second phase waits
            twice as long between its ``isJoined`` re-checks).
        retry_sleep_scale: multiplies the worker's 1 s, 2 s, 3 s retry sleeps
            and the 40 s an attempt whose receipt is lost takes to fail.
        game_id: the API key's plyrId, i.e. the caller's game.
    """

    seed: int = 0
    latency: Latency = _DEFAULT_LATENCY
    workers: int | None = 1
    tokens: Mapping[str, int] = attrs.field(
        factory=_default_tokens, converter=_lower_tokens
    )
    platform_fee_percent: int = 2
    faults: Faults = _NO_FAULTS
    sync_checks: int = 50
    sync_interval: float = 0.5
    retry_sleep_scale: float = 1.0
    game_id: str = "sim-game"

    def __attrs_post_init__(self) -> None:
        _check(
            self.workers is None or self.workers >= 1, "workers must be >= 1 or None"
        )
        _check(self.sync_checks >= 1, "sync_checks must be >= 1")
        _check(self.game_id == self.game_id.lower(), "game_id must be lower-case")
