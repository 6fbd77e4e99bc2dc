// Where n2s keeps things on this machine when the user says nothing: the XDG data and config
// directories (~/.local/share/n2s, ~/.config/n2s).

import { join } from "node:path";

function home(): string {
  const h = Deno.env.get("HOME");
  if (!h) throw new Error("HOME is not set; give --repo and --index explicitly");
  return h;
}

/** $XDG_DATA_HOME/n2s or ~/.local/share/n2s. */
export function dataDir(): string {
  return join(Deno.env.get("XDG_DATA_HOME") || join(home(), ".local", "share"), "n2s");
}

/** $XDG_CONFIG_HOME/n2s/config.json or ~/.config/n2s/config.json, unless N2S_CONFIG names one. */
export function configFile(): string {
  return Deno.env.get("N2S_CONFIG") ||
    join(Deno.env.get("XDG_CONFIG_HOME") || join(home(), ".config"), "n2s", "config.json");
}

/** The embedded default repository location. */
export function defaultRepository(): string {
  return join(dataDir(), "repository");
}

/** The default index file of a repository: one SQLite file per repository id. */
export function defaultIndexPath(repositoryId: string): string {
  return join(dataDir(), "index", `${repositoryId}.sqlite`);
}

/** The user's configuration file, parsed ({} when absent). */
export function readUserConfig(): { repository?: string; index?: string } {
  try {
    return JSON.parse(Deno.readTextFileSync(configFile()));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return {};
    throw new Error(`${configFile()}: ${e instanceof Error ? e.message : e}; fix or remove it`);
  }
}
