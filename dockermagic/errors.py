"""The exception hierarchy of dockermagic.

Every error the package raises on purpose derives from :class:`DockermagicError`,
so a caller can catch one class. A *user program* that fails (syntax error,
exception, non-zero exit, timeout) is never an exception: it is a
:class:`~dockermagic.result.RunResult` whose ``ok`` is false. Exceptions are for
problems around the program: the engine, the image, the arguments.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "DockermagicError",
    "EngineUnavailableError",
    "GatewayError",
    "GatewayUnavailableError",
    "ImageUnavailableError",
    "InvalidArgumentError",
    "LimitExceededError",
    "LogDirectoryError",
    "PackageInstallError",
    "QuotaExceededError",
    "SandboxError",
    "SwarmError",
]


class DockermagicError(Exception):
    """Root of every error raised by dockermagic."""


class EngineUnavailableError(DockermagicError):
    """The Docker Engine cannot be reached.

    Attributes:
        base_url: Where the client looked for the engine, if known.
        hint: What to do about it, in one sentence.
    """

    def __init__(self, reason: str, *, base_url: str | None = None) -> None:
        self.base_url = base_url
        self.reason = reason
        self.hint = (
            "Start it (`sudo systemctl start docker`, or `sudo dockerd &` where there is "
            "no systemd; `make demo` does this on Debian), or point DOCKER_HOST at a "
            "running engine."
        )
        where = f" at {base_url}" if base_url else ""
        super().__init__(f"Cannot reach the Docker Engine{where}: {reason}. {self.hint}")


class ImageUnavailableError(DockermagicError):
    """An image is neither present locally nor obtainable from a registry.

    Attributes:
        image: The image reference that was asked for.
        reason: Why it could not be obtained (the registry's or engine's words).
        build_command: A command that builds a usable image offline.
    """

    def __init__(self, image: str, reason: str, *, build_command: str) -> None:
        self.image = image
        self.reason = reason
        self.build_command = build_command
        super().__init__(
            f"Image {image!r} is not available: {reason}. "
            f"Without registry access, build local images with `{build_command}`."
        )


class InvalidArgumentError(DockermagicError, ValueError):
    """An argument (a limit, a path, a language, an option) is not acceptable.

    Attributes:
        argument: The name of the offending argument.
        value: The value that was rejected.
    """

    def __init__(self, argument: str, value: object, problem: str) -> None:
        self.argument = argument
        self.value = value
        super().__init__(f"Invalid {argument} {value!r}: {problem}")


class SandboxError(DockermagicError):
    """The container could not be run or vanished in a way the user did not cause.

    Attributes:
        container: The container's name, when one had been created.
    """

    def __init__(self, message: str, *, container: str | None = None) -> None:
        self.container = container
        suffix = f" (container {container})" if container else ""
        super().__init__(f"{message}{suffix}")


class PackageInstallError(DockermagicError):
    """Packages a run asked for could not be had (nothing was left tagged).

    Attributes:
        package: The package that failed, when the package manager said which.
        reason: Why, in a few words.
    """

    def __init__(self, package: str, reason: str) -> None:
        self.package = package
        self.reason = reason
        what = f"package {package!r}" if package else "the packages"
        super().__init__(f"Could not install {what}: {reason}")


class LogDirectoryError(DockermagicError):
    """The log directory cannot be created or written.

    Attributes:
        directory: The directory that was asked for.
    """

    def __init__(self, directory: str, reason: str) -> None:
        self.directory = directory
        super().__init__(f"Cannot write logs to {directory}: {reason}")


class SwarmError(DockermagicError):
    """A script could not run as a Swarm task: no manager, a node not set up, a rejected task.

    Attributes:
        node: The node it concerns ('' when none).
    """

    def __init__(self, message: str, *, node: str = "") -> None:
        self.node = node
        super().__init__(message)


class GatewayError(DockermagicError):
    """A gateway (``DOCKERMAGIC_GATEWAY``) refused or could not serve a request.

    Attributes:
        url: The gateway's address.
    """

    def __init__(self, message: str, *, url: str = "") -> None:
        self.url = url
        super().__init__(message)


class GatewayUnavailableError(GatewayError):
    """The gateway cannot be reached, or went away during a request.

    The next call connects again; nothing is kept from the broken connection.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"Cannot reach the dockermagic gateway at {url}: {reason}. Ask whoever runs it "
            "(the teacher) whether it is up; the next call tries again.",
            url=url,
        )


class AccessDeniedError(GatewayError):
    """The gateway does not know the token, or the user may not do this."""


class LimitExceededError(GatewayError, InvalidArgumentError):
    """A request asks for more than the gateway's ceiling allows.

    Attributes:
        limit: The limit's name (``timeout``, ``memory``, ``network``, ``image``...).
        requested: What the request asked for.
        allowed: The most the gateway allows (its words).
    """

    def __init__(self, limit: str, requested: object, allowed: str, *, url: str = "") -> None:
        self.limit = limit
        self.requested = requested
        self.allowed = allowed
        self.url = url
        self.argument = limit
        self.value = requested
        Exception.__init__(
            self,
            f"The gateway's limit on {limit} is {allowed}; this request asks for {requested!r}",
        )


class QuotaExceededError(GatewayError):
    """A user's quota (runs at once, sessions, CPU time per hour) is used up for now.

    Attributes:
        quota: The quota's name.
        allowed: The quota's value.
    """

    def __init__(self, quota: str, allowed: object, detail: str = "", *, url: str = "") -> None:
        self.quota = quota
        self.allowed = allowed
        more = f" ({detail})" if detail else ""
        super().__init__(f"Quota reached: {quota} is at most {allowed}{more}", url=url)
