// One interface for the external commands that clients run (`btrfs`, `zfs`), so that tests can
// replay recorded output where the real tool cannot run.

/** What a finished command returned. */
export interface CommandResult {
  /** Exit code (0 for success). */
  code: number;
  /** Everything written to stdout. */
  stdout: Uint8Array;
  /** Everything written to stderr, as text. */
  stderr: string;
}

/** One command of a pipeline. */
export interface Command {
  /** The program to run, found on PATH. */
  cmd: string;
  /** Its arguments. */
  args: string[];
}

/** Runs external commands. */
export interface Runner {
  /** Runs a command to completion, collecting its output. Never throws for a non-zero exit. */
  run(cmd: string, args: string[]): Promise<CommandResult>;
  /**
   * Runs a pipeline (`a | b | …`) and yields the last command's stdout line by line, without
   * the newline. Throws a CommandError after the last line if any command failed.
   */
  lines(pipeline: Command[]): AsyncIterable<string>;
}

/** A command that exited with an error. */
export class CommandError extends Error {
  /** Makes the error from the command line, its exit code and its stderr. */
  constructor(readonly command: string, readonly code: number, readonly stderr: string) {
    super(`${command} failed (exit ${code})${stderr.trim() ? `: ${stderr.trim()}` : ""}`);
    this.name = "CommandError";
  }
}

/** Throws a CommandError unless the command succeeded; returns its stdout as text. */
export async function runChecked(runner: Runner, cmd: string, args: string[]): Promise<string> {
  const r = await runner.run(cmd, args);
  if (r.code !== 0) throw new CommandError([cmd, ...args].join(" "), r.code, r.stderr);
  return new TextDecoder().decode(r.stdout);
}

function describe(c: Command): string {
  return [c.cmd, ...c.args].join(" ");
}

async function* splitLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const dec = new TextDecoder();
  let rest = "";
  for await (const chunk of stream) {
    rest += dec.decode(chunk, { stream: true });
    let i: number;
    while ((i = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, i);
      rest = rest.slice(i + 1);
    }
  }
  rest += dec.decode();
  if (rest !== "") yield rest;
}

async function readText(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream).text();
}

/**
 * The runner that starts real processes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { systemRunner } from "@n2s/n2s";
 *
 * const r = await systemRunner.run("echo", ["hello"]);
 * assert.equal(r.code, 0);
 * assert.equal(new TextDecoder().decode(r.stdout), "hello\n");
 * ```
 */
export const systemRunner: Runner = {
  async run(cmd, args) {
    try {
      const out = await new Deno.Command(cmd, { args, stdin: "null" }).output();
      return { code: out.code, stdout: out.stdout, stderr: new TextDecoder().decode(out.stderr) };
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        return { code: 127, stdout: new Uint8Array(), stderr: `${cmd}: command not found` };
      }
      throw e;
    }
  },
  async *lines(pipeline) {
    const procs: Deno.ChildProcess[] = [];
    const stderrs: Promise<string>[] = [];
    const pipes: Promise<void>[] = [];
    try {
      for (let i = 0; i < pipeline.length; i++) {
        const c = pipeline[i];
        const p = new Deno.Command(c.cmd, {
          args: c.args,
          stdin: i === 0 ? "null" : "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        if (i > 0) pipes.push(procs[i - 1].stdout.pipeTo(p.stdin).catch(() => {}));
        procs.push(p);
        stderrs.push(readText(p.stderr));
      }
    } catch (e) {
      for (const p of procs) {
        try {
          p.kill();
        } catch { /* already gone */ }
      }
      if (e instanceof Deno.errors.NotFound) {
        throw new CommandError(describe(pipeline[procs.length]), 127, "command not found");
      }
      throw e;
    }
    let done = false;
    try {
      yield* splitLines(procs[procs.length - 1].stdout);
      done = true;
    } finally {
      if (!done) {
        for (const p of procs) {
          try {
            p.kill();
          } catch { /* already gone */ }
        }
      }
      await Promise.all(pipes);
      const statuses = await Promise.all(procs.map((p) => p.status));
      const errs = await Promise.all(stderrs);
      if (done) {
        for (let i = 0; i < procs.length; i++) {
          if (statuses[i].code !== 0) {
            // deno-lint-ignore no-unsafe-finally
            throw new CommandError(describe(pipeline[i]), statuses[i].code, errs[i]);
          }
        }
      }
    }
  },
};

/** A recorded answer: stdout text (exit 0) or a full result. */
export type Recorded = string | { code: number; stdout?: string; stderr?: string };

/**
 * A runner that answers from recorded output, keyed by the command line joined with spaces
 * (pipelines joined with " | "). Unknown commands fail with exit 127. `calls` lists what ran.
 */
export function replayRunner(
  recorded: Record<string, Recorded>,
): Runner & { calls: string[] } {
  const calls: string[] = [];
  const answer = (key: string): CommandResult => {
    calls.push(key);
    const r = recorded[key];
    if (r === undefined) {
      return { code: 127, stdout: new Uint8Array(), stderr: `not recorded: ${key}` };
    }
    const enc = new TextEncoder();
    if (typeof r === "string") return { code: 0, stdout: enc.encode(r), stderr: "" };
    return { code: r.code, stdout: enc.encode(r.stdout ?? ""), stderr: r.stderr ?? "" };
  };
  return {
    calls,
    run(cmd, args) {
      return Promise.resolve(answer(describe({ cmd, args })));
    },
    async *lines(pipeline) {
      const key = pipeline.map(describe).join(" | ");
      const r = answer(key);
      const text = new TextDecoder().decode(r.stdout);
      const lines = text.split("\n");
      if (lines[lines.length - 1] === "") lines.pop();
      yield* lines;
      if (r.code !== 0) throw new CommandError(key, r.code, r.stderr);
    },
  };
}
