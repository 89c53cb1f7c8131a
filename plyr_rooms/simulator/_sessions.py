"""Simulated users and their ES256 session JWTs (API reference, section 5).

Per user and game the server keeps a nonce and a deadline: a login bumps the
nonce, so only the newest JWT works, and a lapsed deadline refuses the JWT even
while it is cryptographically valid. Signature checks are cached by token text;
nonce, deadline and ``exp`` are still checked on every use.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

import attrs
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["SessionCheck", "Sessions", "User"]

#: A login without ``expiresIn`` lasts this long (seconds).
DEFAULT_SESSION_SECONDS = 86_400
_CACHE_LIMIT = 200_000
_INVALID = "Invalid sessionJwt"


@attrs.define(eq=False)
class User:
    plyr_id: str
    primary_address: str
    mirror_address: str
    # game id -> the nonce a JWT must reach / the deadline in unix ms
    nonce: dict[str, int] = attrs.Factory(dict)
    deadline: dict[str, float] = attrs.Factory(dict)
    # two-factor state: the TOTP secret, consecutive failures, lock end (unix s)
    otp_secret: bytes = b""
    failures: int = 0
    locked_until: float = 0.0
    is_ipp: bool = False  # an Instant-Play-Pass guest: no 2FA, no logout


@attrs.frozen
class SessionCheck:
    """The outcome of ``checkSessionJwts``.

    Attributes:
        plyr_ids: the players named by the JWTs, in request order, duplicates kept.
        invalid: plyr id (or ``"unknown"``) -> reason, empty when all are valid.
    """

    plyr_ids: list[str]
    invalid: dict[str, str]


class Sessions:
    """The users' session state and the key that signs their JWTs."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._public = self._key.public_key()
        pem = self._public.public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        self.public_key_b64 = base64.b64encode(pem).decode("ascii")
        self.users: dict[str, User] = {}
        # token text -> its payload, or None when the signature is bad
        self._verified: dict[str, dict[str, Any] | None] = {}

    def add_user(self, plyr_id: str, primary_address: str, mirror_address: str) -> User:
        """Register a user (plyr ids are lower-case)."""
        user = User(plyr_id, primary_address, mirror_address)
        user.otp_secret = secrets.token_bytes(20)
        self.users[plyr_id] = user
        return user

    def login(
        self,
        plyr_id: str,
        game_id: str,
        *,
        expires_in: int = DEFAULT_SESSION_SECONDS,
        deadline_ms: float | None = None,
    ) -> str:
        """Log *plyr_id* in to *game_id* and return the new session JWT.

        Every earlier JWT of the same user and game stops working.

        Args:
            plyr_id: the user.
            game_id: the game, exactly as the login named it.
            expires_in: the JWT's lifetime in seconds.
            deadline_ms: the server-side deadline when it differs from the JWT's
                (``expiresIn`` quirks); by default now + *expires_in*.
        """
        user = self.users[plyr_id]
        now = time.time()
        nonce = user.nonce.get(game_id, 0) + 1
        user.nonce[game_id] = nonce
        if deadline_ms is None:
            deadline_ms = int(now * 1000) + expires_in * 1000

        user.deadline[game_id] = deadline_ms
        issued = int(now)
        payload = {
            "plyrId": plyr_id,
            "nonce": nonce,
            "gameId": game_id,
            "primaryAddress": user.primary_address,
            "mirrorAddress": user.mirror_address,
            "iat": issued,
            "exp": issued + expires_in,
        }
        token = jwt.encode(payload, self._key, algorithm="ES256")
        # We just signed it: no need to verify our own signature on first use.
        self._remember(token, payload)
        return token

    def payload(self, token: object) -> dict[str, Any] | None:
        """Return the verified, unexpired payload of *token*, or None."""
        return self._payload(token, time.time())

    def expire(self, plyr_id: str, game_id: str) -> None:
        """Make the user's session deadline for *game_id* lapse (the JWT stays)."""
        self.users[plyr_id].deadline[game_id] = 0

    def check(self, tokens: list[object], expected_game: str) -> SessionCheck:
        """Run ``checkSessionJwts`` over *tokens* for the game *expected_game*."""
        now = time.time()
        plyr_ids: list[str] = []
        invalid: dict[str, str] = {}
        for token in tokens:
            payload = self._payload(token, now)
            if payload is None:
                invalid["unknown"] = _INVALID
                continue

            plyr_id = str(payload.get("plyrId"))
            plyr_ids.append(plyr_id)
            reason = self._refusal(payload, plyr_id, expected_game, now)
            if reason is not None:
                invalid[plyr_id] = reason

        return SessionCheck(plyr_ids, invalid)

    def _refusal(
        self, payload: dict[str, Any], plyr_id: str, game: str, now: float
    ) -> str | None:
        if payload.get("gameId") != game:
            return "Invalid gameId"

        user = self.users.get(plyr_id.lower())
        if user is None:
            return "User not found"

        nonce = payload.get("nonce")
        if not isinstance(nonce, int | float) or nonce < user.nonce.get(game, 0):
            return "JWT nonce is expired"

        # A NaN deadline (a login with expiresIn "1h") fails this test too.
        if not user.deadline.get(game, 0) >= now * 1000:
            return "JWT deadline is expired"

        return None

    def _payload(self, token: object, now: float) -> dict[str, Any] | None:
        if not isinstance(token, str):
            return None

        try:
            payload = self._verified[token]
        except KeyError:
            payload = self._verify(token)

        if payload is None:
            return None

        # jsonwebtoken refuses a token once the clock reaches exp.
        exp = payload.get("exp")
        if isinstance(exp, int | float) and int(now) >= exp:
            return None

        return payload

    def _verify(self, token: str) -> dict[str, Any] | None:
        try:
            payload: dict[str, Any] | None = jwt.decode(
                token,
                self._public,
                algorithms=["ES256"],
                options={"verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError:
            payload = None

        self._remember(token, payload)
        return payload

    def _remember(self, token: str, payload: dict[str, Any] | None) -> None:
        if len(self._verified) >= _CACHE_LIMIT:
            self._verified.clear()

        self._verified[token] = payload
