// Times lib/fs/posix.ts against Deno's own calls on 20,000 small files under /tmp, as the walker
// and Workers use them. Run: deno run --allow-all tests/fs/posix_measure.ts [files] [rounds]

import {
  _useReaddir,
  closeFd,
  fstatRaw,
  lstatRaw,
  mkdirRaw,
  openRaw,
  readDirRaw,
  readFd,
  rmdirRaw,
  unlinkRaw,
  writeFd,
} from "../../lib/fs/posix.ts";

const FILES = Number(Deno.args[0] ?? 20_000);
const ROUNDS = Number(Deno.args[1] ?? 7);
const PER_DIR = 200;

const root = Deno.makeTempDirSync({ dir: "/tmp", prefix: "n2s-measure-" });
const dirs: string[] = [];
const files: string[] = [];
const content = new TextEncoder().encode("x".repeat(100));
for (let d = 0; d * PER_DIR < FILES; d++) {
  const dir = `${root}/dir-${String(d).padStart(4, "0")}`;
  mkdirRaw(dir, 0o755);
  dirs.push(dir);
  for (let f = 0; f < PER_DIR && d * PER_DIR + f < FILES; f++) {
    const path = `${dir}/file-${String(f).padStart(4, "0")}.txt`;
    const fd = openRaw(path, "write-new", 0o644);
    writeFd(fd, content);
    closeFd(fd);
    files.push(path);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

const results: [string, number, number][] = [];

/** Runs `f` ROUNDS times (after one warm-up) and records the median time and per-item cost. */
function measure(name: string, items: number, f: () => void): void {
  f();
  const times: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t = performance.now();
    f();
    times.push(performance.now() - t);
  }
  const ms = median(times);
  results.push([name, ms, (ms * 1000) / items]);
}

let sink = 0;
const buf = new Uint8Array(64 * 1024);

measure("readDirRaw, all directories", FILES, () => {
  for (const d of dirs) sink += readDirRaw(d).length;
});
_useReaddir(true);
measure("readDirRaw through readdir64 (the fallback)", FILES, () => {
  for (const d of dirs) sink += readDirRaw(d).length;
});
_useReaddir(false);
measure("Deno.readDirSync, all directories", FILES, () => {
  for (const d of dirs) for (const e of Deno.readDirSync(d)) sink += e.name.length;
});
measure("lstatRaw, every file", FILES, () => {
  for (const p of files) sink += lstatRaw(p).size;
});
measure("Deno.lstatSync, every file", FILES, () => {
  for (const p of files) sink += Deno.lstatSync(p).size;
});
measure("walk: readDirRaw + lstatRaw per entry", FILES, () => {
  for (const d of dirs) for (const e of readDirRaw(d)) sink += lstatRaw(`${d}/${e.name}`).size;
});
measure("walk: Deno.readDirSync + Deno.lstatSync", FILES, () => {
  for (const d of dirs) {
    for (const e of Deno.readDirSync(d)) sink += Deno.lstatSync(`${d}/${e.name}`).size;
  }
});
measure("openRaw + fstatRaw + readFd + closeFd", FILES, () => {
  for (const p of files) {
    const fd = openRaw(p, "read");
    sink += fstatRaw(fd).size + readFd(fd, buf);
    closeFd(fd);
  }
});
measure("Deno.openSync + statSync + readSync + close", FILES, () => {
  for (const p of files) {
    const f = Deno.openSync(p);
    sink += f.statSync().size + (f.readSync(buf) ?? 0);
    f.close();
  }
});
measure("Deno.readFileSync", FILES, () => {
  for (const p of files) sink += Deno.readFileSync(p).length;
});
const one = files[0];
measure("lstatRaw, one path 20,000 times", FILES, () => {
  for (let i = 0; i < FILES; i++) sink += lstatRaw(one).size;
});
measure("Deno.lstatSync, one path 20,000 times", FILES, () => {
  for (let i = 0; i < FILES; i++) sink += Deno.lstatSync(one).size;
});

for (const d of dirs) {
  for (const e of readDirRaw(d)) unlinkRaw(`${d}/${e.name}`);
  rmdirRaw(d);
}
rmdirRaw(root);

console.log(`${FILES} files in ${dirs.length} directories, median of ${ROUNDS} rounds`);
for (const [name, ms, us] of results) {
  console.log(
    `${name.padEnd(46)} ${ms.toFixed(1).padStart(8)} ms ${us.toFixed(2).padStart(7)} µs/file`,
  );
}
if (sink < 0) console.log(sink);
