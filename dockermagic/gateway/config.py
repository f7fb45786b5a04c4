"""The teacher's configuration: users and tokens, the policy ceiling, the quotas.

A JSON file (``dockermagic gateway serve --config FILE``)::

    {
      "host": "127.0.0.1", "port": 8765,
      "audit_dir": "/var/log/dockermagic-gateway",
      "users": {
        "teacher": {"token_sha256": "<hex>", "role": "teacher"},
        "alice": {"token_sha256": "<hex>"},
        "bob": {"token": "plain-text works too", "network": true}
      },
      "ceiling": {"timeout": 30, "memory": "512m", "cpus": 1, "output_limit": "1m",
                  "images": {"python": ["dockermagic/python:offline"]},
                  "packages": {"python": ["tabulate"]}},
      "quotas": {"runs_at_once": 2, "queued": 8, "sessions": 2,
                 "cpu_seconds_per_hour": 600},
      "capacity": 4, "idle_timeout": 900, "pool_size": 2,
      "tls": {"cert": "gateway-cert.pem", "key": "gateway-key.pem"}
    }

As a JupyterHub service, a ``"hub"`` object makes the Hub vouch for tokens:
a request's token (a Hub-spawned kernel's ``JUPYTERHUB_API_TOKEN``, or an
API token a user made on the Hub) is shown to ``GET {api_url}/user``, and the
Hub's answer names the user; ``users`` may then be left out (those it lists
still work, e.g. a teacher's own token)::

    "hub": {"api_url": "http://127.0.0.1:8081/hub/api", "teachers": ["mrs-smith"],
            "teacher_groups": ["staff"], "admins_are_teachers": true,
            "network": ["carol"], "cache_seconds": 60}

``api_url`` defaults to ``$JUPYTERHUB_API_URL``; teachers are the Hub users
``teachers`` names, members of the Hub groups ``teacher_groups`` names, and
(unless ``admins_are_teachers`` is false) the Hub's admins; ``network`` names
the Hub users who may ask for a network; the Hub's answer about a token is
kept ``cache_seconds`` (60 by default).

A service the Hub starts (``command`` in ``c.JupyterHub.services``) finds
``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_SERVICE_URL`` in its environment;
without ``host`` and ``port`` in the file it listens where the latter says.
Only tokens of Hub users are accepted (not those of services). Such a
service is also the Hub's OAuth client: its status page for browsers
(:mod:`dockermagic.gateway.oauth`) needs no key here either.

In front of a Docker Swarm (the gateway's ``DOCKER_HOST`` names a manager),
a ``"swarm"`` object makes every one-shot run (and so every script of a
client's batch) a one-off task on any node of the cluster
(:mod:`dockermagic.gateway.swarm`); sessions stay containers on the
manager's own engine (a warm interpreter needs an attach)::

    "swarm": {"start_timeout": 60}

``start_timeout`` is how long a task may take to be placed and started (60 s
by default); ``"swarm": true`` takes the defaults. ``capacity`` then counts
the cluster's tasks: set it to about the ready nodes' CPUs.

The ceiling is the most a student may ask for: every numeric field of
:class:`~dockermagic.policy.SandboxPolicy` (``timeout``, ``memory``, ``cpus``,
``pids_limit``, ``output_limit``, ``copy_limit``, ``display_limit``, the tmpfs
sizes, ``nofile``) defaults to the library's safe default; the network only
for users marked ``"network": true``; images only those listed per language
(the runner's default image when none is listed); packages only those
``"packages"`` lists per language (``{"python": ["tabulate", "numpy==2.*"],
"javascript": ["lodash@4"]}``; none when it lists none); the user, the read-only
root and the working directory are fixed. A request that asks for nothing
gets the defaults, lowered to the ceiling.

Pure logic, no Docker calls, no network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockermagic.errors import InvalidArgumentError, LimitExceededError
from dockermagic.packages import normalise_requirements
from dockermagic.policy import SandboxPolicy, parse_bytes, size_text

__all__ = [
    "NUMERIC_LIMITS",
    "Ceiling",
    "GatewayConfig",
    "HubSettings",
    "Quotas",
    "SwarmSettings",
    "User",
    "hash_token",
]

#: Policy fields a request may lower (or raise up to the ceiling).
NUMERIC_LIMITS = (
    "timeout",
    "memory",
    "cpus",
    "pids_limit",
    "nofile",
    "output_limit",
    "copy_limit",
    "display_limit",
    "workdir_size",
    "tmp_size",
    "shm_size",
)
_SIZES = {
    "memory",
    "output_limit",
    "copy_limit",
    "display_limit",
    "workdir_size",
    "tmp_size",
    "shm_size",
}
#: Fields no request may change (the sandbox's shape, not its size).
_FIXED = ("user", "read_only", "workdir")
_USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_ROLES = ("student", "teacher")


def hash_token(token: str) -> str:
    """The SHA-256 of a token, in hex (what the configuration may store instead).

    Args:
        token: The token.

    Returns:
        64 hex digits.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class User:
    """Someone the gateway knows.

    Attributes:
        name: The user's name (as in the audit log).
        token_sha256: The SHA-256 of their token.
        teacher: Sees and controls everyone's sessions and runs.
        network: May ask for a network.
    """

    name: str
    token_sha256: str = field(repr=False)
    teacher: bool = False
    network: bool = False


@dataclass(frozen=True)
class HubSettings:
    """How the gateway asks a JupyterHub who a token belongs to.

    Attributes:
        api_url: The Hub's API (``http://127.0.0.1:8081/hub/api``).
        teachers: Hub users who are teachers.
        teacher_groups: Hub groups whose members are teachers.
        admins_are_teachers: Hub admins are teachers.
        network: Hub users who may ask for a network.
        cache_seconds: How long the Hub's answer about a token is kept.
    """

    api_url: str
    teachers: frozenset[str] = frozenset()
    teacher_groups: frozenset[str] = frozenset()
    admins_are_teachers: bool = True
    network: frozenset[str] = frozenset()
    cache_seconds: float = 60.0

    def user_from_model(self, model: Any) -> User | None:
        """The gateway's user for the Hub's answer to ``GET /user``.

        Args:
            model: The parsed answer (a user model: ``kind``, ``name``,
                ``admin``, ``groups``).

        Returns:
            The user, or None when the token is not a Hub user's (a service's,
            or an answer without a usable name).
        """
        if not isinstance(model, dict) or model.get("kind", "user") != "user":
            return None
        name = model.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= 255:
            return None
        groups = model.get("groups")
        in_groups = set(groups) if isinstance(groups, list) else set()
        teacher = (
            name in self.teachers
            or (self.admins_are_teachers and model.get("admin") is True)
            or bool(in_groups & self.teacher_groups)
        )
        # No token of our own: the Hub checked it, and it is never compared here.
        return User(name=name, token_sha256="", teacher=teacher, network=name in self.network)


@dataclass(frozen=True)
class SwarmSettings:
    """How a gateway in front of a Swarm runs its one-shot runs.

    Attributes:
        start_timeout: Seconds a task may take to be placed and started.
    """

    start_timeout: float = 60.0


@dataclass(frozen=True)
class Quotas:
    """What one user may use at once, and per hour.

    Attributes:
        runs_at_once: Programs (one-shot runs and session cells) running at once.
        queued: Programs waiting beyond those; one more is refused.
        sessions: Sessions open at once.
        cpu_seconds_per_hour: CPU seconds used in the last hour before new runs
            are refused (None: no limit).
    """

    runs_at_once: int = 2
    queued: int = 8
    sessions: int = 2
    cpu_seconds_per_hour: float | None = None


@dataclass(frozen=True)
class Ceiling:
    """The most a request may ask for.

    Attributes:
        limits: Numeric policy field -> its highest allowed value.
        images: Language -> images allowed (the first is the default); a
            language not listed runs the gateway's default image only.
        packages: Language -> the requirement specs a request may ask for
            (normalised); a language not listed gets none. A request for any
            of them runs in the one derived image of them all.
    """

    limits: Mapping[str, float]
    images: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    packages: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def describe(self, name: str) -> str:
        """A limit's value in words (``"512 MiB"``, ``"30 s"``).

        Args:
            name: A field of :data:`NUMERIC_LIMITS`.

        Returns:
            The words.
        """
        value = self.limits[name]
        if name in _SIZES:
            return size_text(int(value))
        if name == "timeout":
            return f"{value:g} s"
        return f"{value:g}"


@dataclass(frozen=True)
class GatewayConfig:
    """Everything ``dockermagic gateway serve`` runs by.

    Attributes:
        users: Name -> user.
        ceiling: The policy ceiling.
        quotas: Per-user quotas (the same for every student; teachers too).
        host: The address to listen on.
        port: The port (0: any free one, printed at start).
        audit_dir: Where the audit log is written.
        capacity: Programs running at once, all users together.
        idle_timeout: Seconds after which an unused session is stopped.
        pool_size: Warm containers kept per language for default requests.
        max_request_bytes: The largest request body accepted.
        tls_cert: The server certificate (PEM) for HTTPS, or None for plain HTTP.
        tls_key: Its private key (PEM).
        hub: How to ask a JupyterHub about tokens, or None (only ``users``).
        swarm: One-shot runs are Swarm tasks (the engine must be a manager),
            or None: containers on the gateway's engine.
    """

    users: Mapping[str, User]
    ceiling: Ceiling
    quotas: Quotas = Quotas()
    host: str = "127.0.0.1"
    port: int = 8765
    audit_dir: str = "gateway-audit"
    capacity: int = 4
    idle_timeout: float = 900.0
    pool_size: int = 2
    max_request_bytes: int = 0
    tls_cert: str | None = None
    tls_key: str | None = None
    hub: HubSettings | None = None
    swarm: SwarmSettings | None = None

    def __post_init__(self) -> None:
        if not self.max_request_bytes:
            # Files travel base64-encoded (4/3) inside JSON, with room for the rest.
            copy = int(self.ceiling.limits["copy_limit"])
            object.__setattr__(self, "max_request_bytes", copy * 4 // 3 + 1024**2)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GatewayConfig:
        """Read a configuration file.

        Args:
            path: The JSON file.

        Returns:
            The configuration.

        Raises:
            InvalidArgumentError: The file is missing, not JSON, or holds a bad value.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidArgumentError("gateway config", os.fspath(path), str(exc)) from exc
        return cls.from_dict(data, base=Path(path).parent)

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        base: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> GatewayConfig:
        """Build a configuration from parsed JSON.

        Args:
            data: The parsed file.
            base: The folder relative paths (``audit_dir``) are taken from.
            environ: Where a Hub service's ``JUPYTERHUB_*`` variables are read
                (default: the process's environment).

        Returns:
            The configuration.

        Raises:
            InvalidArgumentError: A missing or bad value.
        """
        if not isinstance(data, dict):
            raise InvalidArgumentError("gateway config", type(data).__name__, "expected an object")
        known = {
            "users",
            "ceiling",
            "quotas",
            "host",
            "port",
            "audit_dir",
            "capacity",
            "idle_timeout",
            "pool_size",
            "tls",
            "hub",
            "swarm",
        }
        unknown = set(data) - known
        if unknown:
            raise InvalidArgumentError("gateway config", sorted(unknown), "unknown keys")
        env = os.environ if environ is None else environ
        hub = _hub(data["hub"], env) if "hub" in data else None
        # With a Hub vouching for tokens, listed users are optional.
        users = _users(data.get("users"), optional=hub is not None)
        ceiling = _ceiling(data.get("ceiling", {}))
        quotas = _quotas(data.get("quotas", {}))
        audit = str(data.get("audit_dir", "gateway-audit"))
        if base is not None and not os.path.isabs(audit):
            audit = str(base / audit)
        tls = data.get("tls")
        cert = key = None
        if tls is not None:
            if not (
                isinstance(tls, dict)
                and set(tls) == {"cert", "key"}
                and all(isinstance(v, str) and v for v in tls.values())
            ):
                raise InvalidArgumentError("tls", tls, 'expected {"cert": FILE, "key": FILE}')
            cert, key = (
                str(base / tls[name]) if base is not None else tls[name] for name in ("cert", "key")
            )
        host, port = str(data.get("host", "127.0.0.1")), 8765
        service_url = env.get("JUPYTERHUB_SERVICE_URL", "")
        if hub is not None and service_url and "host" not in data and "port" not in data:
            # A service the Hub starts listens where the Hub's proxy sends its requests.
            parts = urllib.parse.urlsplit(service_url)
            host, port = parts.hostname or host, parts.port or port
        return cls(
            users=users,
            ceiling=ceiling,
            quotas=quotas,
            host=host,
            port=_number({"port": data.get("port", port)}, "port", 8765, integer=True, low=0),
            audit_dir=audit,
            capacity=_number(data, "capacity", 4, integer=True, low=1),
            idle_timeout=float(_number(data, "idle_timeout", 900.0, low=1)),
            pool_size=_number(data, "pool_size", 2, integer=True, low=0),
            tls_cert=cert,
            tls_key=key,
            hub=hub,
            swarm=_swarm(data.get("swarm")),
        )

    def user_for_token(self, token: str) -> User | None:
        """The user a token belongs to (compared in constant time).

        Args:
            token: The token a request carried.

        Returns:
            The user, or None.
        """
        digest = hash_token(token)
        found = None
        for user in self.users.values():
            # Every user is compared, so the time does not tell how far the search went.
            if hmac.compare_digest(digest, user.token_sha256):
                found = user
        return found

    def policy_for(self, user: User, asked: Mapping[str, Any]) -> SandboxPolicy:
        """The policy a request gets: the defaults, what it asked within the ceiling.

        Args:
            user: Who asks.
            asked: Policy fields the request set (others take the defaults).

        Returns:
            The policy.

        Raises:
            LimitExceededError: A field is over the ceiling, the network is not
                the user's to ask for, or a fixed field was changed.
            InvalidArgumentError: A field is unknown or its value is bad.
        """
        defaults = SandboxPolicy()
        fields = {f.name for f in dataclasses.fields(SandboxPolicy)}
        values: dict[str, Any] = {}
        for name in NUMERIC_LIMITS:
            values[name] = min(getattr(defaults, name), self.ceiling.limits[name])
        for name, value in asked.items():
            if name not in fields:
                raise InvalidArgumentError("limit", name, "no such limit")
            if name in _FIXED:
                if value != getattr(defaults, name):
                    raise LimitExceededError(
                        name, value, f"fixed at {getattr(defaults, name)!r} on this gateway"
                    )
                continue
            if name == "network":
                if value is True and not user.network:
                    raise LimitExceededError(
                        "network", True, f"off for {user.name} (the teacher allows it per user)"
                    )
                values["network"] = value is True
                continue
            number = _limit_value(name, value)
            if number > self.ceiling.limits[name]:
                raise LimitExceededError(name, value, self.ceiling.describe(name))
            values[name] = number
        for name in ("cpus", "timeout"):
            values[name] = float(values[name])
        for name in NUMERIC_LIMITS:
            if name not in ("cpus", "timeout"):
                values[name] = int(values[name])
        return SandboxPolicy(**values)

    def image_for(self, language: str, asked: str | None) -> str | None:
        """The image a request runs: one the ceiling lists for its language.

        Args:
            language: The canonical language.
            asked: The image the request names, or None.

        Returns:
            The image, or None for the runner's default.

        Raises:
            LimitExceededError: The image is not allowed.
        """
        allowed = self.ceiling.images.get(language, ())
        if asked is None:
            return allowed[0] if allowed else None
        if asked in allowed:
            return asked
        listed = ", ".join(allowed) if allowed else "the gateway's default image only"
        raise LimitExceededError("image", asked, listed)

    def packages_for(self, language: str, asked: Any) -> tuple[str, ...]:
        """The packages a request runs with: the teacher's set, when it asks only for those.

        A spec is allowed when it is one the ceiling lists (after
        normalisation), or a bare name the ceiling lists with a version
        (``numpy`` for ``numpy==2.*``). The answer is the language's whole
        allowed set: one derived image per language and base image, built
        once on the gateway's host with the gateway's network (never the
        sandbox's), whichever subset a request names.

        Args:
            language: The canonical language.
            asked: The request's ``requirements`` (untrusted JSON).

        Returns:
            The specs to build the image with; empty when none were asked for.

        Raises:
            InvalidArgumentError: Not a short list of package specs.
            LimitExceededError: A package the teacher did not allow (named).
        """
        if asked is None or asked == []:
            return ()
        if (
            not isinstance(asked, list)
            or len(asked) > MAX_REQUIREMENTS
            or not all(isinstance(spec, str) and 0 < len(spec) <= 200 for spec in asked)
        ):
            raise InvalidArgumentError(
                "requirements", "…", "expected a short list of package specs"
            )
        allowed = self.ceiling.packages.get(language, ())
        by_name = {_package_name(language, spec): spec for spec in allowed}
        for spec in normalise_requirements(language, asked):
            if spec in allowed or (spec == _package_name(language, spec) and spec in by_name):
                continue
            listed = (
                f"only {', '.join(allowed)} for {language}"
                if allowed
                else f"no {language} packages on this gateway (the teacher can allow some)"
            )
            raise LimitExceededError("packages", spec, listed)
        return allowed


#: Requirement specs one request may name.
MAX_REQUIREMENTS = 64

_PY_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_JS_PACKAGE = re.compile(r"(?:@[^/@\s]+/)?[^@\s]+")


def _package_name(language: str, spec: str) -> str:
    """The package a normalised spec names: ``numpy`` of ``numpy==2.*``, ``@a/b`` of ``@a/b@1``."""
    found = (_PY_PACKAGE if language == "python" else _JS_PACKAGE).match(spec)
    return found.group(0) if found else spec


def _limit_value(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise InvalidArgumentError(name, value, "expected a number")
    if name in _SIZES:
        if not isinstance(value, (int, str)) or (isinstance(value, str) and len(value) > 32):
            raise InvalidArgumentError(name, value, "expected a size")
        return float(parse_bytes(value, argument=name))
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidArgumentError(name, value, "expected a positive number")
    return float(value)


def _number(
    data: Mapping[str, Any], key: str, default: float, *, integer: bool = False, low: float = 0
) -> Any:
    value: Any = data.get(key, default)
    number = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not number or value < low:
        raise InvalidArgumentError(key, value, f"expected a number of at least {low:g}")
    return value


def _users(raw: Any, *, optional: bool = False) -> dict[str, User]:
    if optional and raw is None:
        return {}
    if not isinstance(raw, dict) or (not raw and not optional):
        raise InvalidArgumentError("users", raw, "expected an object of users")
    users: dict[str, User] = {}
    digests: set[str] = set()
    for name, entry in raw.items():
        if not _USER_RE.fullmatch(name) or not isinstance(entry, dict):
            raise InvalidArgumentError("user", name, "expected a name and an object")
        unknown = set(entry) - {"token", "token_sha256", "role", "network"}
        if unknown:
            raise InvalidArgumentError("user", name, f"unknown keys {sorted(unknown)}")
        token, digest = entry.get("token"), entry.get("token_sha256")
        if isinstance(token, str) and len(token) >= 16:
            digest = hash_token(token)
        elif not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise InvalidArgumentError(
                "user", name, "needs a token (16 characters or more) or a token_sha256"
            )
        if digest in digests:
            raise InvalidArgumentError("user", name, "shares a token with another user")
        digests.add(digest)
        role = entry.get("role", "student")
        if role not in _ROLES:
            raise InvalidArgumentError("role", role, f"expected one of {_ROLES}")
        users[name] = User(
            name=name,
            token_sha256=digest,
            teacher=role == "teacher",
            network=entry.get("network") is True,
        )
    return users


def _names(raw: Any, key: str) -> frozenset[str]:
    if not isinstance(raw, list) or not all(isinstance(n, str) and n for n in raw):
        raise InvalidArgumentError(f"hub.{key}", raw, "expected a list of names")
    return frozenset(raw)


def _hub(raw: Any, env: Mapping[str, str]) -> HubSettings:
    if not isinstance(raw, dict):
        raise InvalidArgumentError("hub", raw, "expected an object")
    keys = {"api_url", "teachers", "teacher_groups", "admins_are_teachers", "network"}
    unknown = set(raw) - keys - {"cache_seconds"}
    if unknown:
        raise InvalidArgumentError("hub", sorted(unknown), "unknown keys")
    api_url = raw.get("api_url") or env.get("JUPYTERHUB_API_URL", "")
    if not isinstance(api_url, str) or not api_url.startswith(("http://", "https://")):
        raise InvalidArgumentError(
            "hub.api_url",
            api_url,
            "expected the Hub's API URL (http(s)://.../hub/api), or JUPYTERHUB_API_URL set",
        )
    admins = raw.get("admins_are_teachers", True)
    if not isinstance(admins, bool):
        raise InvalidArgumentError("hub.admins_are_teachers", admins, "expected true or false")
    return HubSettings(
        api_url=api_url.rstrip("/"),
        teachers=_names(raw.get("teachers", []), "teachers"),
        teacher_groups=_names(raw.get("teacher_groups", []), "teacher_groups"),
        admins_are_teachers=admins,
        network=_names(raw.get("network", []), "network"),
        cache_seconds=float(_number(raw, "cache_seconds", 60.0, low=0)),
    )


def _swarm(raw: Any) -> SwarmSettings | None:
    if raw is None or raw is False:
        return None
    if raw is True:
        return SwarmSettings()
    if not isinstance(raw, dict):
        raise InvalidArgumentError("swarm", raw, 'expected true or {"start_timeout": SECONDS}')
    unknown = set(raw) - {f.name for f in dataclasses.fields(SwarmSettings)}
    if unknown:
        raise InvalidArgumentError("swarm", sorted(unknown), "unknown keys")
    key = "swarm.start_timeout"
    timeout = _number({key: raw.get("start_timeout", 60.0)}, key, 60.0, low=1)
    return SwarmSettings(start_timeout=float(timeout))


def _ceiling(raw: Any) -> Ceiling:
    if not isinstance(raw, dict):
        raise InvalidArgumentError("ceiling", raw, "expected an object")
    defaults = SandboxPolicy()
    limits = {name: float(getattr(defaults, name)) for name in NUMERIC_LIMITS}
    images: dict[str, tuple[str, ...]] = {}
    packages: dict[str, tuple[str, ...]] = {}
    for name, value in raw.items():
        if name == "packages":
            if not isinstance(value, dict):
                raise InvalidArgumentError("ceiling.packages", value, "expected an object")
            for language, listed in value.items():
                if language not in ("python", "javascript"):
                    raise InvalidArgumentError(
                        "ceiling.packages", language, "expected python or javascript"
                    )
                if not isinstance(listed, list) or not all(isinstance(i, str) for i in listed):
                    raise InvalidArgumentError(
                        "ceiling.packages", language, "expected package specs"
                    )
                packages[language] = normalise_requirements(language, listed)
            continue
        if name == "images":
            if not isinstance(value, dict):
                raise InvalidArgumentError("ceiling.images", value, "expected an object")
            for language, listed in value.items():
                if not isinstance(listed, list) or not all(
                    isinstance(i, str) and i for i in listed
                ):
                    raise InvalidArgumentError("ceiling.images", language, "expected image names")
                images[str(language)] = tuple(listed)
            continue
        if name not in limits:
            raise InvalidArgumentError("ceiling", name, "no such limit")
        limits[name] = _limit_value(name, value)
    # A ceiling the policy itself refuses (too little memory...) fails now, not per request.
    as_policy: dict[str, Any] = {
        n: (float(v) if n in ("cpus", "timeout") else int(v)) for n, v in limits.items()
    }
    SandboxPolicy(**as_policy)
    return Ceiling(limits=limits, images=images, packages=packages)


def _quotas(raw: Any) -> Quotas:
    if not isinstance(raw, dict):
        raise InvalidArgumentError("quotas", raw, "expected an object")
    unknown = set(raw) - {f.name for f in dataclasses.fields(Quotas)}
    if unknown:
        raise InvalidArgumentError("quotas", sorted(unknown), "unknown keys")
    cpu = raw.get("cpu_seconds_per_hour")
    if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or cpu <= 0):
        raise InvalidArgumentError("cpu_seconds_per_hour", cpu, "expected a positive number")
    return Quotas(
        runs_at_once=_number(raw, "runs_at_once", 2, integer=True, low=1),
        queued=_number(raw, "queued", 8, integer=True, low=0),
        sessions=_number(raw, "sessions", 2, integer=True, low=0),
        cpu_seconds_per_hour=float(cpu) if cpu is not None else None,
    )
