// A progress bar on stderr (files, bytes, rate, ETA), drawn only when stderr is a terminal.

const enc = new TextEncoder();

/** Human-readable byte count (decimal units). */
export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "--:--";
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  const ss = String(Math.floor(s % 60)).padStart(2, "0");
  return h > 0 ? `${h}:${String(m % 60).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Draws at most ten frames a second; `done` clears the line. */
export class ProgressBar {
  #last = 0;
  #start = Date.now();
  readonly enabled: boolean;
  constructor(private readonly label: string, enabled = Deno.stderr.isTerminal()) {
    this.enabled = enabled;
  }

  update(
    p: { filesDone: number; filesTotal: number; bytesDone: number; bytesTotal: number },
  ): void {
    if (!this.enabled) return;
    const t = Date.now();
    if (t - this.#last < 100 && p.filesDone < p.filesTotal) return;
    this.#last = t;
    const secs = (t - this.#start) / 1000;
    const rate = secs > 0 ? p.bytesDone / secs : 0;
    const frac = p.bytesTotal > 0
      ? p.bytesDone / p.bytesTotal
      : p.filesTotal > 0
      ? p.filesDone / p.filesTotal
      : 1;
    const width = 24;
    const fill = Math.round(Math.min(1, frac) * width);
    const eta = rate > 0 ? (p.bytesTotal - p.bytesDone) / rate : NaN;
    const line = `${this.label} [${"#".repeat(fill)}${"-".repeat(width - fill)}] ` +
      `${p.filesDone}/${p.filesTotal} files  ${formatBytes(p.bytesDone)}/${
        formatBytes(p.bytesTotal)
      }  ` +
      `${formatBytes(rate)}/s  ETA ${formatSeconds(eta)}`;
    Deno.stderr.writeSync(enc.encode(`\r\x1b[K${line}`));
  }

  done(): void {
    if (this.enabled) Deno.stderr.writeSync(enc.encode("\r\x1b[K"));
  }
}
