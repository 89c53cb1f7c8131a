"""An embedded PLYR API: the same paths, signing, errors and task lifecycle.

``async with Simulator() as sim:`` serves the API on a free loopback port.
Point a client at ``sim.url`` with ``sim.api_key`` / ``sim.api_secret``, create
players with :meth:`Simulator.add_players`, and assert on :meth:`Simulator.ledger`.
Latency and faults are seeded and configured through :class:`SimConfig`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from plyr_rooms.simulator._app import App
from plyr_rooms.simulator._config import Faults as Faults
from plyr_rooms.simulator._config import Latency as Latency
from plyr_rooms.simulator._config import SimConfig as SimConfig
from plyr_rooms.simulator._http import ApiKey
from plyr_rooms.simulator._ledger import Approval
from plyr_rooms.simulator._snapshot import LedgerSnapshot as LedgerSnapshot
from plyr_rooms.simulator._snapshot import RoomSnapshot as RoomSnapshot
from plyr_rooms.simulator._snapshot import SimCounters as SimCounters
from plyr_rooms.simulator._snapshot import TaskRecord as TaskRecord
from plyr_rooms.simulator._state import SimState
from plyr_rooms.simulator._users import totp

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

__all__ = [
    "Faults",
    "Latency",
    "LedgerSnapshot",
    "RoomSnapshot",
    "SimConfig",
    "SimCounters",
    "SimPlayer",
    "Simulator",
    "TaskRecord",
]

logger = logging.getLogger(__name__)

#: Lifetime of the approvals :meth:`Simulator.add_players` grants (seconds).
_APPROVAL_SECONDS = 365 * 86_400

Amount = Decimal | int | str


@attrs.frozen
class SimPlayer:
    """A simulated user, logged in to the simulator's game.

    Attributes:
        plyr_id: the lower-case PLYR[ID].
        session_jwt: the newest session JWT (a secret: never shown in a repr).
    """

    plyr_id: str
    session_jwt: str = attrs.field(repr=False)


class Simulator:
    """A running PLYR API simulator (an async context manager).

    Args:
        config: the settings; keyword *overrides* replace single fields of it.
        host: the interface to listen on (loopback unless you mean otherwise).
        port: the TCP port; 0 picks a free one.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **overrides: Any,
    ) -> None:
        self.config = attrs.evolve(config or SimConfig(), **overrides)
        self.api_key = secrets.token_hex(16)
        self.api_secret = secrets.token_hex(32)
        self.game_id = self.config.game_id
        self.host = host
        self.port = port
        self.url = ""
        self._state: SimState | None = None
        self._runner: web.BaseRunner | None = None
        self._players = 0

    def __repr__(self) -> str:
        return f"<Simulator url={self.url!r} game_id={self.game_id!r}>"

    async def __aenter__(self) -> Simulator:
        key = ApiKey(self.api_key, self.api_secret, self.game_id)
        self._state = SimState(self.config, key)
        server = web.Server(App(self._state).handle, access_log=None)
        self._runner = web.ServerRunner(server, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{self.port}/api"
        logger.debug("simulator serving %s", self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving; tasks still pending are abandoned."""
        if self._state is not None:
            self._state.worker.close()

        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def state(self) -> SimState:
        """The live internals (for the simulator's own tests)."""
        if self._state is None:
            raise RuntimeError("the simulator is not running; use `async with`")

        return self._state

    async def add_players(
        self,
        n: int,
        *,
        balance: Amount = 1000,
        allowance: Amount | None = 1000,
        tokens: Sequence[str] = ("plyr",),
    ) -> list[SimPlayer]:
        """Create *n* users, fund them, approve the game, and log them in.

        Args:
            n: how many players.
            balance: what each holds of every token in *tokens*.
            allowance: what each approves the game to spend per token (None: no
                approval record at all).
            tokens: token symbols from the token list.

        Raises:
            ValueError: for an unknown token or an amount finer than its decimals.
        """
        state = self.state
        units = {t.lower(): self._units(t, balance) for t in tokens}
        players = []
        for index in range(n):
            if index % 256 == 255:
                await asyncio.sleep(0)  # keep serving while a big batch is made

            self._players += 1
            plyr_id = f"player-{self._players:05d}"
            primary, mirror = _address(plyr_id, "primary"), _address(plyr_id, "mirror")
            state.sessions.add_user(plyr_id, primary, mirror)
            state.chain.balances[plyr_id] = dict(units)
            if allowance is not None:
                self.approve(plyr_id, allowance, tokens=tokens)

            players.append(
                SimPlayer(plyr_id, state.sessions.login(plyr_id, self.game_id))
            )

        return players

    def approve(
        self, plyr_id: str, amount: Amount, *, tokens: Sequence[str] = ("plyr",)
    ) -> None:
        """Set (replace) what *plyr_id* allows the game to spend of each token."""
        value = _decimal(amount)
        for token in tokens:
            key = (plyr_id.lower(), self.game_id, token.lower())
            self.state.chain.allowances[key] = Approval(
                value, _APPROVAL_SECONDS, time.time()
            )

    def otp(self, plyr_id: str, *, step: int = 0) -> str:
        """Return *plyr_id*'s current two-factor code (for login and approve).

        A code works once per five minutes; *step* = 1 gives the next 30 s
        step's code, which the server also accepts.
        """
        user = self.state.sessions.users[plyr_id.lower()]
        return totp(user.otp_secret, time.time(), step)

    def ledger(self) -> LedgerSnapshot:
        """Return a frozen snapshot of balances, rooms, fees and counters."""
        return self.state.snapshot()

    def counters(self) -> SimCounters:
        """Return only the request and task counters (cheaper than :meth:`ledger`)."""
        return self.state.counters()

    def expire_session(self, plyr_id: str) -> None:
        """Make *plyr_id*'s session deadline lapse: its JWT is refused from now on."""
        self.state.sessions.expire(plyr_id.lower(), self.game_id)

    def relogin(self, plyr_id: str) -> str:
        """Log *plyr_id* in again and return the new JWT; the old one stops working."""
        return self.state.sessions.login(plyr_id.lower(), self.game_id)

    def _units(self, token: str, amount: Amount) -> int:
        decimals = self.config.tokens.get(token.lower())
        if decimals is None:
            raise ValueError(
                f"unknown token {token!r}; known: {sorted(self.config.tokens)}"
            )

        scaled = _decimal(amount).scaleb(decimals)
        if scaled != scaled.to_integral_value() or scaled < 0:
            raise ValueError(f"{amount!r} is not a valid amount of {token!r}")

        return int(scaled)


def _decimal(amount: Amount) -> Decimal:
    try:
        return Decimal(str(amount)) if not isinstance(amount, Decimal) else amount
    except InvalidOperation:
        raise ValueError(f"{amount!r} is not a decimal amount") from None


def _address(plyr_id: str, kind: str) -> str:
    # Lower-case hex: valid for viem, and 100x cheaper than an EIP-55 checksum
    # when a load test creates forty thousand players.
    return "0x" + hashlib.sha256(f"{kind}:{plyr_id}".encode()).hexdigest()[-40:]
