"""The gateway as a JupyterHub service: the Hub says who a token belongs to.

A request's token (a Hub-spawned kernel's ``JUPYTERHUB_API_TOKEN``, or an API
token a user made on the Hub) is shown to the Hub's ``GET {api_url}/user``
with ``Authorization: token ...``, as JupyterHub's own
``jupyterhub.services.auth.HubAuth`` does; any token may identify itself
there, so the gateway needs no token of its own for it. The answer (the
user's name, whether they are an admin, their groups) becomes a
:class:`~dockermagic.gateway.config.User` through
:meth:`~dockermagic.gateway.config.HubSettings.user_from_model`, and is kept
for ``cache_seconds`` so that a kernel's cells do not each cost a Hub call.
Unknown tokens are remembered for a few seconds too: a flood of bad tokens
must not become a flood on the Hub.

aiohttp's client (the server's own library), not ``HubAuth``: the latter is
built on tornado's and traitlets' machinery and would pull JupyterHub itself
into every token check. Browsers sign in through the Hub's OAuth instead
(:mod:`dockermagic.gateway.oauth`, which does use JupyterHub's ``HubOAuth``);
the token their cookie holds is checked here like any other.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from dockermagic.errors import GatewayError
from dockermagic.gateway.config import HubSettings, User

__all__ = ["HubIdentity", "HubUnavailableError", "TokenCache"]

logger = logging.getLogger(__name__)

#: Seconds an unknown token is remembered (a new token is made before it is used).
NEGATIVE_SECONDS = 5.0
#: Tokens remembered at most (the oldest answer goes first).
MAX_ENTRIES = 4096
#: Seconds to wait for the Hub's answer.
HUB_TIMEOUT = 10.0


class HubUnavailableError(GatewayError):
    """The Hub did not answer, or answered something else than a user or a refusal."""


class TokenCache:
    """The Hub's answers about tokens, each kept for a while (keyed by the token's hash).

    Args:
        seconds: How long a user is kept.
        negative_seconds: How long an unknown token is kept.
        max_entries: Answers kept at most.
        clock: The monotonic clock (a test's own, for pure tests).
    """

    def __init__(
        self,
        seconds: float,
        *,
        negative_seconds: float = NEGATIVE_SECONDS,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.negative_seconds = min(negative_seconds, seconds)
        self.max_entries = max_entries
        self._clock = clock
        self._entries: collections.OrderedDict[str, tuple[float, User | None]] = (
            collections.OrderedDict()
        )

    @staticmethod
    def key(token: str) -> str:
        """The key a token is kept under (its hash: the cache holds no tokens)."""
        return hashlib.sha256(token.encode("utf-8")).hexdigest()

    def get(self, token: str) -> tuple[bool, User | None]:
        """The kept answer for a token.

        Args:
            token: The token.

        Returns:
            (found, user): found is False when nothing fresh is kept; user is
            None for a token the Hub did not know.
        """
        key = self.key(token)
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires, user = entry
        if self._clock() >= expires:
            del self._entries[key]
            return False, None
        return True, user

    def put(self, token: str, user: User | None) -> None:
        """Keep the Hub's answer about a token.

        Args:
            token: The token.
            user: Its user, or None when the Hub did not know it.
        """
        seconds = self.seconds if user is not None else self.negative_seconds
        if seconds <= 0:
            return
        key = self.key(token)
        self._entries[key] = (self._clock() + seconds, user)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class HubIdentity:
    """Asks a JupyterHub who a token belongs to (in the gateway's event loop).

    Args:
        settings: The ``hub`` part of the gateway's configuration.
    """

    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self.cache = TokenCache(settings.cache_seconds)
        self._session: aiohttp.ClientSession | None = None
        # Requests with the same new token at once share one question to the Hub.
        self._asking: dict[str, asyncio.Future[User | None]] = {}

    async def user_for_token(self, token: str) -> User | None:
        """The Hub user a token belongs to.

        Args:
            token: The token a request carried.

        Returns:
            The user, or None when the Hub does not know the token (or it is a
            service's).

        Raises:
            HubUnavailableError: The Hub did not answer as expected.
        """
        found, user = self.cache.get(token)
        if found:
            return user
        key = TokenCache.key(token)
        pending = self._asking.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[User | None] = asyncio.get_running_loop().create_future()
        self._asking[key] = future
        try:
            user = await self._ask(token)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            # Nobody else may be waiting: the exception is then ours alone.
            future.exception()
            raise
        else:
            self.cache.put(token, user)
            future.set_result(user)
            return user
        finally:
            del self._asking[key]

    async def _ask(self, token: str) -> User | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HUB_TIMEOUT))
        url = f"{self.settings.api_url}/user"
        try:
            async with self._session.get(
                url, headers={"Authorization": f"token {token}"}
            ) as response:
                if response.status in (401, 403):
                    return None
                if response.status != 200:
                    raise HubUnavailableError(
                        f"The JupyterHub at {self.settings.api_url} answered {response.status} "
                        "when asked who this token belongs to"
                    )
                model: Any = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise HubUnavailableError(
                f"The JupyterHub at {self.settings.api_url} did not say who this token "
                f"belongs to: {type(exc).__name__}: {exc}"
            ) from exc
        user = self.settings.user_from_model(model)
        if user is None:
            logger.info("the Hub's answer names no user (a service's token?)")
        return user

    async def close(self) -> None:
        """Close the connection to the Hub."""
        if self._session is not None:
            await self._session.close()
            self._session = None
