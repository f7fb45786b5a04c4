// dockermagic's warm JavaScript interpreter (runs inside a session's container).
//
// Started as the container's main process under init by a shell line that
// hands it the protocol on fd 3 (requests, the original stdin) and fd 4
// (replies, the original stdout), and points fds 1 and 2 at two FIFOs whose
// paths are argv[2] and argv[3], so that child processes cannot corrupt the
// protocol (see dockermagic/protocol.py for the frames).
//
// * Cells run as scripts in this context: top-level const/let/class/function
//   persist across cells; a cell with top-level await is rewritten by Node's
//   own REPL transform (declarations hoisted, lines kept).
// * A cell is done when its code (and awaited promise) finished and the work
//   it scheduled (timers, I/O) has drained, as a script would end.
// * process.stdout/stderr and console write frames directly, in order.
// * SIGINT breaks a running script (breakOnSigint) or ends a cell that waits
//   for async work; it is ignored between cells. process.exit() ends the cell
//   with its status; the interpreter stays.
// * Output frames carry the id of the cell they belong to (the last cell's
//   once it is done), so the host drops what a cell's timers print later.
// * The interpreter ends when its stdin closes (the host hung up) and, from a
//   watchdog thread, when a cell outlives the request's deadline: a runaway
//   cell stops even when nobody is left to stop it.
"use strict";

const fs = require("fs");
const net = require("net");
const path = require("path");
const util = require("util");
const vm = require("vm");
const Module = require("module");
const { Worker } = require("worker_threads");
const { Readable, Writable } = require("stream");

const PROTO_IN = 3;
const PROTO_OUT = 4;
const CHUNK = 1024 * 1024;
const SERVER_FILE = __filename;

let processTopLevelAwait = null;
try {
  // Needs --expose-internals; without it, cells with top-level await are
  // wrapped in a plain async function (their declarations stay local).
  ({ processTopLevelAwait } = require("internal/repl/await"));
} catch (_) {
  processTopLevelAwait = null;
}

const real = {
  exit: process.exit.bind(process),
  setTimeout,
  setInterval,
  setImmediate,
  clearTimeout,
  clearInterval,
  clearImmediate,
};

// -- frames ---------------------------------------------------------------------------

const pipes = [];
for (const [index, kind] of [
  [2, "O"],
  [3, "E"],
]) {
  const fifo = process.argv[index];
  const fd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  fs.unlinkSync(fifo);
  pipes.push([fd, kind]);
}
try {
  fs.rmdirSync(path.dirname(process.argv[2]));
} catch (_) {
  // not ours to worry about
}
const pipeBuffer = Buffer.alloc(65536);

function sleepMs(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function writeAll(buffer) {
  let offset = 0;
  while (offset < buffer.length) {
    try {
      offset += fs.writeSync(PROTO_OUT, buffer, offset, buffer.length - offset);
    } catch (err) {
      if (err.code === "EAGAIN") {
        sleepMs(1);
      } else if (err.code === "EPIPE") {
        real.exit(0); // the host hung up: nobody to serve
      } else {
        throw err;
      }
    }
  }
}

let cellId = 0; // the running cell's id, or the last one's

function frames(kind, payload) {
  const tagged = kind === "O" || kind === "E";
  let start = 0;
  do {
    const part = payload.subarray(start, start + CHUNK);
    const header = Buffer.alloc(tagged ? 9 : 5);
    header.write(kind, 0, "latin1");
    header.writeUInt32BE(part.length + (tagged ? 4 : 0), 1);
    if (tagged) header.writeUInt32BE(cellId, 5);
    writeAll(Buffer.concat([header, part]));
    start += CHUNK;
  } while (start < payload.length);
}

// -- the deadline keeper ------------------------------------------------------------
// A worker thread runs while a cell's synchronous code holds the main thread.

const deadline = new Float64Array(new SharedArrayBuffer(8)); // ms since epoch, 0: none
const keeper = new Worker(
  `
  const { workerData } = require("worker_threads");
  const deadline = new Float64Array(workerData);
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    Atomics.wait(nap, 0, 0, 250);
    if (deadline[0] > 0 && Date.now() > deadline[0]) {
      try { process.kill(-1, "SIGKILL"); } catch (_) {}
      process.kill(process.pid, "SIGKILL");
    }
  }
  `,
  { eval: true, workerData: deadline.buffer, stdout: true, stderr: true },
);
keeper.unref();

function drainPipes() {
  for (const [fd, kind] of pipes) {
    for (;;) {
      let n = 0;
      try {
        n = fs.readSync(fd, pipeBuffer, 0, pipeBuffer.length, null);
      } catch (err) {
        break; // EAGAIN: empty
      }
      if (n <= 0) break;
      frames(kind, Buffer.from(pipeBuffer.subarray(0, n)));
    }
  }
}

let lastDrain = 0;

function send(kind, payload) {
  // Output of child processes (fds 1/2) written before this goes first.
  // Checked at most every 5 ms: a failed non-blocking read throws, which
  // costs more than a frame.
  const now = performance.now();
  if (now - lastDrain > 5) {
    lastDrain = now;
    drainPipes();
  }
  frames(kind, payload);
}

function outputStream(kind, fd) {
  // A Writable for pipe() and listeners, but write() itself is a plain
  // synchronous function: an interrupt thrown inside Writable's machinery
  // would leave the stream stuck "writing" for every later cell.
  const stream = new Writable({ write: (_chunk, _encoding, callback) => callback() });
  stream.write = (chunk, encoding, callback) => {
    if (typeof encoding === "function") callback = encoding;
    const data = typeof chunk === "string" ? Buffer.from(chunk, typeof encoding === "string" ? encoding : "utf8") : Buffer.from(chunk);
    send(kind, data);
    if (typeof callback === "function") process.nextTick(callback);
    return true;
  };
  stream.fd = fd;
  stream.isTTY = false;
  stream._isStdio = true;
  return stream;
}

const stdout = outputStream("O", 1);
const stderr = outputStream("E", 2);
let stdin = emptyStdin();
Object.defineProperty(process, "stdout", { configurable: true, enumerable: true, get: () => stdout });
Object.defineProperty(process, "stderr", { configurable: true, enumerable: true, get: () => stderr });
Object.defineProperty(process, "stdin", { configurable: true, enumerable: true, get: () => stdin });

function emptyStdin() {
  return Readable.from([]);
}

// -- cells ----------------------------------------------------------------------------

class CellExit extends Error {
  constructor(code) {
    super(`process.exit(${code})`);
    this.exitCode = code;
  }
}

process.exit = function exit(code) {
  throw new CellExit(code === undefined ? (process.exitCode ?? 0) : code);
};

let current = null; // the running cell: {id, timers, finished, interrupted}

function track(kind, create, clear) {
  const wrapped = function (...args) {
    const handle = create(...args);
    if (current !== null) current.timers.push([clear, handle]);
    return handle;
  };
  if (create[util.promisify.custom]) wrapped[util.promisify.custom] = create[util.promisify.custom];
  globalThis[kind] = wrapped;
}
track("setTimeout", real.setTimeout, real.clearTimeout);
track("setInterval", real.setInterval, real.clearInterval);
track("setImmediate", real.setImmediate, real.clearImmediate);

function describe(err) {
  if (err && typeof err.stack === "string") {
    // Cut the stack where the server's own frames begin.
    const lines = err.stack.split("\n");
    const cut = lines.findIndex(
      (line) => /^\s+at /.test(line) && (line.includes(SERVER_FILE) || line.includes("node:vm")),
    );
    return (cut === -1 ? lines : lines.slice(0, cut)).join("\n");
  }
  return "Uncaught " + util.inspect(err);
}

function exitStatus(code) {
  const number = Number(code);
  return Number.isInteger(number) ? number & 0xff : 1;
}

let baseline = 0;

function finish(cell, exitCode) {
  if (cell.finished) return;
  cell.finished = true;
  if (cell.interrupted) {
    for (const [clear, handle] of cell.timers) clear(handle);
    try {
      // Whatever the cell started goes with it; kill(-1) spares init and us.
      process.kill(-1, "SIGKILL");
    } catch (_) {
      // nothing left
    }
  }
  cell.timers = [];
  current = null;
  deadline[0] = 0;
  stdin = emptyStdin();
  process.exitCode = undefined;
  drainPipes();
  lastDrain = performance.now();
  const done = {
    id: cell.id,
    exit_code: exitCode,
    interrupted: cell.interrupted,
    tasks: countTasks(),
    fds: count("/proc/self/fd"),
  };
  send("D", Buffer.from(JSON.stringify(done)));
  cell.resolve();
  if (cell.interrupted) {
    // Handles the cell left open (and that we could not clear) are its own.
    real.setImmediate(() => {
      baseline = Math.max(baseline, process.getActiveResourcesInfo().length);
    });
  }
}

function count(dir) {
  try {
    return fs.readdirSync(dir).length;
  } catch (_) {
    return 0;
  }
}

function countTasks() {
  // Processes and threads in the container (its PID namespace).
  let tasks = 0;
  for (const pid of fs.readdirSync("/proc")) {
    if (/^[0-9]+$/.test(pid)) tasks += count(`/proc/${pid}/task`);
  }
  return tasks;
}

function fail(cell, err) {
  if (cell.finished) return;
  if (err instanceof CellExit) {
    finish(cell, exitStatus(err.exitCode));
    return;
  }
  const interrupted = err && err.code === "ERR_SCRIPT_EXECUTION_INTERRUPTED";
  if (interrupted) cell.interrupted = true;
  send("E", Buffer.from(describe(err) + "\n"));
  finish(cell, interrupted ? 130 : 1);
}

function busy() {
  return process.getActiveResourcesInfo().length > baseline;
}

function settled(cell) {
  // Done once the work the cell scheduled has run: poll between turns of
  // the event loop (setImmediate lets pending I/O callbacks run first).
  return new Promise((resolve) => {
    const check = () => {
      if (cell.finished || !busy()) resolve();
      else real.setTimeout(() => real.setImmediate(check), 2);
    };
    real.setImmediate(check);
  });
}

function runCell(request) {
  const cell = { id: request.id, timers: [], finished: false, interrupted: false };
  cell.whenFinished = new Promise((resolve) => {
    cell.resolve = resolve;
  });
  current = cell;
  cellId = request.id;
  deadline[0] = request.deadline ? Date.now() + request.deadline * 1000 : 0;
  const file = request.path;
  const source = Buffer.from(request.code, "base64").toString("utf8");
  stdin = request.stdin === null ? emptyStdin() : Readable.from([Buffer.from(request.stdin, "base64")]);
  for (const [name, value] of Object.entries(request.inputs || {})) {
    // Constants, as for a cold run; configurable so a later cell can pass them again.
    Object.defineProperty(globalThis, name, { value, writable: false, enumerable: true, configurable: true });
  }
  globalThis.require = Module.createRequire(file);
  globalThis.__filename = file;
  globalThis.__dirname = path.dirname(file);
  process.exitCode = undefined;
  execute(cell, source, file);
  return cell.whenFinished;
}

async function execute(cell, source, file) {
  try {
    let code = source;
    let wrapped = false;
    if (source.includes("await")) {
      let transformed = null;
      try {
        transformed = processTopLevelAwait ? processTopLevelAwait(source) : null;
      } catch (_) {
        transformed = null;
      }
      if (transformed !== null) {
        code = transformed;
        wrapped = true;
      } else if (processTopLevelAwait === null) {
        code = `(async () => { ${source}\n})()`;
        wrapped = true;
      }
    }
    let script;
    try {
      script = new vm.Script(code, { filename: file });
    } catch (err) {
      if (!wrapped) throw err;
      script = new vm.Script(source, { filename: file }); // report the user's own error
    }
    const value = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
    if (wrapped) await value;
    await settled(cell);
    finish(cell, exitStatus(process.exitCode ?? 0));
  } catch (err) {
    fail(cell, err);
  }
}

process.on("SIGINT", () => {
  const cell = current;
  if (cell === null || cell.finished) return; // between cells: ignore
  cell.interrupted = true;
  send("E", Buffer.from("KeyboardInterrupt: the cell was interrupted\n"));
  finish(cell, 130);
});

process.on("uncaughtException", (err) => {
  const cell = current;
  if (cell !== null && !cell.finished) {
    fail(cell, err);
  } else if (!(err instanceof CellExit)) {
    send("E", Buffer.from(describe(err) + "\n"));
  }
});

process.on("unhandledRejection", (reason) => {
  const cell = current;
  if (cell !== null && !cell.finished) fail(cell, reason);
  else send("E", Buffer.from(describe(reason) + "\n"));
});

// -- requests -------------------------------------------------------------------------

let inbox = [];
let inboxSize = 0;
const queue = [];
let serving = false;

async function serveQueue() {
  if (serving) return;
  serving = true;
  while (queue.length > 0) {
    const request = queue.shift();
    // Wait for the cell's end, not for its code: an interrupted cell may
    // leave a promise that never settles.
    await runCell(request);
  }
  serving = false;
}

const input = new net.Socket({ fd: PROTO_IN, readable: true, writable: false });
input.on("data", (data) => {
  // Chunks are joined only once a whole frame is there: joining at every
  // chunk would copy a 50 MB request hundreds of times.
  inbox.push(data);
  inboxSize += data.length;
  for (;;) {
    if (inboxSize < 5) break;
    if (inbox[0].length < 5) inbox = [Buffer.concat(inbox)];
    const length = inbox[0].readUInt32BE(1);
    if (inboxSize < 5 + length) break;
    const whole = inbox.length === 1 ? inbox[0] : Buffer.concat(inbox);
    const kind = whole.toString("latin1", 0, 1);
    const payload = whole.subarray(5, 5 + length);
    const rest = whole.subarray(5 + length);
    inbox = rest.length ? [rest] : [];
    inboxSize = rest.length;
    if (kind === "R") queue.push(JSON.parse(payload.toString("utf8")));
  }
  serveQueue();
});
input.on("end", () => real.exit(0));
input.on("error", () => real.exit(0));

real.setImmediate(() => {
  baseline = process.getActiveResourcesInfo().length;
  const hello = { language: "javascript", version: process.version, pid: process.pid };
  send("H", Buffer.from(JSON.stringify(hello)));
});
