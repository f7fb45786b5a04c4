// dockermagic's JavaScript agent: runs the program of a container, or a session's cells.
//
// Every JavaScript container of dockermagic runs this as its main program. It
// arrives on stdin: a shell line (see dockermagic/interpreters.py) hands node
// the protocol on fd 3 (requests, the original stdin) and fd 4 (replies, the
// original stdout), points fds 1 and 2 at two FIFOs and fd 0 at a third (the
// program's stdin), and a bootstrap reads this source from fd 3 and runs it.
// The frames are described in dockermagic/protocol.py.
//
// * Files arrive as F frames: the program's folder (/code, read-only once the
//   program starts) or the working directory.
// * A script request runs a program as `node path` would: the main CommonJS
//   module (an ES module for .mjs), process.argv, stdin on fd 0; a `once`
//   request ends the agent afterwards with the program's exit status.
// * Cells run as scripts in this context: top-level const/let/class/function
//   persist across cells; a cell with top-level await is rewritten by Node's
//   own REPL transform (declarations hoisted, lines kept). The value of a
//   cell's last expression is displayed, as in a notebook.
// * A program is done when its code (and awaited promise) finished and the
//   work it scheduled (timers, I/O) has drained, as a script would end.
// * process.stdout/stderr and console write frames directly, in order;
//   display(value) (and display.html/markdown/svg/png/jpeg/json) sends M frames.
// * After the code, files of the working directory matching the request's
//   `get` patterns come back as G frames (regular files, no links, a budget).
// * SIGINT breaks a running script (breakOnSigint) or ends a cell that waits
//   for async work; it is ignored between cells. process.exit() ends the cell
//   with its status; the interpreter stays.
// * Output frames carry the id of the request they belong to (the last one's
//   once it is done), so the host drops what a cell's timers print later.
// * The agent ends when its stdin closes (the host hung up) and, from a
//   watchdog thread, when a cell outlives the request's deadline: a runaway
//   cell stops even when nobody is left to stop it.
"use strict";

const fs = require("fs");
const net = require("net");
const path = require("path");
const util = require("util");
const vm = require("vm");
const Module = require("module");
const { pathToFileURL } = require("url");
const { Readable, Writable } = require("stream");
const { Worker } = require("worker_threads");

const PROTO_IN = 3;
const PROTO_OUT = 4;
const CHUNK = 1024 * 1024;
const SERVER_FILE = "<dockermagic-agent>";
const CODE_DIR = process.env.DOCKERMAGIC_CODE_DIR || "/code";
const FIRST = 1;
const LAST = 2;

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

const [fifoOut, fifoErr, stdinFile] = process.argv.slice(1, 4);
const pipes = [];
for (const [fifo, kind] of [
  [fifoOut, "O"],
  [fifoErr, "E"],
]) {
  const fd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  fs.unlinkSync(fifo);
  pipes.push([fd, kind]);
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

let cellId = 0; // the running request's id, or the last one's

function frames(kind, payload) {
  const tagged = kind === "O" || kind === "E" || kind === "M";
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
    const data =
      typeof chunk === "string"
        ? Buffer.from(chunk, typeof encoding === "string" ? encoding : "utf8")
        : Buffer.from(chunk);
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

// -- displays -------------------------------------------------------------------------

function publish(data, metadata) {
  const body = JSON.stringify({ data, metadata: metadata || {} });
  send("M", Buffer.from(body, "utf8"));
}

function plain(value) {
  return typeof value === "string" ? value : util.inspect(value, { depth: 4 });
}

function display(...values) {
  for (const value of values) {
    if (typeof value === "string") {
      publish({ "text/plain": value });
    } else if (value !== undefined && value !== null && typeof value === "object" && !Buffer.isBuffer(value)) {
      let json;
      try {
        json = JSON.parse(JSON.stringify(value));
      } catch (_) {
        json = undefined;
      }
      const data = { "text/plain": plain(value) };
      if (json !== undefined) data["application/json"] = json;
      publish(data);
    } else {
      publish({ "text/plain": plain(value) });
    }
  }
}

function binary(value) {
  return Buffer.isBuffer(value) || value instanceof Uint8Array
    ? Buffer.from(value).toString("base64")
    : String(value);
}

display.html = (html) => publish({ "text/html": String(html), "text/plain": "<HTML>" });
display.markdown = (text) => publish({ "text/markdown": String(text), "text/plain": String(text) });
display.svg = (svg) => publish({ "image/svg+xml": String(svg), "text/plain": "<SVG>" });
display.png = (data) => publish({ "image/png": binary(data), "text/plain": "<PNG image>" });
display.jpeg = (data) => publish({ "image/jpeg": binary(data), "text/plain": "<JPEG image>" });
display.json = (value) => publish({ "application/json": value, "text/plain": JSON.stringify(value, null, 1) });
display.latex = (text) => publish({ "text/latex": String(text), "text/plain": String(text) });
globalThis.display = display;

// -- the deadline keeper ------------------------------------------------------------
// A worker thread runs while a cell's synchronous code holds the main thread;
// started with the first request that has a deadline (one-shot runs have a
// deadline keeper as PID 1 instead).

const deadline = new Float64Array(new SharedArrayBuffer(8)); // ms since epoch, 0: none
let keeper = null;

function keepDeadline(seconds) {
  deadline[0] = seconds ? Date.now() + seconds * 1000 : 0;
  if (!seconds || keeper !== null) return;
  keeper = new Worker(
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
}

// -- files ----------------------------------------------------------------------------

const writing = new Map(); // path -> fd of files arriving in F frames
const newDirs = new Set(); // folders made for code files since the last seal

function receiveFile(payload) {
  const flags = payload.readUInt8(0);
  const base = payload.toString("latin1", 1, 2);
  const length = payload.readUInt16BE(2);
  const rel = payload.toString("utf8", 4, 4 + length);
  const data = payload.subarray(4 + length);
  const parts = rel.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.length === 0 || parts.includes("..") || rel.startsWith("/") || rel.includes("\0")) return;
  const file = path.join(base === "c" ? CODE_DIR : process.cwd(), ...parts);
  if (flags & FIRST) {
    if (base === "c") {
      const root = CODE_DIR;
      for (let dir = path.dirname(file); dir.startsWith(root) && dir !== root && !fs.existsSync(dir); dir = path.dirname(dir)) {
        newDirs.add(dir);
      }
    }
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const fd = fs.openSync(
      file,
      fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW,
      0o644,
    );
    writing.set(file, [fd, base]);
  }
  const [fd, fileBase] = writing.get(file);
  let offset = 0;
  while (offset < data.length) offset += fs.writeSync(fd, data, offset, data.length - offset);
  if (flags & LAST) {
    fs.closeSync(fd);
    writing.delete(file);
    if (fileBase === "c") fs.chmodSync(file, 0o444);
  }
}

function sealCode(on) {
  if (on) {
    // Only what arrived since the last request: earlier folders are sealed.
    for (const dir of newDirs) {
      try {
        fs.chmodSync(dir, 0o555);
      } catch (_) {
        // gone
      }
    }
    newDirs.clear();
  }
  try {
    fs.chmodSync(CODE_DIR, on ? 0o555 : 0o755);
  } catch (_) {
    // no code folder
  }
}

function globToRegExp(pattern) {
  let out = "";
  for (const ch of pattern) {
    if (ch === "*") out += ".*";
    else if (ch === "?") out += ".";
    else out += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${out}$`, "s");
}

function sendFiles(spec) {
  const patterns = (spec.patterns || []).map(globToRegExp);
  let budget = Number(spec.limit) || 0;
  const got = [];
  const skipped = [];
  const root = process.cwd();
  const walk = (dir) => {
    let entries = [];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch (_) {
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        walk(file);
        continue;
      }
      const rel = path.relative(root, file);
      if (!patterns.some((p) => p.test(rel) || p.test(entry.name))) continue;
      let info;
      try {
        info = fs.lstatSync(file);
      } catch (err) {
        skipped.push([rel, err.code || String(err)]);
        continue;
      }
      if (!info.isFile()) {
        skipped.push([rel, "not a regular file"]);
        continue;
      }
      if (info.size > budget) {
        skipped.push([rel, `${info.size} bytes would pass the limit`]);
        continue;
      }
      let data;
      try {
        const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
        try {
          data = fs.readFileSync(fd);
        } finally {
          fs.closeSync(fd);
        }
      } catch (err) {
        skipped.push([rel, err.code || String(err)]);
        continue;
      }
      budget -= data.length;
      const name = Buffer.from(rel, "utf8");
      let start = 0;
      do {
        const part = data.subarray(start, start + CHUNK - 64);
        const flags = (start === 0 ? FIRST : 0) | (start + part.length >= data.length ? LAST : 0);
        const head = Buffer.alloc(7);
        head.writeUInt32BE(cellId, 0);
        head.writeUInt8(flags, 4);
        head.writeUInt16BE(name.length, 5);
        send("G", Buffer.concat([head, name, part]));
        start += CHUNK - 64;
      } while (start < data.length);
      got.push(rel);
    }
  };
  walk(root);
  return [got, skipped];
}

// -- the program's stdin -------------------------------------------------------------

function feedStdin(data) {
  // fd 0 is a regular file the shell opened at start: what is written here
  // before the program runs is what it reads, then end-of-file.
  fs.writeFileSync(stdinFile, data);
}

// -- running code ---------------------------------------------------------------------

class CellExit extends Error {
  constructor(code) {
    super(`process.exit(${code})`);
    this.exitCode = code;
  }
}

process.exit = function exit(code) {
  throw new CellExit(code === undefined ? (process.exitCode ?? 0) : code);
};

let current = null; // the running request: {id, timers, finished, interrupted, ...}

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
    // Leave out the agent's own frames and Node's internals.
    return err.stack
      .split("\n")
      .filter(
        (line) =>
          !(/^\s+at /.test(line) && /\(node:|at node:|<dockermagic-agent>/.test(line)),
      )
      .join("\n");
  }
  return "Uncaught " + util.inspect(err);
}

function exitStatus(code) {
  const number = Number(code);
  return Number.isInteger(number) ? number & 0xff : 1;
}

let baseline = 0;

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

function cpuSeconds() {
  const usage = process.resourceUsage();
  return (usage.userCPUTime + usage.systemCPUTime) / 1e6;
}

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
  let got = [];
  let skipped = [];
  if (cell.get) [got, skipped] = sendFiles(cell.get);
  drainPipes();
  lastDrain = performance.now();
  const done = {
    id: cell.id,
    exit_code: exitCode,
    interrupted: cell.interrupted,
    tasks: countTasks(),
    fds: count("/proc/self/fd"),
    cpu: Math.round((cpuSeconds() - cell.cpu) * 1e6) / 1e6,
    maxrss: process.resourceUsage().maxRSS * 1024,
    got,
    skipped,
  };
  send("D", Buffer.from(JSON.stringify(done)));
  if (cell.once) real.exit(exitCode);
  sealCode(false);
  cell.resolve();
}

function missingModuleHint(err) {
  if (!err || err.code !== "MODULE_NOT_FOUND") return "";
  const match = /Cannot find module '([^']+)'/.exec(String(err.message));
  if (!match || match[1].startsWith(".") || match[1].startsWith("/")) return "";
  const image = process.env.DOCKERMAGIC_IMAGE || "this image";
  return (
    `[dockermagic] the package '${match[1]}' is not installed in ${image}; ` +
    "use an image that has it (--image).\n"
  );
}

function fail(cell, err) {
  if (cell.finished) return;
  if (err instanceof CellExit) {
    finish(cell, exitStatus(err.exitCode));
    return;
  }
  const interrupted = err && err.code === "ERR_SCRIPT_EXECUTION_INTERRUPTED";
  if (interrupted) cell.interrupted = true;
  send("E", Buffer.from(describe(err) + "\n" + missingModuleHint(err)));
  finish(cell, interrupted ? 130 : 1);
}

function busy() {
  return process.getActiveResourcesInfo().length > baseline;
}

function settled(cell) {
  // Done once the work the code scheduled has run: poll between turns of
  // the event loop (setImmediate lets pending I/O callbacks run first).
  return new Promise((resolve) => {
    const check = () => {
      if (cell.finished || !busy()) resolve();
      else real.setTimeout(() => real.setImmediate(check), 2);
    };
    real.setImmediate(check);
  });
}

function run(request) {
  const cell = {
    id: request.id,
    timers: [],
    finished: false,
    interrupted: false,
    once: Boolean(request.once),
    get: request.get,
    cpu: cpuSeconds(),
  };
  cell.whenFinished = new Promise((resolve) => {
    cell.resolve = resolve;
  });
  current = cell;
  cellId = request.id;
  keepDeadline(request.deadline);
  sealCode(true);
  const file = request.path;
  // A notebook cell's stack names the cell and counts lines as the editor
  // does (its first line is the %% magic line).
  const name = request.name || file;
  const lineOffset = Math.max(Number(request.first_line) || 1, 1) - 1;
  const source = Buffer.from(request.code, "base64").toString("utf8");
  const input = request.stdin === null ? null : Buffer.from(request.stdin, "base64");
  stdin = input === null ? emptyStdin() : Readable.from([input]);
  for (const [name, value] of Object.entries(request.inputs || {})) {
    // Constants, as for a cold run; configurable so a later cell can pass them again.
    Object.defineProperty(globalThis, name, { value, writable: false, enumerable: true, configurable: true });
  }
  if (request.once && input !== null) feedStdin(input);
  // A notebook cell run once (display_last) runs as a cell: its completion
  // value is what it displays; a program runs as the main module.
  const asScript = request.script && !request.display_last;
  // What is active now (the agent's own handles, what earlier cells left
  // open) is not the program's: it is done when nothing beyond that is left.
  // Counted from inside an immediate, as settled() counts.
  real.setImmediate(() => {
    baseline = process.getActiveResourcesInfo().length;
    if (asScript) {
      executeScript(cell, file);
    } else {
      globalThis.require = Module.createRequire(file);
      globalThis.__filename = file;
      globalThis.__dirname = path.dirname(file);
      process.exitCode = undefined;
      executeCell(cell, source, name, Boolean(request.display_last), lineOffset);
    }
  });
  return cell.whenFinished;
}

// The agent itself is compiled by vm, where import() is not available; a
// module compiled by Node's own loader may call it.
const importer = new Module("<dockermagic-import>");
importer._compile("module.exports = (url) => import(url);", path.join(CODE_DIR, ".import.js"));
const importModule = importer.exports;

async function executeScript(cell, file) {
  try {
    process.argv = [process.argv[0], file];
    process.exitCode = undefined;
    if (file.endsWith(".mjs")) {
      await importModule(pathToFileURL(file).href);
    } else {
      Module._load(file, null, true); // as the main module: require.main === module
    }
    await settled(cell);
    finish(cell, exitStatus(process.exitCode ?? 0));
  } catch (err) {
    fail(cell, err);
  }
}

async function executeCell(cell, source, file, displayLast, lineOffset) {
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
      script = new vm.Script(code, { filename: file, lineOffset });
    } catch (err) {
      if (!wrapped) throw err;
      script = new vm.Script(source, { filename: file, lineOffset }); // the user's own error
    }
    let value = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
    if (wrapped) {
      value = await value;
      // The REPL transform returns {value} for a last expression.
      value = value && typeof value === "object" && "value" in value ? value.value : undefined;
    }
    if (displayLast && value !== undefined) display(value);
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
    const [kind, payload] = queue.shift();
    if (kind === "F") {
      receiveFile(payload);
    } else if (kind === "R") {
      // Wait for the cell's end, not for its code: an interrupted cell may
      // leave a promise that never settles.
      await run(JSON.parse(payload.toString("utf8")));
    }
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
    const payload = Buffer.from(whole.subarray(5, 5 + length));
    const rest = whole.subarray(5 + length);
    inbox = rest.length ? [rest] : [];
    inboxSize = rest.length;
    queue.push([kind, payload]);
  }
  serveQueue();
});
// The host hung up (it stopped the run, or it died): end as a killed program does.
function hungUp() {
  try {
    process.kill(-1, "SIGKILL");
  } catch (_) {
    // nothing else runs
  }
  real.exit(137);
}
input.on("end", hungUp);
input.on("error", hungUp);

real.setImmediate(() => {
  const hello = { language: "javascript", version: process.version, pid: process.pid };
  send("H", Buffer.from(JSON.stringify(hello)));
});
