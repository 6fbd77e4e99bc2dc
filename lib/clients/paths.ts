// The client behind `n2s push PATH...`: the given files and directory trees, relative to their
// deepest common directory. Deletions are recorded inside the directories that were walked.

import { basename, dirname, relative, resolve, sep } from "node:path";
import type { Client, SourceEntry } from "./client.ts";

/** Options of the paths client. */
export interface PathsClientOptions {
  /** Files and directories to push. */
  paths: string[];
  /** Source root; the deepest common directory of `paths` by default. */
  root?: string;
}

/** The deepest directory containing every path (a lone directory is its own root). */
export function commonRoot(paths: string[]): string {
  const abs = paths.map((p) => resolve(p));
  if (abs.length === 1) {
    const st = Deno.statSync(abs[0]);
    return st.isDirectory ? abs[0] : dirname(abs[0]);
  }
  let parts = dirname(abs[0]).split(sep);
  for (const p of abs.slice(1)) {
    const q = dirname(p).split(sep);
    let i = 0;
    while (i < parts.length && i < q.length && parts[i] === q[i]) i++;
    parts = parts.slice(0, i);
  }
  return parts.join(sep) || sep;
}

function fileEntry(path: string, st: Deno.FileInfo): SourceEntry {
  return {
    path,
    action: "write",
    size: st.size,
    mtime: st.mtime?.getTime() ?? 0,
    mode: (st.mode ?? 0o644) & 0o7777,
    inode: st.ino ?? undefined,
  };
}

/** A client over explicit paths. */
export function pathsClient(opts: PathsClientOptions): Client {
  const root = resolve(opts.root ?? commonRoot(opts.paths));
  const rels = opts.paths.map((p) => {
    const r = relative(root, resolve(p)).split(sep).join("/");
    if (r.startsWith("..")) throw new Error(`${p} is outside the source root ${root}`);
    return r;
  });
  const problems: { path: string; message: string }[] = [];
  const completeWithin: string[] = [];
  for (let i = 0; i < rels.length; i++) {
    const st = Deno.lstatSync(resolve(opts.paths[i]));
    if (st.isDirectory) completeWithin.push(rels[i]);
  }
  return {
    kind: "paths",
    root,
    completeWithin,
    problems,
    changesetName: opts.paths.length === 1 ? basename(resolve(opts.paths[0])) : undefined,
    async *entries() {
      for (const rel of rels) {
        yield* walk(root, rel, problems);
      }
    },
  };
}

/** Walks `root/rel` depth-first, yielding files and symlinks; skips special files with a note. */
export function* walk(
  root: string,
  rel: string,
  problems: { path: string; message: string }[],
): Generator<SourceEntry> {
  const stack = [rel];
  while (stack.length > 0) {
    const r = stack.pop()!;
    const full = r === "" ? root : `${root}/${r}`;
    let st: Deno.FileInfo;
    try {
      st = Deno.lstatSync(full);
    } catch (e) {
      problems.push({ path: r, message: `cannot stat: ${e instanceof Error ? e.message : e}` });
      continue;
    }
    if (st.isSymlink) {
      yield {
        path: r,
        action: "link",
        target: Deno.readLinkSync(full),
        mtime: st.mtime?.getTime(),
      };
    } else if (st.isFile) {
      yield fileEntry(r, st);
    } else if (st.isDirectory) {
      let names: string[];
      try {
        names = Array.from(Deno.readDirSync(full), (d) => d.name).sort().reverse();
      } catch (e) {
        problems.push({
          path: r || ".",
          message: `cannot read directory: ${e instanceof Error ? e.message : e}`,
        });
        continue;
      }
      for (const n of names) stack.push(r === "" ? n : `${r}/${n}`);
    } else {
      problems.push({ path: r, message: "skipped: not a regular file, directory or symlink" });
    }
  }
}
