"""dockermagic's Python agent: runs the program of a container, or a session's cells.

Every Python container of dockermagic runs this as its main program. It
arrives on stdin (a bootstrap in the container's command reads it, so no file
has to be copied in first) and then speaks the frame protocol described in
``dockermagic/protocol.py``: requests on the original stdin, every reply on
the original stdout, one frame per write.

* Files arrive as ``F`` frames: the program's folder (``/code``, made
  read-only once the program starts) or the working directory (``/work``).
* A ``script`` request runs a program as ``python3 path`` would: a fresh
  ``__main__`` with ``__file__``, ``sys.argv`` and the script's folder on
  ``sys.path``; then non-daemon threads are joined and ``atexit`` handlers
  run, as at interpreter exit. A ``once`` request ends the agent afterwards
  with the program's exit status.
* A cell request runs in one persistent namespace (a module installed as
  ``__main__``, so pickling classes defined in cells works). Its last
  expression is displayed, as in a notebook.
* Code is compiled with its own file name, so tracebacks show the program's
  own line numbers; the agent's own frames are left out.
* ``sys.stdout``/``sys.stderr`` write frames directly, in order. File
  descriptors 1 and 2 are pipes (for subprocesses and C code): their contents
  are sent before each direct write, by a pump thread while the code runs, and
  at the end.
* ``display(obj)`` (a builtin, also ``from dockermagic_display import
  display``) sends a MIME bundle as an ``M`` frame, in order with the text;
  matplotlib draws with an inline backend whose ``plt.show()`` displays the
  figures as PNG, and figures left open at the end are displayed too.
* After the code, files of the working directory matching the request's
  ``get`` patterns come back as ``G`` frames (regular files only, no links,
  within a byte budget).
* SIGINT raises KeyboardInterrupt in a running cell, never in the middle of a
  frame, and is ignored between cells. After an interrupted cell the
  processes it left behind are killed. ``sys.exit()`` ends a cell with its
  status; the interpreter stays.
* Output frames carry the id of the request they belong to (the last one's
  once it is done), so the host drops what a cell's threads print later.
* The agent ends itself when the host hangs up (its stdin closes, even
  during a busy cell) and when a cell outlives the request's ``deadline``:
  a runaway cell stops even when nobody is left to stop it.

Standard library only: it runs on whatever Python the image has (3.8+).
"""

import ast
import atexit
import base64
import builtins
import contextlib
import fcntl
import fnmatch
import io
import json
import linecache
import os
import select
import signal
import stat
import struct
import sys
import threading
import time
import traceback
import types

HEADER = struct.Struct(">cI")
CELL_ID = struct.Struct(">I")
FILE_HEAD = struct.Struct(">BcH")  # flags, base, path length
GOT_HEAD = struct.Struct(">IBH")  # cell id, flags, path length
CHUNK = 1024 * 1024
SERVER_FILE = "<dockermagic-agent>"
CO_COROUTINE = 0x0080
OUT_NAME = "__dockermagic_out__"
FIRST, LAST = 1, 2
TAGGED = (b"O", b"E", b"M")

# -- the modules the program imports ------------------------------------------------------
# Written to a folder on sys.path (and PYTHONPATH, for subprocesses) at start.

DISPLAY_MODULE = r'''
"""display() for programs run by dockermagic, with IPython's rules.

In the process dockermagic started, a display is sent to the notebook (or the
result) as a MIME bundle; in any other process (a subprocess, a spawned
worker) its plain text is printed instead.
"""

import base64
import json
import sys

__all__ = ["display", "display_html", "display_markdown", "display_svg",
           "display_png", "display_jpeg", "display_json", "display_latex"]

#: Set by the agent in its own process: publish(data, metadata).
_publish = None

_METHODS = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_latex_", "text/latex"),
    ("_repr_json_", "application/json"),
)
_BINARY = ("image/png", "image/jpeg")


def _encode(mime, value):
    if mime in _BINARY and isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if mime == "application/json" or isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _figure_png(figure):
    import io
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _is_figure(obj):
    module = sys.modules.get("matplotlib.figure")
    return module is not None and isinstance(obj, module.Figure)


def bundle(obj):
    """The MIME bundle of an object: (data, metadata)."""
    data, metadata = {}, {}
    if _is_figure(obj):
        data["image/png"] = _encode("image/png", _figure_png(obj))
    elif not isinstance(obj, type):
        method = getattr(obj, "_repr_mimebundle_", None)
        if callable(method):
            try:
                result = method(include=None, exclude=None)
            except Exception as exc:
                print(f"display: {type(obj).__name__}._repr_mimebundle_ failed: {exc!r}",
                      file=sys.stderr)
                result = None
            if isinstance(result, tuple) and len(result) == 2:
                result, extra = result
                metadata.update(extra or {})
            for mime, value in (result or {}).items():
                data[mime] = _encode(mime, value)
        for name, mime in _METHODS:
            if mime in data:
                continue
            method = getattr(obj, name, None)
            if not callable(method):
                continue
            try:
                value = method()
            except Exception as exc:
                print(f"display: {type(obj).__name__}.{name} failed: {exc!r}", file=sys.stderr)
                continue
            if isinstance(value, tuple) and len(value) == 2:
                value, extra = value
                if extra:
                    metadata[mime] = extra
            if value is not None:
                data[mime] = _encode(mime, value)
    if "text/plain" not in data:
        try:
            data["text/plain"] = repr(obj)
        except Exception as exc:
            data["text/plain"] = f"<{type(obj).__name__} (repr failed: {exc!r})>"
    return data, metadata


def publish(data, metadata=None):
    """Send one MIME bundle (mime type -> str; binary types base64)."""
    data = {str(k): v for k, v in data.items()}
    if _publish is not None:
        _publish(data, metadata or {})
    else:
        text = data.get("text/plain")
        print(text if text is not None else "<display>")


def display(*objs, raw=False):
    """Display objects as the notebook would (IPython's _repr_*_ rules)."""
    for obj in objs:
        if raw:
            publish(obj)
        else:
            publish(*bundle(obj))


def _raw(mime, value, plain):
    publish({mime: _encode(mime, value), "text/plain": plain})


def display_html(html):
    _raw("text/html", html, "<IPython.core.display.HTML object>")


def display_markdown(text):
    _raw("text/markdown", text, text)


def display_svg(svg):
    _raw("image/svg+xml", svg, "<IPython.core.display.SVG object>")


def display_png(data):
    _raw("image/png", data, "<IPython.core.display.Image object>")


def display_jpeg(data):
    _raw("image/jpeg", data, "<IPython.core.display.Image object>")


def display_latex(text):
    _raw("text/latex", text, text)


def display_json(value):
    publish({"application/json": value, "text/plain": json.dumps(value, indent=1)})


def show_figures():
    """Display every open matplotlib figure as PNG, then close them."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    for number in pyplot.get_fignums():
        display(pyplot.figure(number))
    pyplot.close("all")
'''

INLINE_BACKEND = r'''
"""A matplotlib backend like the notebook's inline one: plt.show() displays PNGs."""

from matplotlib.backend_bases import FigureManagerBase as FigureManager
from matplotlib.backends.backend_agg import FigureCanvasAgg as FigureCanvas


def show(*args, **kwargs):
    from dockermagic_display import show_figures

    show_figures()
'''


class FrameWriter(io.RawIOBase):
    """A binary stream whose writes become frames of one kind."""

    def __init__(self, server, kind, fd):
        super().__init__()
        self.server = server
        self.kind = kind
        self.target_fd = fd

    def writable(self):
        return True

    def fileno(self):
        return self.target_fd

    def isatty(self):
        return False

    def write(self, data):
        data = bytes(data)
        if os.getpid() != self.server.pid:
            # A forked child (multiprocessing): its writes go through the
            # pipes the parent pumps, so frames from two processes never mix.
            os.write(self.target_fd, data)
            return len(data)
        self.server.output(self.kind, data)
        return len(data)


class Server:
    def __init__(self):
        self.pid = os.getpid()
        self.main_ident = threading.get_ident()
        # The protocol keeps the original descriptors (non-inheritable dups);
        # 0/1/2 become what the program and its subprocesses should see.
        self.proto_in = os.dup(0)
        self.proto_out = os.dup(1)
        self.devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(self.devnull, 0)
        self.pipes = []
        for fd, kind in ((1, b"O"), (2, b"E")):
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            flags = fcntl.fcntl(read_end, fcntl.F_GETFL)
            fcntl.fcntl(read_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
            self.pipes.append((read_end, kind))
        self.poller = select.poll()
        for fd, _ in self.pipes:
            self.poller.register(fd, select.POLLIN)
        self.lock = threading.Lock()
        self.main_writing = False
        self.pending_interrupt = False
        self.running = False
        self.interrupted = False
        # Output is gathered into few frames: a print() is two writes, and a
        # frame per write costs more than the bytes (see output()).
        self.pending = []
        self.pending_kind = b"O"
        self.pending_size = 0
        self.last_pipe_check = 0.0
        self.wake = threading.Event()
        self.cell_id = 0
        self.deadline = None  # monotonic time at which a running cell ends us
        self.code_dir = os.environ.get("DOCKERMAGIC_CODE_DIR", "/code")
        self.writing = {}  # path -> fd of files arriving in F frames
        self.new_dirs = set()  # folders made for code files since the last seal
        self.stdout = self._text(b"O", 1)
        self.stderr = self._text(b"E", 2)
        sys.stdout = sys.__stdout__ = self.stdout
        sys.stderr = sys.__stderr__ = self.stderr
        self._reset_stdin(None)
        self.namespace = self._new_main(None).__dict__
        # Cells import modules from the working directory, as in a kernel.
        sys.path[0] = ""
        sys.argv = [""]
        self.loop = None
        self._install_display()
        self._real_exit = os._exit
        os._exit = self._exit
        os.register_at_fork(after_in_child=self._forked)
        signal.signal(signal.SIGINT, self.on_sigint)
        threading.Thread(target=self.pump, name="dockermagic-pump", daemon=True).start()
        threading.Thread(target=self.flusher, name="dockermagic-flush", daemon=True).start()
        threading.Thread(target=self.watch, name="dockermagic-watch", daemon=True).start()

    def _text(self, kind, fd):
        return io.TextIOWrapper(
            FrameWriter(self, kind, fd),
            encoding="utf-8",
            errors="backslashreplace",
            write_through=True,
        )

    def _new_main(self, path):
        module = types.ModuleType("__main__")
        module.__builtins__ = builtins
        if path is not None:
            module.__file__ = path
            module.__cached__ = None
        sys.modules["__main__"] = module
        return module

    def _install_display(self):
        # Real files, so that subprocesses (PYTHONPATH) and matplotlib
        # (MPLBACKEND) find them too; in the code folder, so that /tmp and
        # the working directory are the program's alone.
        folder = os.path.join(self.code_dir, ".dockermagic")
        os.makedirs(folder, exist_ok=True)
        for name, source in (
            ("dockermagic_display.py", DISPLAY_MODULE),
            ("dockermagic_inline.py", INLINE_BACKEND),
        ):
            with open(os.path.join(folder, name), "w", encoding="utf-8") as stream:
                stream.write(source)
        sys.path.append(folder)
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        os.environ["PYTHONPATH"] = os.pathsep.join([*paths, folder])
        os.environ.setdefault("MPLBACKEND", "module://dockermagic_inline")
        import dockermagic_display

        dockermagic_display._publish = self.publish
        self.display_module = dockermagic_display
        for name in dockermagic_display.__all__:
            setattr(builtins, name, getattr(dockermagic_display, name))

    def _forked(self):
        # A child forked by the program: the parent's gathered output is the
        # parent's to send; the child writes through the pumped pipes.
        self.pending = []
        self.pending_size = 0

    def _exit(self, status):
        # os._exit() right after a print must not lose the gathered output.
        if os.getpid() == self.pid:
            with contextlib.suppress(Exception), self.lock:
                self._flush_pending()
                self._drain_pipes()
        self._real_exit(status)

    # -- frames ------------------------------------------------------------------------

    def on_sigint(self, signum, frame):
        if not self.running:
            return  # between cells: a late interrupt must not end the server
        self.interrupted = True
        if self.main_writing:
            self.pending_interrupt = True  # raised once the frame is complete
            return
        raise KeyboardInterrupt

    def send(self, kind, payload):
        """Write a frame now (after the output gathered so far)."""
        self._locked(self._send_now, kind, payload)

    def output(self, kind, data):
        """Gather a chunk of output; the flusher or a limit sends it soon."""
        self._locked(self._gather, kind, data)

    def publish(self, data, metadata):
        """Send a display (MIME bundle), in order with the text output."""
        if os.getpid() != self.pid:
            text = data.get("text/plain", "<display>")
            os.write(1, (str(text) + "\n").encode("utf-8", "backslashreplace"))
            return
        body = {"data": data, "metadata": metadata}
        self.send(b"M", json.dumps(body, ensure_ascii=False, default=str).encode("utf-8"))

    def _locked(self, action, kind, payload):
        main = threading.get_ident() == self.main_ident
        if main:
            self.main_writing = True
        try:
            with self.lock:
                action(kind, payload)
        finally:
            if main:
                self.main_writing = False
        if main and self.pending_interrupt:
            self.pending_interrupt = False
            raise KeyboardInterrupt

    def _send_now(self, kind, payload):
        self._flush_pending()
        self._drain_pipes()
        self._frames(kind, payload)

    def _gather(self, kind, data):
        now = time.monotonic()
        if now - self.last_pipe_check > 0.001:
            # What subprocesses wrote to fds 1/2 before this goes first. Checked
            # at most every millisecond: starting a subprocess takes longer.
            self.last_pipe_check = now
            if self._pipes_ready():
                self._flush_pending()
                self._drain_pipes()
        if self.pending and self.pending_kind != kind:
            self._flush_pending()
        self.pending.append(data)
        self.pending_kind = kind
        self.pending_size += len(data)
        if self.pending_size >= 65536:
            self._flush_pending()
        elif len(self.pending) == 1:
            self.wake.set()

    def _flush_pending(self):
        if self.pending:
            data = b"".join(self.pending)
            self.pending = []
            self.pending_size = 0
            self._frames(self.pending_kind, data)

    def _pipes_ready(self):
        return bool(self.poller.poll(0))

    def flusher(self):
        while True:
            self.wake.wait()
            # Let a burst of writes gather; a reader sees them 2 ms later.
            time.sleep(0.002)
            with self.lock:
                self.wake.clear()
                self._flush_pending()

    def _frames(self, kind, payload):
        view = memoryview(payload)
        tag = CELL_ID.pack(self.cell_id) if kind in TAGGED else b""
        while True:
            part = view[:CHUNK]
            self._write_all(HEADER.pack(kind, len(tag) + len(part)) + tag + part)
            view = view[CHUNK:]
            if not view:
                return

    def _write_all(self, data):
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.proto_out, view)
            except BrokenPipeError:
                self._real_exit(0)  # the host hung up: nobody to serve
            view = view[written:]

    def _drain_pipes(self):
        for fd, kind in self.pipes:
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not data:
                    break
                self._frames(kind, data)

    def pump(self):
        fds = [fd for fd, _ in self.pipes]
        while True:
            try:
                select.select(fds, [], [])
            except InterruptedError:
                continue
            with self.lock:
                self._flush_pending()
                self._drain_pipes()

    def read_exactly(self, size):
        data = bytearray()
        while len(data) < size:
            chunk = os.read(self.proto_in, min(size - len(data), CHUNK))
            if not chunk:
                self._real_exit(0)  # stdin closed: the session is over
            data += chunk
        return bytes(data)

    def watch(self):
        """End the interpreter when the host hangs up or a cell passes its deadline."""
        poller = select.poll()
        # Event mask 0: poll() reports only a hang-up or an error, never data.
        poller.register(self.proto_in, 0)
        while True:
            if poller.poll(250):
                # The host hung up (it stopped the run, or it died): end as a
                # killed program does, with everything it started.
                self._die(137)
            deadline = self.deadline
            if deadline is not None and time.monotonic() > deadline:
                self._die(137)

    def _reap(self, seconds=1.0):
        # The cell's own children were just killed; left unreaped they stay
        # zombies of this process (each still counts against the pids
        # limit, and Podman lists them as running). Init reaps the rest.
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                time.sleep(0.01)

    def _die(self, status):
        # Whatever the program started goes too; kill(-1) spares init and us.
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
        self._real_exit(status)

    # -- files -------------------------------------------------------------------------

    def _base(self, base):
        return self.code_dir if base == b"c" else os.getcwd()

    def receive_file(self, payload):
        flags, base, length = FILE_HEAD.unpack_from(payload)
        start = FILE_HEAD.size
        rel = payload[start : start + length].decode("utf-8", "surrogateescape")
        data = payload[start + length :]
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if not parts or ".." in parts or rel.startswith("/") or "\0" in rel:
            return  # the host checks names; never write outside the folder
        root = self._base(base)
        path = os.path.join(root, *parts)
        if flags & FIRST:
            folder = os.path.dirname(path)
            if base == b"c":
                while folder.startswith(root) and folder != root and not os.path.isdir(folder):
                    self.new_dirs.add(folder)
                    folder = os.path.dirname(folder)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            self.writing[path] = (fd, base)
        fd, base = self.writing[path]
        _write_all(fd, data)
        if flags & LAST:
            os.close(fd)
            del self.writing[path]
            if base == b"c":
                os.chmod(path, 0o444)

    def _seal_code(self):
        """The program's folder becomes read-only before it runs."""
        # Only what arrived since the last request: a session's earlier
        # folders are sealed already, and walking them all would grow per cell.
        for folder in self.new_dirs:
            with contextlib.suppress(OSError):
                os.chmod(folder, 0o555)
        self.new_dirs.clear()
        with contextlib.suppress(OSError):
            os.chmod(self.code_dir, 0o555)

    def _unseal_code(self):
        with contextlib.suppress(OSError):
            os.chmod(self.code_dir, 0o755)

    def send_files(self, spec):
        """Files of the working directory matching the patterns, as G frames."""
        patterns = spec.get("patterns") or []
        budget = int(spec.get("limit") or 0)
        got, skipped = [], []
        root = os.getcwd()
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, root)
                if not any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns):
                    continue
                try:
                    info = os.lstat(path)
                except OSError as exc:
                    skipped.append([rel, exc.strerror or str(exc)])
                    continue
                if not stat.S_ISREG(info.st_mode):
                    skipped.append([rel, "not a regular file"])
                    continue
                if info.st_size > budget:
                    skipped.append([rel, f"{info.st_size} bytes would pass the limit"])
                    continue
                try:
                    self._send_file(rel, path)
                except OSError as exc:
                    skipped.append([rel, exc.strerror or str(exc)])
                    continue
                budget -= info.st_size
                got.append(rel)
        return got, skipped

    def _send_file(self, rel, path):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            name = rel.encode("utf-8", "surrogateescape")
            flags = FIRST
            while True:
                chunk = os.read(fd, CHUNK - 64)
                last = len(chunk) < CHUNK - 64
                head = GOT_HEAD.pack(self.cell_id, flags | (LAST if last else 0), len(name))
                self.send(b"G", head + name + chunk)
                flags = 0
                if last:
                    return
        finally:
            os.close(fd)

    # -- running code ------------------------------------------------------------------

    def _reset_stdin(self, data):
        if data is None:
            os.dup2(self.devnull, 0)
        else:
            read_end, write_end = os.pipe()
            os.dup2(read_end, 0)
            os.close(read_end)

            def feed():
                try:
                    _write_all(write_end, data)
                except OSError:
                    pass  # the program did not read it all
                finally:
                    os.close(write_end)

            if len(data) < 65536:
                feed()  # fits in the pipe: no thread needed
            else:
                threading.Thread(target=feed, daemon=True).start()
        sys.stdin = sys.__stdin__ = io.TextIOWrapper(
            io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8"
        )

    def _compile(self, code, path, display_last):
        flags = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
        if not display_last:
            return compile(code, path, "exec", flags, dont_inherit=True)
        tree = compile(code, path, "exec", flags | ast.PyCF_ONLY_AST, dont_inherit=True)
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            # The last expression's value is shown, as a notebook cell shows it.
            last = tree.body[-1]
            target = ast.Name(id=OUT_NAME, ctx=ast.Store())
            tree.body[-1] = ast.copy_location(ast.Assign(targets=[target], value=last.value), last)
            ast.fix_missing_locations(tree)
        return compile(tree, path, "exec", flags, dont_inherit=True)

    def run(self, request):
        self.cell_id = request["id"]
        code = base64.b64decode(request["code"])
        path = request["path"]
        # A notebook cell's traceback names the cell and counts lines as the
        # editor does (its first line is the %% magic line).
        name = request.get("name") or path
        first_line = max(int(request.get("first_line") or 1), 1)
        code = b"\n" * (first_line - 1) + code
        script = bool(request.get("script"))
        stdin = request.get("stdin")
        self.stdin_given = stdin is not None
        self._reset_stdin(None if stdin is None else base64.b64decode(stdin))
        self._seal_code()
        text = code.decode("utf-8", "replace")
        linecache.cache[name] = (len(text), None, text.splitlines(True), name)
        if script:
            namespace = self._new_main(path).__dict__
            sys.argv = [path, *(request.get("argv") or [])]
            sys.path[0] = os.path.dirname(path)
        else:
            namespace = self.namespace
        namespace.update(request.get("inputs") or {})
        exit_code = 0
        self.interrupted = False
        limit = request.get("deadline")
        self.deadline = time.monotonic() + limit if limit else None
        cpu_before = _cpu()
        try:
            self.running = True
            try:
                compiled = self._compile(code, name, bool(request.get("display_last")))
                result = eval(compiled, namespace)
                if compiled.co_flags & CO_COROUTINE:
                    # Top-level await, as in IPython: one loop for the session.
                    if self.loop is None:
                        import asyncio

                        self.loop = asyncio.new_event_loop()
                    self.loop.run_until_complete(result)
                value = namespace.pop(OUT_NAME, None)
                if value is not None:
                    self.display_module.display(value)
                # Before the atexit handlers: matplotlib's closes every figure.
                self.display_module.show_figures()
                if script:
                    self._end_of_script()
            finally:
                self.running = False
        except SystemExit as exc:
            exit_code = self._exit_status(exc)
            if script:
                exit_code = self._after_exit(exit_code)
        except BaseException as exc:
            exit_code = 130 if isinstance(exc, KeyboardInterrupt) else 1
            self._print_exception(exc)
            if script:
                exit_code = self._after_exit(exit_code)
        if os.getpid() != self.pid:
            self._real_exit(exit_code)  # a child forked by the program must not serve
        self._finish(request, exit_code, cpu_before)

    def _end_of_script(self):
        # What the interpreter does at exit: wait for non-daemon threads, then
        # run the atexit handlers (their output is part of the program's).
        main = threading.main_thread()
        for thread in threading.enumerate():
            if thread is not main and not thread.daemon:
                thread.join()
        atexit._run_exitfuncs()

    def _after_exit(self, exit_code):
        try:
            self._end_of_script()
        except SystemExit as exc:
            return self._exit_status(exc)
        except BaseException as exc:
            self._print_exception(exc)
        return exit_code

    def _finish(self, request, exit_code, cpu_before):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        if self.interrupted:
            # Whatever the cell started (subprocesses, pool workers) goes
            # with it. kill(-1) spares init (PID 1) and this process.
            with contextlib.suppress(OSError):
                os.kill(-1, signal.SIGKILL)
            self._reap()
        self.deadline = None
        self._reset_stdin(None)
        got, skipped = [], []
        if request.get("get"):
            got, skipped = self.send_files(request["get"])
        done = {
            "id": request["id"],
            "exit_code": exit_code,
            "interrupted": self.interrupted,
            "tasks": _count_tasks(),
            "fds": _count("/proc/self/fd"),
            "cpu": round(_cpu() - cpu_before, 6),
            "maxrss": _maxrss(),
            "got": got,
            "skipped": skipped,
        }
        self.send(b"D", json.dumps(done).encode("utf-8"))
        if request.get("once"):
            self._real_exit(exit_code)
        self._unseal_code()

    def _exit_status(self, exc):
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code & 0xFF if code >= 0 else code % 256
        self.stderr.write(f"{code}\n")
        return 1

    def _print_exception(self, exc):
        try:
            report = traceback.TracebackException(type(exc), exc, exc.__traceback__)
            _hide_server_frames(report, set())
            self.stderr.write("".join(report.format()))
        except Exception:
            self.stderr.write(f"{type(exc).__name__}: (unprintable exception)\n")
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            self.stderr.write(_missing_module_hint(exc.name.split(".")[0]))
        elif isinstance(exc, EOFError) and not getattr(self, "stdin_given", True):
            self.stderr.write(
                "[dockermagic] the program read its standard input, and it had none: "
                "a cell gets no interactive input; pass the input with --stdin VAR "
                "(stdin= from Python).\n"
            )

    def serve(self):
        hello = {"language": "python", "version": sys.version.split()[0], "pid": self.pid}
        self.send(b"H", json.dumps(hello).encode("utf-8"))
        while True:
            kind, length = HEADER.unpack(self.read_exactly(HEADER.size))
            payload = self.read_exactly(length)
            if kind == b"F":
                self.receive_file(payload)
            elif kind == b"R":
                self.run(json.loads(payload))


def _hide_server_frames(report, seen):
    """Drop the agent's own frames (they mean nothing to the program's author)."""
    if report is None or id(report) in seen:
        return
    seen.add(id(report))
    report.stack[:] = [f for f in report.stack if f.filename != SERVER_FILE]
    _hide_server_frames(report.__cause__, seen)
    _hide_server_frames(report.__context__, seen)


def _missing_module_hint(name):
    image = os.environ.get("DOCKERMAGIC_IMAGE", "this image")
    return (
        f"[dockermagic] the package {name!r} is not installed in {image}. "
        "dockermagic/python:offline (`dockermagic images --offline`) has numpy, pandas "
        "and matplotlib; for other packages use an image that has them (--image).\n"
    )


def _count(path):
    try:
        return len(os.listdir(path))
    except OSError:
        return 0


def _count_tasks():
    """Processes and threads in the container (its PID namespace)."""
    return sum(_count(f"/proc/{pid}/task") for pid in os.listdir("/proc") if pid.isdigit())


def _cpu():
    """CPU seconds (user + system) of this process and its waited-for children."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _maxrss():
    """The largest resident memory of this process or a waited-for child, in bytes."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * 1024


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__dockermagic__":
    Server().serve()
