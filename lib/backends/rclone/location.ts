// rclone: locations, and the environment rcd runs in. `rclone:PATH` takes PATH exactly as rclone
// does (a configured remote "myremote:bucket/dir", a connection string ":sftp,host=…:dir", or a
// local path); secrets in connection strings never reach a message. Nothing here runs rclone.

/** What an operation needs of the process that runs rclone. */
export interface RcloneOptions {
  /** The rclone program (N2S_RCLONE). */
  program: string;
  /** rclone's environment, already filtered. */
  env: Record<string, string>;
}

/**
 * Environment variables rclone must not see: they would change what an operation does
 * (dry runs, skipping existing files), where rcd logs (it announces its address on stderr) or
 * how its remote control listens. RCLONE_RC_* is removed as a whole.
 */
const DROPPED_ENV = [
  "AWS_CA_BUNDLE",
  "RCLONE_DRY_RUN",
  "RCLONE_IGNORE_EXISTING",
  "RCLONE_IMMUTABLE",
  "RCLONE_UPDATE",
  "RCLONE_SIZE_ONLY",
  "RCLONE_CHECKSUM",
  "RCLONE_NO_CHECK_DEST",
  "RCLONE_LOG_FILE",
  "RCLONE_LOG_LEVEL",
  "RCLONE_USE_JSON_LOG",
  "RCLONE_QUIET",
  "RCLONE_VERBOSE",
  "RCLONE_SYSLOG",
  "RCLONE_INTERACTIVE",
];

/** Default rclone flags, each left out when the user set the flag's own variable. */
export const DEFAULT_FLAGS: [string, string][] = [
  // A refused or unknown host fails in well under a second instead of ~11 s of rclone's own
  // retries; the backend stack retries transient errors itself.
  ["RCLONE_LOW_LEVEL_RETRIES", "--low-level-retries=3"],
  ["RCLONE_CONTIMEOUT", "--contimeout=15s"],
  // Over SFTP, rclone checks each upload by running md5sum on the server: ~190 ms per small
  // put instead of ~6 ms. Every n2s object is authenticated and verified when it is read, so
  // that check adds little; RCLONE_SFTP_DISABLE_HASHCHECK=false restores it.
  ["RCLONE_SFTP_DISABLE_HASHCHECK", "--sftp-disable-hashcheck"],
];

/** Parses `rclone:PATH` into the rclone path; throws on a malformed location. */
export function parseRcloneLocation(location: string): string {
  if (!/^rclone:/i.test(location)) {
    throw new Error(`not an rclone location: "${location}" (expected rclone:REMOTE:path)`);
  }
  let path = location.slice("rclone:".length);
  if (path.trim() === "") {
    throw new Error(
      `empty rclone path in "${location}": use rclone:REMOTE:path, rclone::backend,opt=…:path ` +
        "or rclone:/local/path",
    );
  }
  if (/[\r\n\0]/.test(path)) {
    throw new Error(`rclone path in "${location}" contains a control character`);
  }
  // "remote:dir/" and "remote:dir" are one place; keep "remote:/" and "/" as they are.
  while (path.length > 1 && path.endsWith("/") && !path.endsWith(":/")) path = path.slice(0, -1);
  return path;
}

/** Whether a connection-string parameter holds a secret (its value is hidden in messages). */
function secretParam(name: string): boolean {
  return /pass|secret|token|credential|sas_url|pem/i.test(name) || /(^|_)key$/i.test(name);
}

/** The rclone path with the values of secret connection-string parameters hidden. */
export function redactRemote(path: string): string {
  return path.replace(
    /([,:]\s*)([A-Za-z0-9_-]+)=('(?:[^']|'')*'|"(?:[^"]|"")*"|[^,:]*)/g,
    (all, sep: string, name: string) => secretParam(name) ? `${sep}${name}=***` : all,
  );
}

/** The configured remote a path names ("myremote" of "myremote:dir"), or null. */
export function remoteName(path: string): string | null {
  const m = /^([^:/\\,]+)(?:,[^:]*)?:/.exec(path);
  return m && !/^[A-Za-z]$/.test(m[1]) ? m[1] : null;
}

/** The process environment (when readable) with `env` laid over it; undefined removes. */
export function childEnv(env: Record<string, string | undefined>): Record<string, string> {
  let out: Record<string, string> = {};
  try {
    out = Deno.env.toObject();
  } catch {
    // Without env permission rclone sees only what `env` gives.
  }
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  for (const k of Object.keys(out)) {
    if (DROPPED_ENV.includes(k) || k.startsWith("RCLONE_RC_") || k.startsWith("N2S_")) {
      delete out[k];
    }
  }
  return out;
}
