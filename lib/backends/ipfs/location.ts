// ipfs:// locations: `ipfs://<root-name>[/<more>…][?api=URL]`, and where the RPC API is when the
// location does not say (N2S_IPFS_API, then IPFS_API, then http://127.0.0.1:5001). User and
// password in the API URL become an Authorization header. Nothing here touches the network.

const DEFAULT_API = "http://127.0.0.1:5001";

/** Where and how to reach the node. */
export interface IpfsOptions {
  /** Base URL of the RPC API without credentials or /api/v0, e.g. "http://127.0.0.1:5001". */
  api: string;
  /** MFS directory that holds the objects, without slashes at either end, e.g. "n2s". */
  root: string;
  /** Value of an Authorization header, when the API needs one. */
  authorization?: string;
}

/** Turns a multiaddr (/ip4/…/tcp/…[/http|/https]) or a URL into the API's base URL. */
function apiBase(value: string, from: string): { api: string; authorization?: string } {
  const bad = (why: string) =>
    new Error(`invalid IPFS API address ${JSON.stringify(value)} (from ${from}): ${why}`);
  let v = value.trim();
  if (v.startsWith("/")) {
    const m = /^\/(ip4|ip6|dns|dns4|dns6)\/([^/]+)\/tcp\/(\d+)(?:\/(http|https))?\/?$/.exec(v);
    if (!m) throw bad("expected a URL like http://127.0.0.1:5001 or /ip4/127.0.0.1/tcp/5001");
    const host = m[1] === "ip6" ? `[${m[2]}]` : m[2];
    v = `${m[4] ?? "http"}://${host}:${m[3]}`;
  }
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw bad("expected a URL like http://127.0.0.1:5001");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw bad("use http:// or https://");
  if (url.search || url.hash) throw bad("no query or fragment allowed");
  let authorization: string | undefined;
  if (url.username || url.password) {
    const user = decodeURIComponent(url.username);
    const pass = decodeURIComponent(url.password);
    authorization = `Basic ${
      btoa(String.fromCharCode(...new TextEncoder().encode(`${user}:${pass}`)))
    }`;
    url.username = "";
    url.password = "";
  }
  const path = url.pathname.replace(/\/+$/, "").replace(/\/api\/v0$/, "");
  return { api: `${url.protocol}//${url.host}${path}`, authorization };
}

/**
 * Reads `ipfs://<root-name>[?api=…]`: objects under the MFS directory /<root-name>. The API
 * address comes from `api=`, else N2S_IPFS_API, else IPFS_API, else http://127.0.0.1:5001.
 */
export function parseIpfsLocation(
  location: string,
  env: Record<string, string | undefined>,
): IpfsOptions {
  const usage = "expected ipfs://<root-name>?api=http://127.0.0.1:5001";
  const m = /^ipfs:\/\/([^?#]*)(?:\?([^#]*))?$/i.exec(location);
  if (!m) throw new Error(`invalid IPFS location ${JSON.stringify(location)}: ${usage}`);
  let names: string[];
  try {
    names = m[1].split("/").filter((c) => c !== "").map(decodeURIComponent);
  } catch {
    throw new Error(`invalid IPFS location ${JSON.stringify(location)}: bad %-escape`);
  }
  if (names.length === 0) {
    throw new Error(`IPFS location ${JSON.stringify(location)} has no root name: ${usage}`);
  }
  for (const c of names) {
    // deno-lint-ignore no-control-regex
    if (c === "." || c === ".." || c.includes("/") || /[\x00-\x1f]/.test(c)) {
      throw new Error(
        `invalid IPFS location ${JSON.stringify(location)}: bad root name component ${
          JSON.stringify(c)
        }`,
      );
    }
  }
  const query = new URLSearchParams(m[2] ?? "");
  for (const k of query.keys()) {
    if (k !== "api") {
      throw new Error(
        `invalid IPFS location ${JSON.stringify(location)}: unknown parameter "${k}" (only api=)`,
      );
    }
  }
  let value = query.get("api");
  let from = "the location's api=";
  if (value === null || value === "") {
    if (env.N2S_IPFS_API) [value, from] = [env.N2S_IPFS_API, "N2S_IPFS_API"];
    else if (env.IPFS_API) [value, from] = [env.IPFS_API, "IPFS_API"];
    else [value, from] = [DEFAULT_API, "the default"];
  }
  const { api, authorization } = apiBase(value, from);
  return { api, root: names.join("/"), authorization };
}
