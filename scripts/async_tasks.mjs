// An ES module: run several asynchronous tasks at once and wait for all.
import { setTimeout as sleep } from "node:timers/promises";

async function task(name, ms) {
  await sleep(ms);
  return `${name} done after ${ms} ms`;
}

const started = Date.now();
const results = await Promise.all([task("a", 300), task("b", 200), task("c", 100)]);
for (const line of results) console.log(line);
const elapsed = Date.now() - started;
console.log(`all three in ${elapsed} ms (concurrently, not ${300 + 200 + 100} ms)`);
