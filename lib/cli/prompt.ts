// Passphrases for the command line: from a file, from N2S_PASSPHRASE, or asked on the terminal
// without echo.

import { napiBlake3 } from "../format/blake3_napi.ts";

const enc = new TextEncoder();

/** Reads a line from the terminal without echoing it. */
export async function promptHidden(question: string): Promise<string> {
  if (!Deno.stdin.isTerminal()) {
    throw new UsageError(
      "a passphrase is needed: set N2S_PASSPHRASE, use --passphrase-file FILE, or run in a terminal",
    );
  }
  // Whatever the first run still downloads (the native hash is imported on first use) is fetched
  // before the question is drawn, so that no download line is drawn over it while it waits.
  await napiBlake3();
  await Deno.stderr.write(enc.encode(question));
  Deno.stdin.setRaw(true);
  const buf = new Uint8Array(1);
  const bytes: number[] = [];
  try {
    while (true) {
      const n = await Deno.stdin.read(buf);
      if (n === null) break;
      const c = buf[0];
      if (c === 3) throw new UsageError("interrupted");
      if (c === 13 || c === 10) break;
      if (c === 127 || c === 8) bytes.pop();
      else bytes.push(c);
    }
  } finally {
    Deno.stdin.setRaw(false);
    await Deno.stderr.write(enc.encode("\n"));
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** A mistake in how the command was called (exit code 2). */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The passphrase from --passphrase-file, N2S_PASSPHRASE, or a prompt (twice when `confirm`). */
export async function getPassphrase(file: string | undefined, confirm: boolean): Promise<string> {
  if (file !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      throw new UsageError(
        `cannot read passphrase file ${file}: ${e instanceof Error ? e.message : e}`,
      );
    }
    const p = text.replace(/\r?\n$/, "");
    if (p === "") throw new UsageError(`passphrase file ${file} is empty`);
    return p;
  }
  const env = Deno.env.get("N2S_PASSPHRASE");
  if (env !== undefined && env !== "") return env;
  const p = await promptHidden("Passphrase: ");
  if (p === "") throw new UsageError("an empty passphrase is not allowed");
  if (confirm) {
    const again = await promptHidden("Passphrase again: ");
    if (again !== p) throw new UsageError("the two passphrases differ; nothing was created");
  }
  return p;
}
