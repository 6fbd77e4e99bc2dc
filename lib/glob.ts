// Glob patterns over POSIX paths: `*` and `?` stay within one path component, `**` spans any
// number of components, `[abc]`/`[!a-z]` are classes. Matching ignores Unicode normalization
// differences (NFC/NFD), so a name typed on one system finds the same name stored by another.

/** Compiles a glob to a predicate over relative paths. */
export function compileGlob(pattern: string): (path: string) => boolean {
  const re = globToRegExp(pattern.normalize("NFC"));
  return (path) => re.test(path.normalize("NFC"));
}

/** True when the string contains glob syntax. */
export function isGlob(s: string): boolean {
  return /[*?[]/.test(s);
}

function globToRegExp(glob: string): RegExp {
  let re = "^";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*") {
      if (glob[i + 1] === "*") {
        const slash = glob[i + 2] === "/";
        re += slash ? "(?:.*/)?" : ".*";
        i += slash ? 2 : 1;
      } else {
        re += "[^/]*";
      }
    } else if (c === "?") {
      re += "[^/]";
    } else if (c === "[") {
      const end = glob.indexOf("]", i + 2);
      if (end < 0) {
        re += "\\[";
      } else {
        let body = glob.slice(i + 1, end);
        if (body.startsWith("!")) body = "^" + body.slice(1);
        re += "[" + body.replace(/\\/g, "\\\\") + "]";
        i = end;
      }
    } else {
      re += c.replace(/[.+^${}()|\\\]]/g, "\\$&");
    }
  }
  return new RegExp(re + "$", "s");
}

/**
 * A predicate for path arguments: a glob matches whole paths; a plain path matches itself and
 * everything under it.
 */
export function pathMatcher(patterns: readonly string[]): (path: string) => boolean {
  if (patterns.length === 0) return () => true;
  const tests = patterns.map((p) => {
    const clean = p.replace(/^\.\//, "").replace(/\/+$/, "");
    if (isGlob(clean)) return compileGlob(clean);
    const n = clean.normalize("NFC");
    return (path: string) => {
      const q = path.normalize("NFC");
      return q === n || q.startsWith(n + "/");
    };
  });
  return (path) => tests.some((t) => t(path));
}
