"""What crosses the network between a gateway and its clients.

Requests are JSON objects; a run's answer is a stream of JSON lines (chunked
HTTP), one event each, ending with the result or an error::

    (header X-Dockermagic-Run: <id>, for POST /runs/<id>/cancel)
    {"t": "out", "s": "stdout", "x": "text"}
    {"t": "display", "data": {...}, "metadata": {...}}
    {"t": "beat"}                      (a quiet program is still running)
    {"t": "queued", "waiting": 3}      (it waits for its turn)
    {"t": "result", "result": {...}, "session": {...}}
    {"t": "error", "error": {"type": "SandboxError", "message": "...", "attrs": {...}}}

Bytes travel as base64 text. Everything read from the other side is checked
here (types, names, sizes) before it is used: the gateway treats every client
as hostile, and the client does not trust a reply's shape either.

Pure logic, no network, no Docker.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from typing import Any

from dockermagic import errors
from dockermagic.errors import DockermagicError, InvalidArgumentError
from dockermagic.result import RunResult
from dockermagic.transfer import CopyBudget, safe_relative

__all__ = [
    "API",
    "RUN_HEADER",
    "JobRequest",
    "decode_bytes",
    "decode_error",
    "decode_result",
    "encode_bytes",
    "encode_error",
    "encode_result",
    "parse_job",
]

#: The path prefix of every endpoint (the protocol's version).
API = "/v1"
#: The response header that names a run (its id, for cancelling it).
RUN_HEADER = "X-Dockermagic-Run"
#: Most files one request may carry, and glob patterns it may ask back.
MAX_FILES = 1000
MAX_PATTERNS = 100
_MAX_NAME = 200


def encode_bytes(data: bytes) -> str:
    """Bytes as base64 text.

    Args:
        data: The bytes.

    Returns:
        The text.
    """
    return base64.b64encode(data).decode("ascii")


def decode_bytes(text: Any, what: str) -> bytes:
    """Base64 text back to bytes, refusing anything else.

    Args:
        text: What arrived.
        what: Its name, for the error.

    Returns:
        The bytes.

    Raises:
        InvalidArgumentError: Not base64 text.
    """
    if not isinstance(text, str):
        raise InvalidArgumentError(what, type(text).__name__, "expected base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise InvalidArgumentError(what, text[:40], "expected base64 text") from exc


def encode_result(result: RunResult) -> dict[str, Any]:
    """A result as JSON data.

    Args:
        result: The result.

    Returns:
        Its fields (files base64-encoded).
    """
    data = {f.name: getattr(result, f.name) for f in dataclasses.fields(RunResult)}
    data["files"] = {name: encode_bytes(content) for name, content in result.files.items()}
    data["displays"] = list(result.displays)
    data["files_skipped"] = [list(pair) for pair in result.files_skipped]
    return data


_RESULT_TYPES: dict[str, tuple[type, ...]] = {
    "language": (str,),
    "image": (str,),
    "exit_code": (int,),
    "stdout": (str,),
    "stderr": (str,),
    "duration": (int, float),
    "timed_out": (bool,),
    "oom_killed": (bool,),
    "output_truncated": (bool,),
    "cancelled": (bool,),
    "container_name": (str,),
    "displays_dropped": (int,),
}


def decode_result(data: Any) -> RunResult:
    """A result from JSON data (as :func:`encode_result` made it).

    Args:
        data: What arrived.

    Returns:
        The result.

    Raises:
        InvalidArgumentError: The data is not a result.
    """
    if not isinstance(data, dict):
        raise InvalidArgumentError("result", type(data).__name__, "expected an object")
    fields: dict[str, Any] = {}
    for name, kinds in _RESULT_TYPES.items():
        value = data.get(name)
        if not isinstance(value, kinds):
            raise InvalidArgumentError("result", name, "missing or of the wrong type")
        fields[name] = value
    displays = data.get("displays", [])
    if not isinstance(displays, list) or not all(isinstance(d, dict) for d in displays):
        raise InvalidArgumentError("result", "displays", "expected a list of objects")
    files = data.get("files", {})
    if not isinstance(files, dict):
        raise InvalidArgumentError("result", "files", "expected an object")
    skipped = data.get("files_skipped", [])
    if not isinstance(skipped, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in skipped
    ):
        raise InvalidArgumentError("result", "files_skipped", "expected pairs of text")
    cpu, memory = data.get("cpu_seconds"), data.get("peak_memory_bytes")
    node = data.get("node")
    return RunResult(
        **fields,
        displays=tuple(displays),
        files={str(k): decode_bytes(v, "file") for k, v in files.items()},
        files_skipped=tuple((a, b) for a, b in skipped),
        cpu_seconds=float(cpu) if isinstance(cpu, (int, float)) else None,
        peak_memory_bytes=int(memory) if isinstance(memory, int) else None,
        # The Swarm node of a gateway in front of a Swarm ('' otherwise, or from older ones).
        node=node[:128] if isinstance(node, str) else "",
    )


#: Attributes an error keeps across the wire (when it has them).
_ERROR_ATTRS = (
    "argument",
    "value",
    "limit",
    "requested",
    "allowed",
    "quota",
    "container",
    "image",
    "reason",
    "package",
)


def encode_error(exc: DockermagicError) -> dict[str, Any]:
    """An error as JSON data: its class's name, its message, its plain attributes.

    Args:
        exc: The error.

    Returns:
        The data.
    """
    attrs = {}
    for name in _ERROR_ATTRS:
        value = getattr(exc, name, None)
        if isinstance(value, (str, int, float, bool)) or value is None:
            if hasattr(exc, name):
                attrs[name] = value
        else:
            attrs[name] = repr(value)
    return {"type": type(exc).__name__, "message": str(exc), "attrs": attrs}


def decode_error(data: Any, *, url: str = "") -> DockermagicError:
    """The error a gateway reported, as the same class where the client knows it.

    The message is the gateway's, word for word; attributes come back as
    they were sent. An unknown class becomes a
    :class:`~dockermagic.errors.GatewayError`.

    Args:
        data: What arrived.
        url: The gateway's address.

    Returns:
        The error, ready to raise.
    """
    if not isinstance(data, dict):
        return errors.GatewayError(f"The gateway at {url} answered with garbage", url=url)
    name, message = data.get("type"), data.get("message")
    message = message if isinstance(message, str) else "the gateway gave no reason"
    cls = getattr(errors, name, None) if isinstance(name, str) and name in errors.__all__ else None
    if not (isinstance(cls, type) and issubclass(cls, DockermagicError)):
        return errors.GatewayError(message, url=url)
    # Rebuilt without its constructor (each takes other arguments): the same
    # class, the same words, the same attributes.
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    attrs = data.get("attrs")
    if isinstance(attrs, dict):
        for key, value in attrs.items():
            if key in _ERROR_ATTRS:
                setattr(exc, key, value)
    if isinstance(exc, errors.GatewayError):
        exc.url = url
    return exc


@dataclasses.dataclass(frozen=True)
class JobRequest:
    """One run or cell as a gateway received it, checked.

    Attributes:
        source: The program's source.
        entry: Its file name.
        code: Files next to it (relative name -> content), the entry included.
        work: Files for the working directory.
        stdin: The program's input, or None.
        inputs: Notebook values (JSON), or None.
        display_last: Display a last expression's value.
        get: Glob patterns of files to bring back.
        name: What tracebacks call the code.
        first_line: The number of its first line.
        timeout: Seconds, or None for the policy's.
    """

    source: bytes
    entry: str
    code: Mapping[str, bytes]
    work: Mapping[str, bytes]
    stdin: bytes | None
    inputs: Mapping[str, Any] | None
    display_last: bool
    get: tuple[str, ...]
    name: str | None
    first_line: int
    timeout: float | None


def parse_job(data: Any, copy_limit: int) -> JobRequest:
    """Check a job that arrived from a client.

    Args:
        data: The parsed ``job`` object.
        copy_limit: The most bytes of files (source included) it may carry.

    Returns:
        The job.

    Raises:
        InvalidArgumentError: A field is missing, of the wrong type, too big,
            or a file name leaves the sandbox (including
            :class:`~dockermagic.transfer.UnsafeFileError`).
    """
    if not isinstance(data, dict):
        raise InvalidArgumentError("job", type(data).__name__, "expected an object")
    budget = CopyBudget(copy_limit)
    source = decode_bytes(data.get("source"), "source")
    entry = _name(data.get("entry"))
    budget.take(len(source), entry)

    def files(key: str) -> dict[str, bytes]:
        raw = data.get(key, {})
        if not isinstance(raw, dict) or len(raw) > MAX_FILES:
            raise InvalidArgumentError(key, "…", f"expected an object of at most {MAX_FILES} files")
        out: dict[str, bytes] = {}
        for rel, text in raw.items():
            name = _name(rel)
            content = decode_bytes(text, key)
            budget.take(len(content), name)
            out[name] = content
        return out

    code, work = files("code"), files("work")
    stdin_raw = data.get("stdin")
    stdin = decode_bytes(stdin_raw, "stdin") if stdin_raw is not None else None
    if stdin is not None and len(stdin) > copy_limit:
        raise InvalidArgumentError("stdin", len(stdin), "larger than the copy limit")
    inputs = data.get("inputs")
    if inputs is not None and not isinstance(inputs, dict):
        raise InvalidArgumentError("inputs", type(inputs).__name__, "expected an object")
    get = data.get("get", [])
    if (
        not isinstance(get, list)
        or len(get) > MAX_PATTERNS
        or not all(isinstance(p, str) and 0 < len(p) <= _MAX_NAME and "\0" not in p for p in get)
    ):
        raise InvalidArgumentError("get", "…", "expected a short list of glob patterns")
    name = data.get("name")
    if name is not None and not (isinstance(name, str) and len(name) <= _MAX_NAME):
        raise InvalidArgumentError("name", "…", "expected a short text")
    first_line = data.get("first_line", 1)
    if isinstance(first_line, bool) or not isinstance(first_line, int) or not 0 < first_line < 1e9:
        raise InvalidArgumentError("first_line", first_line, "expected a positive integer")
    timeout = data.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        raise InvalidArgumentError("timeout", timeout, "expected a number of seconds")
    return JobRequest(
        source=source,
        entry=entry,
        code=code,
        work=work,
        stdin=stdin,
        inputs=inputs,
        display_last=data.get("display_last") is True,
        get=tuple(get),
        name=name,
        first_line=first_line,
        timeout=float(timeout) if timeout is not None else None,
    )


def _name(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 4096:
        raise InvalidArgumentError("file name", "…", "expected a relative path")
    return safe_relative(value)
