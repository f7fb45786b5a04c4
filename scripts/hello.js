// CommonJS: read the shared input file and compute a little.
const fs = require("fs");
const path = require("path");

const poem = fs.readFileSync(path.join(__dirname, "data", "poem.txt"), "utf8");
const lines = poem.trim().split("\n");
console.log(`Node ${process.version}: the poem has ${lines.length} lines`);

const squares = Array.from({ length: 1000 }, (_, i) => i * i).reduce((a, b) => a + b, 0);
console.log(`sum of squares below 1000: ${squares}`);
