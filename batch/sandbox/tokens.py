"""Access tokens as iamport hands them out: one at a time, reused until it expires."""

from __future__ import annotations

import secrets
from collections.abc import Callable

DEFAULT_TOKEN_TTL = 1800.0

# iamport: asking again in a token's last minute extends it by five minutes (of thirty).
# The sandbox keeps those proportions for any --token-ttl, so that a 2-second token still
# expires mid-run as a real one would, instead of being stretched by five whole minutes.
EXTEND_WINDOW_SHARE = 60 / 1800
EXTENSION_SHARE = 300 / 1800


class TokenIssuer:
    """Issues the one live token; `valid` says whether a presented token may be used now."""

    def __init__(self, wall_clock: Callable[[], float], ttl: float = DEFAULT_TOKEN_TTL) -> None:
        if ttl <= 0:
            raise ValueError("the token lifetime must be positive")
        self._wall_clock = wall_clock
        self.ttl = ttl
        self._token: str | None = None
        self._expires_at = 0.0
        self.issued = 0

    def issue(self) -> tuple[str, int, int]:
        """(access_token, now, expired_at), the times in UNIX seconds as iamport gives them."""
        now = self._wall_clock()
        if self._token is None or now >= self._expires_at:
            self._token = "sandbox_" + secrets.token_hex(16)
            self._expires_at = now + self.ttl
            self.issued += 1
        elif self._expires_at - now <= self.ttl * EXTEND_WINDOW_SHARE:
            self._expires_at += self.ttl * EXTENSION_SHARE
        return self._token, int(now), int(self._expires_at)

    def valid(self, token: str) -> bool:
        return token == self._token and self._wall_clock() < self._expires_at
