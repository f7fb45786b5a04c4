"""dockermagic's warm Python interpreter (runs inside a session's container).

Started as the container's main process under init. Speaks the frame protocol
described in ``dockermagic/protocol.py``: requests arrive on the original
stdin, every reply goes to the original stdout, one frame per write.

* Cells run in one persistent namespace (a module installed as ``__main__``,
  so pickling classes defined in cells works), compiled with their own file
  name, so tracebacks show the cell's own line numbers.
* ``sys.stdout``/``sys.stderr`` write frames directly, in order. File
  descriptors 1 and 2 are pipes (for subprocesses and C code): their contents
  are sent before each direct write, by a pump thread while the cell runs, and
  at the end of the cell.
* SIGINT raises KeyboardInterrupt in a running cell, never in the middle of a
  frame, and is ignored between cells. After an interrupted cell the
  processes it left behind are killed.
* ``sys.exit()`` ends the cell with its status; the interpreter stays.
* Output frames carry the id of the cell they belong to (the last cell's
  once it is done), so the host drops what a cell's threads print later.
* The interpreter ends itself when the host hangs up (its stdin closes, even
  during a busy cell) and when a cell outlives the request's ``deadline``:
  a runaway cell stops even when nobody is left to stop it.

Standard library only: it runs on whatever Python the image has (3.8+).
"""

import ast
import asyncio
import base64
import builtins
import contextlib
import fcntl
import io
import json
import linecache
import os
import select
import signal
import struct
import sys
import threading
import time
import traceback
import types

HEADER = struct.Struct(">cI")
CELL_ID = struct.Struct(">I")
CHUNK = 1024 * 1024
SERVER_FILE = os.path.abspath(__file__)
CO_COROUTINE = 0x0080


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
        # 0/1/2 become what a cell and its subprocesses should see.
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
        self.stdout = self._text(b"O", 1)
        self.stderr = self._text(b"E", 2)
        sys.stdout = sys.__stdout__ = self.stdout
        sys.stderr = sys.__stderr__ = self.stderr
        self._reset_stdin(None)
        module = types.ModuleType("__main__")
        module.__builtins__ = builtins
        sys.modules["__main__"] = module
        self.namespace = module.__dict__
        # Cells import modules from the working directory, as in a kernel.
        sys.path[0] = ""
        sys.argv = [""]
        self.loop = None
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
        tag = CELL_ID.pack(self.cell_id) if kind in (b"O", b"E") else b""
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
                os._exit(0)  # the host hung up: nobody to serve
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
                os._exit(0)  # stdin closed: the session is over
            data += chunk
        return bytes(data)

    def watch(self):
        """End the interpreter when the host hangs up or a cell passes its deadline."""
        poller = select.poll()
        # Event mask 0: poll() reports only a hang-up or an error, never data.
        poller.register(self.proto_in, 0)
        while True:
            if poller.poll(250):
                self._die(0)  # the host's attach is gone: nobody to serve
            deadline = self.deadline
            if deadline is not None and time.monotonic() > deadline:
                self._die(137)

    def _die(self, status):
        # Whatever the cells started goes too; kill(-1) spares init and us.
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
        os._exit(status)

    # -- cells -------------------------------------------------------------------------

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
                    pass  # the cell did not read it all
                finally:
                    os.close(write_end)

            if len(data) < 65536:
                feed()  # fits in the pipe: no thread needed
            else:
                threading.Thread(target=feed, daemon=True).start()
        sys.stdin = sys.__stdin__ = io.TextIOWrapper(
            io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8"
        )

    def run_cell(self, request):
        self.cell_id = request["id"]
        code = base64.b64decode(request["code"])
        path = request["path"]
        stdin = request.get("stdin")
        self._reset_stdin(None if stdin is None else base64.b64decode(stdin))
        self.namespace.update(request.get("inputs") or {})
        text = code.decode("utf-8", "replace")
        linecache.cache[path] = (len(text), None, text.splitlines(True), path)
        exit_code = 0
        self.interrupted = False
        limit = request.get("deadline")
        self.deadline = time.monotonic() + limit if limit else None
        try:
            self.running = True
            try:
                flags = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
                compiled = compile(code, path, "exec", flags, dont_inherit=True)
                result = eval(compiled, self.namespace)
                if compiled.co_flags & CO_COROUTINE:
                    # Top-level await, as in IPython: one loop for the session.
                    if self.loop is None:
                        self.loop = asyncio.new_event_loop()
                    self.loop.run_until_complete(result)
            finally:
                self.running = False
        except SystemExit as exc:
            exit_code = self._exit_status(exc)
        except BaseException as exc:
            exit_code = 130 if isinstance(exc, KeyboardInterrupt) else 1
            self._print_exception(exc)
        if os.getpid() != self.pid:
            os._exit(exit_code)  # a child forked by the cell must not serve
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
        self.deadline = None
        self._reset_stdin(None)
        done = {
            "id": request["id"],
            "exit_code": exit_code,
            "interrupted": self.interrupted,
            "tasks": _count_tasks(),
            "fds": _count("/proc/self/fd"),
        }
        self.send(b"D", json.dumps(done).encode("utf-8"))

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

    def serve(self):
        hello = {"language": "python", "version": sys.version.split()[0], "pid": self.pid}
        self.send(b"H", json.dumps(hello).encode("utf-8"))
        while True:
            kind, length = HEADER.unpack(self.read_exactly(HEADER.size))
            payload = self.read_exactly(length)
            if kind == b"R":
                self.run_cell(json.loads(payload))


def _hide_server_frames(report, seen):
    """Drop the server's own frames (they mean nothing to the cell's author)."""
    if report is None or id(report) in seen:
        return
    seen.add(id(report))
    report.stack[:] = [f for f in report.stack if f.filename != SERVER_FILE]
    _hide_server_frames(report.__cause__, seen)
    _hide_server_frames(report.__context__, seen)


def _count(path):
    try:
        return len(os.listdir(path))
    except OSError:
        return 0


def _count_tasks():
    """Processes and threads in the container (its PID namespace)."""
    return sum(_count(f"/proc/{pid}/task") for pid in os.listdir("/proc") if pid.isdigit())


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    Server().serve()
