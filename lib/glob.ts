// Glob patterns for --include, --exclude, find and pull: `*` and `?` stay within one path
// component, `**` crosses components, `[...]` is a character class. A pattern without "/" matches
// a name at any depth; a pattern with "/" matches the whole relative path (a leading "/" anchors
// it at the root). Matching ignores Unicode normalization (NFC/NFD), so a name typed on one
// system finds the same name stored by another; stored paths keep their bytes. A byte that is
// not UTF-8 is written `\xHH`, as n2s prints such names (lib/format/names.ts).

/** A compiled glob. */
export interface Glob {
  readonly pattern: string;
  /** True when the relative path (or, for patterns without "/", its last component) matches. */
  matches(path: string): boolean;
}

/** The character a byte stands for in a path string: ASCII, or the lone surrogate of a raw byte. */
function byteChar(b: number): string {
  return String.fromCharCode(b < 0x80 ? b : 0xdc00 + b);
}

/** A plain path argument with `\xHH` (a byte) and `\\` (a backslash) as n2s prints them. */
export function unescapePath(s: string): string {
  return s.replace(
    /\\(x[0-9a-fA-F]{2}|\\)/g,
    (_, e: string) => e === "\\" ? "\\" : byteChar(parseInt(e.slice(1), 16)),
  );
}

function escapeRe(c: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(c) ? `\\${c}` : c;
}

function toRegExp(p: string): RegExp {
  let re = "";
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === "*") {
      if (p[i + 1] === "*") {
        i++;
        if (p[i + 1] === "/") {
          i++;
          re += "(?:.*/)?";
        } else re += ".*";
      } else re += "[^/]*";
    } else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = p.indexOf("]", i + 2);
      if (end < 0) {
        re += "\\[";
        continue;
      }
      let body = p.slice(i + 1, end);
      const neg = body.startsWith("!") || body.startsWith("^");
      if (neg) body = body.slice(1);
      body = body.replace(/\\/g, "\\\\").replace(/\]/g, "\\]");
      re += neg ? `[^/${body}]` : `[${body}]`;
      i = end;
    } else if (c === "\\" && /^x[0-9a-fA-F]{2}/.test(p.slice(i + 1, i + 4))) {
      re += escapeRe(byteChar(parseInt(p.slice(i + 2, i + 4), 16)));
      i += 3;
    } else if (c === "\\" && i + 1 < p.length) {
      re += escapeRe(p[++i]);
    } else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`, "s");
}

/** Compiles a glob pattern. A trailing "/" is ignored (directories are matched by name too). */
export function compileGlob(pattern: string): Glob {
  let p = pattern.endsWith("/") && pattern.length > 1 ? pattern.slice(0, -1) : pattern;
  const anchored = p.includes("/");
  if (p.startsWith("/")) p = p.slice(1);
  const re = toRegExp(p.normalize("NFC"));
  return {
    pattern,
    matches(raw: string): boolean {
      const path = raw.normalize("NFC");
      if (anchored) return re.test(path);
      const i = path.lastIndexOf("/");
      return re.test(i >= 0 ? path.slice(i + 1) : path);
    },
  };
}

/** True when any glob matches. */
export function anyMatch(globs: readonly Glob[], path: string): boolean {
  for (const g of globs) if (g.matches(path)) return true;
  return false;
}

/** True when the string contains glob syntax. */
export function isGlob(s: string): boolean {
  return /[*?[]/.test(s);
}

/**
 * A predicate for path arguments (pull, find): a glob as above; a plain path matches itself and
 * everything under it.
 */
export function pathMatcher(patterns: readonly string[]): (path: string) => boolean {
  if (patterns.length === 0) return () => true;
  const tests = patterns.map((p) => {
    const clean = p.replace(/^\.\//, "").replace(/(.)\/+$/, "$1");
    if (isGlob(clean)) {
      const g = compileGlob(clean);
      return (path: string) => g.matches(path);
    }
    const n = unescapePath(clean.replace(/^\//, "")).normalize("NFC");
    return (path: string) => {
      const q = path.normalize("NFC");
      return q === n || q.startsWith(n + "/");
    };
  });
  return (path) => tests.some((t) => t(path));
}

/** The patterns (as pathMatcher reads them) that match none of `paths`, in the order given. */
export function unmatchedPatterns(patterns: readonly string[], paths: Iterable<string>): string[] {
  const tests = patterns.map((p) => ({ p, match: pathMatcher([p]), hit: false }));
  let left = tests.length;
  for (const path of paths) {
    if (left === 0) break;
    for (const t of tests) {
      if (!t.hit && t.match(path)) {
        t.hit = true;
        left--;
      }
    }
  }
  return tests.filter((t) => !t.hit).map((t) => t.p);
}

/** The error for patterns that match nothing: it names each of them. */
export function noMatchError(unmatched: readonly string[], where: string): Error {
  const names = unmatched.map((p) => `"${p}"`).join(", ");
  return new Error(
    `${unmatched.length === 1 ? "pattern" : "patterns"} ${names} ${
      unmatched.length === 1 ? "matches" : "match"
    } nothing in ${where}`,
  );
}
