"""The Hub's login for browsers: JupyterHub's service OAuth, in aiohttp.

A gateway the Hub starts as its managed service with a ``url`` is an OAuth
client of the Hub: the Hub registers it and passes ``JUPYTERHUB_CLIENT_ID``,
``JUPYTERHUB_OAUTH_CALLBACK_URL``, ``JUPYTERHUB_SERVICE_PREFIX``
(``/services/<name>/``, the path its proxy forwards unchanged) and
``JUPYTERHUB_API_TOKEN`` (the client's secret). A browser on the service's
pages then signs in through the Hub:

1. A page request without a valid cookie is sent to the Hub's authorize URL
   with a new ``state`` and a PKCE challenge; the state (with the page to come
   back to and the PKCE verifier) is kept here for ten minutes and set in a
   signed, HttpOnly cookie named after it, so concurrent sign-ins in one
   browser do not overwrite each other.
2. The Hub (after its own login page, when the browser is not signed in there)
   sends the browser to the callback with a ``code`` and the ``state``. The
   state must be one kept here and match the signed cookie of this browser
   (a sign-in started elsewhere, a login CSRF, is refused); the code is then
   exchanged for the user's OAuth token, with the PKCE verifier.
3. The token, signed, is the session cookie (HttpOnly, SameSite=Lax, path the
   service's prefix, Secure over https). Each page request shows it to the
   Hub's ``GET /user`` through :class:`~dockermagic.gateway.hub.HubIdentity`,
   kept like a kernel's token, so a token the Hub revoked signs the browser
   out and the teacher rules are the API's.

Cookies are signed (HMAC-SHA256, a key made at start): every user's server is
on the Hub's origin and may set cookies on the service's path, so only
cookies this gateway set are believed, and garbage costs no Hub call. A
restart of the gateway signs browsers out; they come back through the Hub
(without a click when the service has ``oauth_no_confirm``).

JupyterHub's :class:`jupyterhub.services.auth.HubOAuth` brings the protocol:
the authorize URL, the state store, PKCE and the token exchange (its
``sync=False`` path runs on JupyterHub's aiohttp client, in this loop). Its
cookie and handler parts are tornado's, hence the cookies here. It is
imported only when the Hub made the gateway an OAuth client: a gateway
without ``jupyterhub`` installed beside it serves its API alone and says why.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import urllib.parse
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from dockermagic.gateway.config import User
from dockermagic.gateway.hub import HubIdentity, HubUnavailableError
from dockermagic.gateway.page import PAGE_HEADERS, message_page

__all__ = ["BrowserLogin", "CookieSigner", "oauth_missing"]

logger = logging.getLogger(__name__)

#: Seconds a sign-in may take between the redirect to the Hub and the callback.
STATE_SECONDS = 600
#: The longest cookie value believed (a browser keeps 4 KiB per cookie).
MAX_COOKIE = 4096


class CookieSigner:
    """Signs cookie values, so that only cookies this process set are believed.

    Args:
        key: The HMAC key (a new random one by default).
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def _mac(self, name: str, value: str) -> str:
        # The cookie's name is signed too: a state cookie is no session cookie.
        message = f"{name}={value}".encode("utf-8", "surrogateescape")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, name: str, value: str) -> str:
        """The cookie value for ``value`` (the value, a dot, its signature)."""
        return f"{value}.{self._mac(name, value)}"

    def unsign(self, name: str, signed: str | None) -> str | None:
        """The value of a signed cookie, or None when it is missing or not ours."""
        if not signed or len(signed) > MAX_COOKIE:
            return None
        value, dot, mac = signed.rpartition(".")
        if not (dot and value):
            return None
        if not hmac.compare_digest(mac.encode("ascii", "replace"), self._mac(name, value).encode()):
            return None
        return value


def oauth_missing(environ: Mapping[str, str]) -> str:
    """Why the Hub's browser login is not available here ("" when it is).

    Args:
        environ: The process's environment (as the Hub set it).

    Returns:
        The missing piece, in words.
    """
    needed = ("JUPYTERHUB_CLIENT_ID", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_SERVICE_PREFIX")
    absent = [name for name in needed if not environ.get(name)]
    if absent:
        return f"{', '.join(absent)} not set (the Hub sets them for a service with a url)"
    try:
        import jupyterhub.services.auth  # noqa: F401
    except ImportError:
        return "jupyterhub not installed beside the gateway (pip install 'dockermagic[hub]')"
    return ""


def _html(status: int, title: str, text: str, link: str) -> web.Response:
    return web.Response(
        text=message_page(title, text, link),
        status=status,
        content_type="text/html",
        headers=PAGE_HEADERS,
    )


class BrowserLogin:
    """The Hub's OAuth sign-in of browsers, and who a request's cookie names.

    Args:
        identity: Asks the Hub who a token belongs to.
        environ: The process's environment, with the ``JUPYTERHUB_*``
            variables the Hub sets for its service (see :func:`oauth_missing`).
        signer: Signs the cookies (a new key by default).
    """

    def __init__(
        self,
        identity: HubIdentity,
        environ: Mapping[str, str],
        signer: CookieSigner | None = None,
    ) -> None:
        from jupyterhub.services.auth import HubOAuth

        self.identity = identity
        self.signer = signer or CookieSigner()
        settings: dict[str, Any] = {
            "api_url": identity.settings.api_url,
            "api_token": environ["JUPYTERHUB_API_TOKEN"],
            "oauth_client_id": environ["JUPYTERHUB_CLIENT_ID"],
            "base_url": environ["JUPYTERHUB_SERVICE_PREFIX"],
            "oauth_state_max_age": STATE_SECONDS,
        }
        # The rest as HubOAuth itself reads them, from this mapping rather than os.environ.
        optional = {
            "JUPYTERHUB_OAUTH_CALLBACK_URL": "oauth_redirect_uri",
            "JUPYTERHUB_HOST": "hub_host",
        }
        settings.update({key: environ[name] for name, key in optional.items() if environ.get(name)})
        if environ.get("JUPYTERHUB_BASE_URL"):
            settings["hub_prefix"] = environ["JUPYTERHUB_BASE_URL"].rstrip("/") + "/hub/"
        self.oauth: Any = HubOAuth(**settings)
        #: The service's path prefix (``/services/<name>/``): its pages, its cookies' path.
        self.prefix: str = self.oauth.base_url
        #: The callback's path (the Hub sends browsers there).
        self.callback_path = urllib.parse.urlsplit(self.oauth.oauth_redirect_uri).path
        #: The session cookie's name (the OAuth client's id, as HubOAuth names it).
        self.cookie_name: str = self.oauth.cookie_name
        public = environ.get("JUPYTERHUB_PUBLIC_URL", "")
        self._public_scheme = urllib.parse.urlsplit(public).scheme if public else ""

    # -- who is signed in -------------------------------------------------------------------

    async def user(self, request: web.Request) -> User | None:
        """The user a request's session cookie names, or None (not signed in).

        Raises:
            HubUnavailableError: The Hub did not say who the token belongs to.
        """
        token = self.signer.unsign(self.cookie_name, request.cookies.get(self.cookie_name))
        if token is None:
            return None
        return await self.identity.user_for_token(token)

    # -- the sign-in ------------------------------------------------------------------------

    def _state_cookie(self, state: str) -> str:
        # One cookie per sign-in under way; the name follows from the state alone.
        suffix = hashlib.sha256(state.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return f"{self.oauth.state_cookie_name}-{suffix}"

    def _secure(self, request: web.Request) -> bool:
        scheme = self._public_scheme
        if not scheme:
            # Behind the Hub's proxy the browser's scheme is in X-Forwarded-Proto.
            forwarded = request.headers.get("X-Forwarded-Proto", "")
            scheme = forwarded.split(",")[0].strip().lower() or request.scheme
        return scheme == "https"

    def _set_cookie(
        self, response: web.StreamResponse, request: web.Request, name: str, value: str, **kw: Any
    ) -> None:
        response.set_cookie(
            name,
            self.signer.sign(name, value),
            path=self.prefix,
            httponly=True,
            samesite="Lax",
            secure=self._secure(request),
            **kw,
        )

    def sign_in(self, request: web.Request) -> web.Response:
        """Send the browser to the Hub's authorize URL, to come back to this page.

        Args:
            request: The request for a page, without a valid session cookie.

        Returns:
            The redirect (302), with the new sign-in's state cookie.
        """
        # Back to the page asked for, never elsewhere (no open redirect).
        next_url = request.path_qs if request.path.startswith(self.prefix) else self.prefix
        verifier, challenge, method = self.oauth.generate_pkce_code_challenge()
        state: str = self.oauth.generate_state(next_url, code_verifier=verifier)
        query = urllib.parse.urlencode(
            {"state": state, "code_challenge": challenge, "code_challenge_method": method}
        )
        response = web.Response(status=302, headers={"Location": f"{self.oauth.login_url}&{query}"})
        response.headers.update(PAGE_HEADERS)
        self._set_cookie(response, request, self._state_cookie(state), state, max_age=STATE_SECONDS)
        return response

    async def callback(self, request: web.Request) -> web.Response:
        """The Hub's redirect back: check the state, exchange the code, set the cookie.

        Args:
            request: ``GET <callback>?code=...&state=...``.

        Returns:
            A redirect to the page the sign-in started from, or a page saying
            why the sign-in is refused (403) or failed (502; 503 when the Hub
            does not answer).
        """
        again = self.prefix
        state = request.query.get("state", "")
        code = request.query.get("code", "")
        name = self._state_cookie(state)
        cookie_state = self.signer.unsign(name, request.cookies.get(name))
        # A state this gateway made (PKCE verifier kept), for this browser (its cookie).
        verifier = self.oauth.get_code_verifier(state) if state else None
        if not (state and cookie_state is not None and hmac.compare_digest(cookie_state, state)):
            logger.warning("a sign-in's state does not match its browser's cookie")
            return self._refused(name, "The sign-in's state does not match this browser's.")
        if verifier is None:
            return self._refused(name, "This sign-in is too old or was already used.")
        next_url: str = self.oauth.get_next_url(state)
        # One use only, whatever happens next.
        self.oauth.clear_oauth_state(state)
        if request.query.get("error") or not code:
            return self._refused(name, "The Hub did not grant the sign-in.")
        try:
            token: str = await self.oauth.token_for_code(code, code_verifier=verifier, sync=False)
        except Exception as exc:  # HubOAuth raises tornado's HTTPError, or the client's
            logger.warning("the Hub did not exchange a sign-in code: %s", exc)
            response = _html(502, "Sign-in failed", "The Hub did not complete the sign-in.", again)
            response.del_cookie(name, path=self.prefix)
            return response
        try:
            user = await self.identity.user_for_token(token)
        except HubUnavailableError as exc:
            response = _html(503, "The Hub does not answer", str(exc), again)
            response.del_cookie(name, path=self.prefix)
            return response
        if user is None:
            return self._refused(name, "The Hub does not name a user for this sign-in.")
        if not next_url.startswith(self.prefix):
            next_url = self.prefix
        response = web.Response(status=302, headers={"Location": next_url})
        response.headers.update(PAGE_HEADERS)
        response.del_cookie(name, path=self.prefix)
        self._set_cookie(response, request, self.cookie_name, token)
        return response

    async def close(self) -> None:
        """Close the HTTP client HubOAuth's token exchange opened in this loop, if any."""
        from jupyterhub.httpclient import JupyterHubHTTPClient

        if JupyterHubHTTPClient.initialized():
            await JupyterHubHTTPClient.loop_instance().close()

    def _refused(self, state_cookie: str, why: str) -> web.Response:
        response = _html(403, "Sign-in refused", f"{why} Sign in again.", self.prefix)
        response.del_cookie(state_cookie, path=self.prefix)
        return response
