// sftp:// and ssh:// locations: sftp://[user@]host[:port]/absolute/path, or
// sftp://[user@]host[:port]/~/path for a path under the login's home directory.

import { BackendError } from "../backend.ts";

/** A parsed sftp:// or ssh:// location. */
export interface SftpLocation {
  user?: string;
  /** Host name, address or ssh_config alias (IPv6 without brackets). */
  host: string;
  port?: number;
  /** True for sftp://host/~/path: `path` is then relative to the login's home ("" = home). */
  home: boolean;
  /** The directory: absolute (home false) or relative to the home (home true). */
  path: string;
}

const FORMS = "sftp://[user@]host[:port]/absolute/path or sftp://[user@]host[:port]/~/path";

function badLocation(location: string, why: string): BackendError {
  // Never echo a password that was put in the location.
  const shown = location.replace(/^([a-z]+:\/\/[^/@:]*):[^/@]*@/i, "$1:***@");
  return new BackendError("permanent", "sftp", `invalid location "${shown}": ${why}; use ${FORMS}`);
}

/** Parses `sftp://[user@]host[:port]/path` (also `ssh://`, and `/~/path` under the home). */
export function parseSftpLocation(location: string): SftpLocation {
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    throw badLocation(location, "not a URL");
  }
  if (url.protocol !== "sftp:" && url.protocol !== "ssh:") {
    throw badLocation(location, `scheme "${url.protocol}" is not sftp: or ssh:`);
  }
  if (url.password !== "") {
    throw badLocation(location, "passwords are not supported (use a key or ssh-agent)");
  }
  if (url.search !== "" || url.hash !== "") {
    throw badLocation(location, "no ?query or #fragment is allowed");
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (host === "") throw badLocation(location, "the host is missing");
  if (host.startsWith("-") || /[\s'"\\]/.test(host)) {
    throw badLocation(location, "the host name is not valid");
  }
  let user: string | undefined;
  if (url.username !== "") {
    user = decodeURIComponent(url.username);
    if (user.startsWith("-") || /[\s\0]/.test(user)) {
      throw badLocation(location, "the user name is not valid");
    }
  }
  let raw: string;
  try {
    raw = decodeURIComponent(url.pathname);
  } catch {
    throw badLocation(location, "the path is not valid percent-encoding");
  }
  if (/[\0\n\r]/.test(raw)) throw badLocation(location, "the path has a control character");
  const home = raw === "/~" || raw.startsWith("/~/");
  const parts = (home ? raw.slice(2) : raw).split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw badLocation(location, 'the path may not contain ".."');
  if (!home && parts.length === 0) throw badLocation(location, "the directory path is missing");
  return {
    user,
    host,
    port: url.port === "" ? undefined : Number(url.port),
    home,
    path: home ? parts.join("/") : `/${parts.join("/")}`,
  };
}

/** The location as n2s names it in messages: "sftp user@host:port/path" (never a password). */
export function describeLocation(loc: SftpLocation): string {
  const path = loc.home ? `/~${loc.path ? `/${loc.path}` : ""}` : loc.path;
  return `sftp ${loc.user ? `${loc.user}@` : ""}${hostPort(loc)}${path}`;
}

/** "host:port", with an IPv6 address in brackets; the host alone without a port. */
export function hostPort(loc: SftpLocation): string {
  const h = loc.host.includes(":") ? `[${loc.host}]` : loc.host;
  return `${h}${loc.port ? `:${loc.port}` : ""}`;
}
