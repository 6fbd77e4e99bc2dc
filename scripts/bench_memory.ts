// Memory with content that compresses to nothing: a push and a pull of 1 GiB of zeros, a 5 GiB
// sparse file and a 2 GiB text file of repeated lines, each alone in a fresh repository. Prints
// peak RSS, wall time and, for the sparse file, the blocks the restore allocated; every restore
// is compared with its source byte for byte (`cmp`) before its row is printed.
//
//   deno task bench --memory            (or: deno run -A scripts/bench_memory.ts)
//   deno run -A scripts/bench_memory.ts --tools n2s,restic --out .bench/memory.md
//   deno run -A scripts/bench_memory.ts --scale 0.1     smaller files, for development

import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import {
  ensurePeers,
  type Measured,
  n2sTool,
  resticTool,
  settle,
  type Tool,
} from "./bench_tools.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    tools: { type: "string", default: "n2s,restic" },
    dir: { type: "string", default: ".bench/memory" },
    scale: { type: "string", default: "1" },
    n2s: { type: "string" },
    out: { type: "string" },
  },
});

const GiB = 1 << 30;
const scale = Number(values.scale);
const root = resolve(values.dir!);
const repoRoot = new URL("..", import.meta.url).pathname;
const cli = values.n2s?.split(" ") ??
  ["deno", "run", "-A", "--quiet", join(repoRoot, "cli.ts")];

interface Case {
  name: string;
  what: string;
  make(path: string): Promise<void>;
}

/** Writes `size` bytes made by `chunk(i)` (1 MiB each). */
async function writeChunks(path: string, size: number, chunk: (i: number) => Uint8Array) {
  const f = await Deno.open(path, { create: true, write: true, truncate: true });
  try {
    for (let at = 0, i = 0; at < size; i++) {
      const c = chunk(i);
      const part = c.subarray(0, Math.min(c.length, size - at));
      let done = 0;
      while (done < part.length) done += await f.write(part.subarray(done));
      at += part.length;
    }
  } finally {
    f.close();
  }
}

const cases: Case[] = [
  {
    // The floor of any push or pull: the key derivation (scrypt, 128 MiB), the index, Workers.
    name: "one",
    what: "one 6-byte file (the floor)",
    make: (p) => Deno.writeTextFile(p, "hello\n"),
  },
  {
    name: "zeros",
    what: `${fmtGiB(GiB * scale)} of zeros (written, not sparse)`,
    make: (p) => {
      const z = new Uint8Array(1 << 20);
      return writeChunks(p, Math.round(GiB * scale), () => z);
    },
  },
  {
    name: "sparse",
    what: `${fmtGiB(5 * GiB * scale)} sparse file, 3 MiB of data in it`,
    make: async (p) => {
      const size = Math.round(5 * GiB * scale);
      const f = await Deno.open(p, { create: true, write: true, truncate: true });
      try {
        const data = new Uint8Array(1 << 20).map((_, i) => (i * 31 + 7) & 0xff);
        for (const at of [0, Math.floor(size / 2 / 4096) * 4096, size - (1 << 20)]) {
          await f.seek(at, Deno.SeekMode.Start);
          await f.write(data);
        }
        await f.truncate(size);
      } finally {
        f.close();
      }
    },
  },
  {
    name: "text",
    what: `${fmtGiB(2 * GiB * scale)} text of repeated lines`,
    make: (p) => {
      const line = '2026-12-02,incident,region-07,verified,"witness statement on file"\n';
      const chunk = new TextEncoder().encode(line.repeat(Math.ceil((1 << 20) / line.length)))
        .subarray(0, 1 << 20);
      return writeChunks(p, Math.round(2 * GiB * scale), () => chunk);
    },
  },
];

function fmtGiB(n: number): string {
  return n >= GiB ? `${(n / GiB).toFixed(n % GiB ? 1 : 0)} GiB` : `${Math.round(n / 2 ** 20)} MiB`;
}

async function blocksOf(path: string): Promise<number> {
  const o = await new Deno.Command("stat", { args: ["-c", "%b", path], stdout: "piped" }).output();
  return Number(new TextDecoder().decode(o.stdout).trim()) * 512;
}

async function same(a: string, b: string): Promise<boolean> {
  const o = await new Deno.Command("cmp", { args: ["-s", a, b] }).output();
  return o.success;
}

interface Row {
  case: Case;
  tool: string;
  push: Measured;
  pull: Measured;
  allocated: number;
  source: number;
  ok: boolean;
}

const toolNames = values.tools!.split(",");
await ensurePeers(toolNames.filter((t) => t !== "n2s"));
await Deno.mkdir(root, { recursive: true });
const rows: Row[] = [];
for (const c of cases) {
  const src = join(root, `src-${c.name}`);
  await Deno.remove(src, { recursive: true }).catch(() => {});
  await Deno.mkdir(src, { recursive: true });
  const file = join(src, `${c.name}.dat`);
  await c.make(file);
  for (const name of toolNames) {
    const work = join(root, `${name}-${c.name}`);
    await Deno.remove(work, { recursive: true }).catch(() => {});
    await Deno.mkdir(work, { recursive: true });
    const tool: Tool = name === "n2s" ? n2sTool(work, cli) : resticTool(work);
    await tool.init();
    await settle();
    const push = await tool.backup(src);
    await settle();
    const target = join(work, "restore");
    await Deno.mkdir(target);
    const pull = await tool.restore(src, target);
    const restored = join(tool.restoredPath(src, target), `${c.name}.dat`);
    const ok = await same(file, restored);
    rows.push({
      case: c,
      tool: name,
      push,
      pull,
      allocated: await blocksOf(restored),
      source: await blocksOf(file),
      ok,
    });
    console.error(
      `${c.name} ${name}: push ${push.wall.toFixed(1)} s ${push.rssMiB.toFixed(0)} MiB, ` +
        `pull ${pull.wall.toFixed(1)} s ${pull.rssMiB.toFixed(0)} MiB, ${
          ok ? "identical" : "DIFFERS"
        }`,
    );
    await Deno.remove(work, { recursive: true });
  }
  await Deno.remove(src, { recursive: true });
}

const mib = (n: number) => (n / 2 ** 20).toFixed(n < 10 * 2 ** 20 ? 1 : 0);
const lines = [
  `Memory with content that compresses to nothing (\`deno run -A scripts/bench_memory.ts` +
  ` --tools ${values.tools}${scale !== 1 ? ` --scale ${scale}` : ""}\`, ${
    new Date().toISOString().slice(0, 10)
  })`,
  "",
  "",
  "| content | tool | push s | push peak RSS MiB | pull s | pull peak RSS MiB | restored allocated MiB (source) | identical |",
  "|---|---|---:|---:|---:|---:|---:|---|",
  ...rows.map((r) =>
    `| ${r.case.what} | ${r.tool} | ${r.push.wall.toFixed(1)} | ${r.push.rssMiB.toFixed(0)} | ` +
    `${r.pull.wall.toFixed(1)} | ${r.pull.rssMiB.toFixed(0)} | ${mib(r.allocated)} (${
      mib(r.source)
    }) | ` +
    `${r.ok ? "yes" : "NO"} |`
  ),
];
console.log(lines.join("\n"));
if (values.out) await Deno.writeTextFile(values.out, lines.join("\n") + "\n");
if (rows.some((r) => !r.ok)) Deno.exit(1);
