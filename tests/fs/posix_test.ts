// lib/fs/posix.ts on real files in temporary directories under /tmp, as root (chown, mknod,
// trusted.* xattrs); nothing outside those directories is touched.

import assert from "node:assert/strict";
import { displayPath, pathBytes, pathText } from "../../lib/format/names.ts";
import {
  _shrinkBuffers,
  _statBackend,
  _useReaddir,
  closeFd,
  dataRanges,
  fchmodatRaw,
  fstatRaw,
  fsyncFd,
  ftruncateFd,
  futimensFd,
  geteuid,
  getXattr,
  gidOf,
  groupName,
  lchownRaw,
  linkRaw,
  listXattrs,
  lstatRaw,
  major,
  makedev,
  minor,
  mkdirRaw,
  mkfifoRaw,
  mknodRaw,
  openRaw,
  posixAvailable,
  PosixError,
  type RawStat,
  readDirRaw,
  readFd,
  readlinkRaw,
  removeXattr,
  renameRaw,
  rmdirRaw,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  seekData,
  seekHole,
  setXattr,
  symlinkRaw,
  uidOf,
  unlinkRaw,
  userName,
  utimensRaw,
  writeFd,
} from "../../lib/fs/posix.ts";

const raw = (...bytes: (number | string)[]): string =>
  pathText(
    Uint8Array.from(
      bytes.flatMap((b) => typeof b === "number" ? [b] : [...new TextEncoder().encode(b)]),
    ),
  );

/** Names that Deno's own APIs cannot carry, and a few that are merely awkward. */
const NAMES = [
  raw("caf", 0xe9), // Latin-1 "café"
  raw("d", 0xff),
  raw(0xed, 0xa0, 0x80, "cesu"), // an encoded surrogate
  raw(0xc0, 0xaf, "overlong"),
  raw("trunc", 0xe2, 0x82),
  raw(0xdc, 0x80), // bytes that are not U+DC80 (which would be ED B2 80)
  "line\nbreak",
  "back\\slash",
  "tab\there",
  "\x1b[31mred",
  "café", // NFC
  "cafe\u0301", // NFD: a different name
  "😀",
  "x".repeat(255), // NAME_MAX
];

function tempDir(): { path: string } & Disposable {
  const path = Deno.makeTempDirSync({ dir: "/tmp", prefix: "n2s-posix-" });
  return {
    path,
    [Symbol.dispose]() {
      try {
        removeTree(path);
      } finally {
        try {
          Deno.removeSync(path, { recursive: true });
        } catch {
          // removed above
        }
      }
    },
  };
}

/** Removes a tree with the layer itself (names Deno cannot express included). */
function removeTree(path: string): void {
  if ((lstatRaw(path).mode & S_IFMT) === S_IFDIR) {
    for (const e of readDirRaw(path)) removeTree(`${path}/${e.name}`);
    rmdirRaw(path);
  } else {
    unlinkRaw(path);
  }
}

function writeFile(path: string, data: Uint8Array | string, mode = 0o644): void {
  const fd = openRaw(path, "write-new", mode);
  try {
    writeFd(fd, typeof data === "string" ? new TextEncoder().encode(data) : data);
  } finally {
    closeFd(fd);
  }
}

function readAll(path: string): Uint8Array {
  const fd = openRaw(path, "read");
  try {
    const chunks: Uint8Array[] = [];
    for (;;) {
      const buf = new Uint8Array(7); // small, to loop
      const n = readFd(fd, buf);
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
    }
    return Uint8Array.from(chunks.flatMap((c) => [...c]));
  } finally {
    closeFd(fd);
  }
}

/**
 * The names `depth` levels below `dir` (a UTF-8 path) as find(1) prints them, raw bytes and all:
 * a check independent of this layer.
 */
async function findNames(dir: string, depth: number): Promise<string[]> {
  const d = String(depth);
  const out = await new Deno.Command("find", {
    args: [dir, "-mindepth", d, "-maxdepth", d, "-printf", "%f\\0"],
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const names: string[] = [];
  let start = 0;
  for (let i = 0; i < out.stdout.length; i++) {
    if (out.stdout[i] === 0) {
      names.push(pathText(out.stdout.subarray(start, i)));
      start = i + 1;
    }
  }
  return names.sort();
}

function throwsPosix(f: () => unknown, code: string, call: string, path?: string): PosixError {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof PosixError, `not a PosixError: ${e}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e.call, call, e.message);
    assert.ok(e.message.startsWith(`${call} `), e.message);
    assert.ok(e.message.endsWith(`(${code})`), e.message);
    if (path !== undefined) {
      assert.ok(e.message.includes(`"${displayPath(path)}"`), e.message);
    }
    return e;
  }
  assert.fail(`expected ${code} from ${call}`);
}

const sorted = (a: string[]) => [...a].sort();

Deno.test("posixAvailable: Linux, FFI granted, glibc loads", () => {
  assert.equal(posixAvailable(), true);
  assert.equal(geteuid(), Deno.uid());
  assert.equal(geteuid(), 0, "these tests run as root");
});

Deno.test("raw names: created, listed, renamed and removed exactly", async () => {
  using tmp = tempDir();
  const top = `${tmp.path}/${raw("dir", 0xe9)}`;
  mkdirRaw(top, 0o755);
  for (const [i, name] of NAMES.entries()) {
    if (i % 3 === 0) mkdirRaw(`${top}/${name}`, 0o700);
    else if (i % 3 === 1) writeFile(`${top}/${name}`, pathBytes(name));
    else symlinkRaw(name, `${top}/${name}`);
  }
  const entries = readDirRaw(top);
  assert.deepEqual(sorted(entries.map((e) => e.name)), sorted(NAMES));
  assert.deepEqual(await findNames(tmp.path, 2), sorted(NAMES));
  for (const e of entries) {
    const i = NAMES.indexOf(e.name);
    assert.equal(e.type, ["dir", "file", "symlink"][i % 3], displayPath(e.name));
    assert.equal(e.ino, lstatRaw(`${top}/${e.name}`).ino);
  }
  // Contents and targets come back exactly.
  for (const [i, name] of NAMES.entries()) {
    if (i % 3 === 1) assert.deepEqual(readAll(`${top}/${name}`), pathBytes(name));
    if (i % 3 === 2) assert.equal(readlinkRaw(`${top}/${name}`), name);
  }
  // Deno's own listing replaces the bytes: the reason for this layer.
  const lossy = [...Deno.readDirSync(`${tmp.path}`)].map((e) => e.name);
  assert.deepEqual(lossy, ["dir\ufffd"]);
  // The readdir64 fallback lists the same.
  _useReaddir(true);
  try {
    assert.deepEqual(readDirRaw(top), entries);
  } finally {
    _useReaddir(false);
  }
  // One raw byte more, or instead of the first character where the name is NAME_MAX long.
  const renamed = (n: string) => n.length === 255 ? raw(0xfe) + n.slice(1) : n + raw(0xfe);
  for (const name of NAMES) renameRaw(`${top}/${name}`, `${top}/${renamed(name)}`);
  assert.deepEqual(sorted(readDirRaw(top).map((e) => e.name)), sorted(NAMES.map(renamed)));
  for (const [i, name] of NAMES.entries()) {
    const p = `${top}/${renamed(name)}`;
    if (i % 3 === 0) rmdirRaw(p);
    else unlinkRaw(p);
  }
  assert.deepEqual(readDirRaw(top), []);
  rmdirRaw(top);
  assert.deepEqual(readDirRaw(tmp.path), []);
});

Deno.test("readDirRaw: a large directory takes several getdents64 calls, same as readdir64", () => {
  using tmp = tempDir();
  const names: string[] = [];
  for (let i = 0; i < 3000; i++) {
    // About 90 bytes a record: 3000 of them need more than one 128 KiB buffer.
    const name = `${String(i).padStart(5, "0")}-${"n".repeat(60)}${raw(0x80 + (i % 128))}`;
    names.push(name);
    mknodRaw(`${tmp.path}/${name}`, S_IFREG | 0o600, 0n);
  }
  const a = readDirRaw(tmp.path);
  assert.deepEqual(sorted(a.map((e) => e.name)), sorted(names));
  assert.ok(a.every((e) => e.type === "file"));
  _useReaddir(true);
  try {
    assert.deepEqual(readDirRaw(tmp.path), a);
  } finally {
    _useReaddir(false);
  }
});

Deno.test("readDirRaw: a symlink to a directory is not followed", () => {
  using tmp = tempDir();
  mkdirRaw(`${tmp.path}/d`, 0o755);
  symlinkRaw("d", `${tmp.path}/l`);
  throwsPosix(() => readDirRaw(`${tmp.path}/l`), "ENOTDIR", "opendir", `${tmp.path}/l`);
  assert.deepEqual(readDirRaw(`${tmp.path}/d`), []);
});

function checkAgainstDeno(path: string): RawStat {
  const mine = lstatRaw(path);
  const deno = Deno.lstatSync(path);
  assert.equal(mine.dev, BigInt(deno.dev));
  assert.equal(mine.ino, BigInt(deno.ino!));
  assert.equal(mine.mode, deno.mode);
  assert.equal(mine.nlink, deno.nlink);
  assert.equal(mine.uid, deno.uid);
  assert.equal(mine.gid, deno.gid);
  assert.equal(mine.rdev, BigInt(deno.rdev!));
  assert.equal(mine.size, deno.size);
  assert.equal(mine.blocks, deno.blocks);
  assert.equal(mine.blksize, deno.blksize);
  assert.equal(Number(mine.mtimeNs / 1_000_000n), deno.mtime!.getTime());
  assert.equal(Number(mine.atimeNs / 1_000_000n), deno.atime!.getTime());
  return mine;
}

Deno.test("lstatRaw agrees with Deno.lstatSync; fstatRaw and the fstatat fallback agree too", () => {
  using tmp = tempDir();
  const file = `${tmp.path}/file.txt`;
  writeFile(file, "x".repeat(10_000), 0o640);
  mkdirRaw(`${tmp.path}/dir`, 0o751);
  symlinkRaw("file.txt", `${tmp.path}/link`);
  mknodRaw(`${tmp.path}/null`, S_IFCHR | 0o600, makedev(1, 3));
  mknodRaw(`${tmp.path}/loop`, S_IFBLK | 0o600, makedev(7, 1234));
  mknodRaw(`${tmp.path}/wide`, S_IFCHR | 0o600, makedev(4095, 0xfffff)); // the widest numbers
  mkfifoRaw(`${tmp.path}/fifo`, 0o600);
  const f = checkAgainstDeno(file);
  assert.equal(f.mode, S_IFREG | 0o640);
  assert.equal(f.size, 10_000);
  assert.equal(f.nlink, 1);
  const d = checkAgainstDeno(`${tmp.path}/dir`);
  assert.equal(d.mode, S_IFDIR | 0o751);
  assert.equal(d.nlink, 2);
  const l = checkAgainstDeno(`${tmp.path}/link`);
  assert.equal(l.mode & S_IFMT, S_IFLNK);
  assert.equal(l.size, "file.txt".length);
  assert.notEqual(l.ino, f.ino);
  assert.equal(checkAgainstDeno(`${tmp.path}/null`).rdev, makedev(1, 3));
  assert.equal(checkAgainstDeno(`${tmp.path}/loop`).rdev, makedev(7, 1234));
  assert.equal(checkAgainstDeno(`${tmp.path}/wide`).rdev, makedev(4095, 0xfffff));
  checkAgainstDeno(`${tmp.path}/fifo`);
  const fd = openRaw(file, "read");
  try {
    assert.deepEqual(fstatRaw(fd), lstatRaw(file));
  } finally {
    closeFd(fd);
  }
  const paths = ["file.txt", "dir", "link", "null", "loop", "wide", "fifo"].map((n) =>
    `${tmp.path}/${n}`
  );
  const viaStatx = paths.map(lstatRaw);
  const fd2 = openRaw(file, "read");
  const fstatx = fstatRaw(fd2);
  assert.equal(_statBackend(), "statx");
  _statBackend("fstatat");
  try {
    assert.deepEqual(paths.map(lstatRaw), viaStatx);
    assert.deepEqual(fstatRaw(fd2), fstatx);
    throwsPosix(() => lstatRaw(`${tmp.path}/missing`), "ENOENT", "lstat");
  } finally {
    _statBackend("statx");
    closeFd(fd2);
  }
});

Deno.test("makedev, major and minor agree with glibc's gnu_dev_* functions", () => {
  const glibc = Deno.dlopen("libc.so.6", {
    gnu_dev_makedev: { parameters: ["u32", "u32"], result: "u64" },
    gnu_dev_major: { parameters: ["u64"], result: "u32" },
    gnu_dev_minor: { parameters: ["u64"], result: "u32" },
  });
  try {
    const c = glibc.symbols;
    assert.equal(makedev(1, 3), 0x103n);
    const cases = [[0, 0], [1, 3], [8, 17], [259, 65536], [0x12345, 0x6789a], [4096, 256]];
    cases.push([0xfff, 0xfffff], [0xfffff, 0xffffffff]);
    for (const [ma, mi] of cases) {
      const dev = makedev(ma, mi);
      assert.equal(dev, c.gnu_dev_makedev(ma, mi), `${ma},${mi}`);
      assert.equal(major(dev), c.gnu_dev_major(dev));
      assert.equal(minor(dev), c.gnu_dev_minor(dev));
      assert.equal(major(dev), ma);
      assert.equal(minor(dev), mi);
    }
  } finally {
    glibc.close();
  }
});

Deno.test("readlinkRaw: raw and long targets, growing its buffer", () => {
  using tmp = tempDir();
  _shrinkBuffers();
  const target = raw("../caf", 0xe9, "/", 0xff, 0xfe, "\n");
  symlinkRaw(target, `${tmp.path}/${raw(0xff)}`);
  assert.equal(readlinkRaw(`${tmp.path}/${raw(0xff)}`), target);
  const long = `${"a/".repeat(2000)}${raw(0x80)}`; // 4001 bytes
  symlinkRaw(long, `${tmp.path}/long`);
  assert.equal(readlinkRaw(`${tmp.path}/long`), long);
  assert.equal(lstatRaw(`${tmp.path}/long`).size, 4001);
  writeFile(`${tmp.path}/plain`, "");
  throwsPosix(() => readlinkRaw(`${tmp.path}/plain`), "EINVAL", "readlink", `${tmp.path}/plain`);
});

Deno.test("linkRaw: hard links share the inode; a symlink is linked itself", () => {
  using tmp = tempDir();
  const a = `${tmp.path}/${raw("a", 0xe9)}`;
  writeFile(a, "content");
  linkRaw(a, `${tmp.path}/b`);
  const sa = lstatRaw(a);
  const sb = lstatRaw(`${tmp.path}/b`);
  assert.equal(sa.nlink, 2);
  assert.equal(sb.ino, sa.ino);
  assert.equal(sb.nlink, 2);
  symlinkRaw(raw("a", 0xe9), `${tmp.path}/s`);
  linkRaw(`${tmp.path}/s`, `${tmp.path}/s2`);
  const s2 = lstatRaw(`${tmp.path}/s2`);
  assert.equal(s2.mode & S_IFMT, S_IFLNK);
  assert.equal(s2.ino, lstatRaw(`${tmp.path}/s`).ino);
  assert.equal(lstatRaw(a).nlink, 2);
  throwsPosix(() => linkRaw(a, `${tmp.path}/b`), "EEXIST", "link", `${tmp.path}/b`);
});

Deno.test("xattrs: user.* and trusted.* set, listed, read and removed, never through links", () => {
  using tmp = tempDir();
  _shrinkBuffers();
  const f = `${tmp.path}/${raw("x", 0xe9)}`;
  writeFile(f, "");
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const big = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff);
  setXattr(f, "user.bytes", all);
  setXattr(f, "user.empty", new Uint8Array(0));
  setXattr(f, "trusted.big", big);
  const rawName = `user.${raw("n", 0xe9)}`;
  setXattr(f, rawName, Uint8Array.of(1));
  assert.deepEqual(
    sorted(listXattrs(f)),
    sorted(["user.bytes", "user.empty", "trusted.big", rawName]),
  );
  assert.deepEqual(getXattr(f, "user.bytes"), all);
  assert.deepEqual(getXattr(f, "user.empty"), new Uint8Array(0));
  assert.deepEqual(getXattr(f, "trusted.big"), big);
  assert.deepEqual(getXattr(f, rawName), Uint8Array.of(1));
  setXattr(f, "user.bytes", Uint8Array.of(9)); // replaced
  assert.deepEqual(getXattr(f, "user.bytes"), Uint8Array.of(9));
  removeXattr(f, "user.bytes");
  removeXattr(f, rawName);
  assert.deepEqual(sorted(listXattrs(f)), ["trusted.big", "user.empty"]);
  throwsPosix(() => getXattr(f, "user.bytes"), "ENODATA", "lgetxattr", f);
  throwsPosix(() => removeXattr(f, "user.bytes"), "ENODATA", "lremovexattr", f);
  // On a symlink: trusted.* lands on the link, and the target is untouched.
  symlinkRaw(raw("x", 0xe9), `${tmp.path}/link`);
  setXattr(`${tmp.path}/link`, "trusted.onlink", Uint8Array.of(2));
  assert.deepEqual(listXattrs(`${tmp.path}/link`), ["trusted.onlink"]);
  assert.deepEqual(getXattr(`${tmp.path}/link`, "trusted.onlink"), Uint8Array.of(2));
  assert.deepEqual(sorted(listXattrs(f)), ["trusted.big", "user.empty"]);
  // Linux allows no user.* attributes on symlinks.
  throwsPosix(() => setXattr(`${tmp.path}/link`, "user.a", Uint8Array.of(1)), "EPERM", "lsetxattr");
  const empty = `${tmp.path}/empty`;
  writeFile(empty, "");
  assert.deepEqual(listXattrs(empty), []);
});

Deno.test("lchownRaw: owner and group of the file itself, links not followed", () => {
  using tmp = tempDir();
  const f = `${tmp.path}/${raw("o", 0xff)}`;
  writeFile(f, "x");
  lchownRaw(f, 12345, 23456);
  let s = lstatRaw(f);
  assert.equal(s.uid, 12345);
  assert.equal(s.gid, 23456);
  lchownRaw(f, -1, 34567); // -1 keeps the uid
  s = lstatRaw(f);
  assert.equal(s.uid, 12345);
  assert.equal(s.gid, 34567);
  symlinkRaw(raw("o", 0xff), `${tmp.path}/l`);
  lchownRaw(`${tmp.path}/l`, 4242, 4343);
  const l = lstatRaw(`${tmp.path}/l`);
  assert.equal(l.uid, 4242);
  assert.equal(l.gid, 4343);
  assert.equal(lstatRaw(f).uid, 12345);
  throwsPosix(() => lchownRaw(`${tmp.path}/nope`, 1, 1), "ENOENT", "lchown", `${tmp.path}/nope`);
});

Deno.test("fchmodatRaw: modes on files and directories; a symlink is refused", () => {
  using tmp = tempDir();
  const f = `${tmp.path}/f`;
  writeFile(f, "x", 0o600);
  fchmodatRaw(f, 0o4755);
  assert.equal(lstatRaw(f).mode, S_IFREG | 0o4755);
  mkdirRaw(`${tmp.path}/d`, 0o700);
  fchmodatRaw(`${tmp.path}/d`, 0o1777);
  assert.equal(lstatRaw(`${tmp.path}/d`).mode, S_IFDIR | 0o1777);
  symlinkRaw("f", `${tmp.path}/l`);
  throwsPosix(() => fchmodatRaw(`${tmp.path}/l`, 0o600), "ENOTSUP", "chmod", `${tmp.path}/l`);
  assert.equal(lstatRaw(f).mode, S_IFREG | 0o4755);
});

Deno.test("mkfifoRaw and mknodRaw: FIFOs and device nodes; a FIFO opens without hanging", () => {
  using tmp = tempDir();
  mkfifoRaw(`${tmp.path}/${raw("fifo", 0xe9)}`, 0o640);
  mknodRaw(`${tmp.path}/fifo2`, S_IFIFO | 0o600, 0n);
  mknodRaw(`${tmp.path}/null`, S_IFCHR | 0o666, makedev(1, 3));
  mknodRaw(`${tmp.path}/blk`, S_IFBLK | 0o600, makedev(259, 70000));
  const types = Object.fromEntries(readDirRaw(tmp.path).map((e) => [e.name, e.type]));
  assert.deepEqual(types, {
    [raw("fifo", 0xe9)]: "fifo",
    fifo2: "fifo",
    null: "char",
    blk: "block",
  });
  assert.equal(lstatRaw(`${tmp.path}/${raw("fifo", 0xe9)}`).mode, S_IFIFO | 0o640);
  const n = lstatRaw(`${tmp.path}/null`);
  assert.equal(n.mode & S_IFMT, S_IFCHR);
  assert.equal([major(n.rdev), minor(n.rdev)].join(), "1,3");
  const b = lstatRaw(`${tmp.path}/blk`);
  assert.equal(b.mode, S_IFBLK | 0o600);
  assert.equal([major(b.rdev), minor(b.rdev)].join(), "259,70000");
  // "read" is non-blocking: a FIFO without writer opens at once and reads as empty.
  const fd = openRaw(`${tmp.path}/fifo2`, "read");
  try {
    assert.equal(readFd(fd, new Uint8Array(8)), 0);
  } finally {
    closeFd(fd);
  }
  throwsPosix(() => mkfifoRaw(`${tmp.path}/fifo2`, 0o600), "EEXIST", "mkfifo", `${tmp.path}/fifo2`);
});

/** Access and modification times as GNU stat prints them, following a symlink. */
async function statTimes(path: string): Promise<string> {
  const out = await new Deno.Command("stat", { args: ["-L", "-c", "%.9X %.9Y", path] }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).trim();
}

Deno.test("utimensRaw and futimensFd: nanosecond times, before 1970 too, links themselves", async () => {
  using tmp = tempDir();
  const f = `${tmp.path}/${raw("t", 0xe9)}`;
  writeFile(f, "x");
  utimensRaw(f, 1_000_000_001_000_000_001n, 1_234_567_890_123_456_789n);
  let s = lstatRaw(f);
  assert.equal(s.atimeNs, 1_000_000_001_000_000_001n);
  assert.equal(s.mtimeNs, 1_234_567_890_123_456_789n);
  utimensRaw(f, null, -1_500_000_001n); // 1969-12-31T23:59:58.499999999Z; atime kept
  s = lstatRaw(f);
  assert.equal(s.atimeNs, 1_000_000_001_000_000_001n);
  assert.equal(s.mtimeNs, -1_500_000_001n);
  // GNU stat agrees, through a link with a UTF-8 name (its arguments cannot carry raw bytes).
  symlinkRaw(f, `${tmp.path}/utf8`);
  assert.equal(await statTimes(`${tmp.path}/utf8`), "1000000001.000000001 -1.500000001");
  symlinkRaw(raw("t", 0xe9), `${tmp.path}/l`);
  utimensRaw(`${tmp.path}/l`, 5n, 7_000_000_007n);
  assert.equal(lstatRaw(`${tmp.path}/l`).mtimeNs, 7_000_000_007n);
  assert.equal(lstatRaw(`${tmp.path}/l`).atimeNs, 5n);
  assert.equal(lstatRaw(f).mtimeNs, -1_500_000_001n);
  utimensRaw(`${tmp.path}/l`, 11n, 22n, false); // through the link, to the file
  assert.equal(lstatRaw(f).mtimeNs, 22n);
  assert.equal(lstatRaw(`${tmp.path}/l`).mtimeNs, 7_000_000_007n);
  const fd = openRaw(f, "write-trunc");
  try {
    writeFd(fd, Uint8Array.of(1, 2, 3));
    futimensFd(fd, 3n, 1_700_000_000_999_999_999n);
  } finally {
    closeFd(fd);
  }
  assert.equal(lstatRaw(f).mtimeNs, 1_700_000_000_999_999_999n);
  assert.equal(lstatRaw(f).atimeNs, 3n);
  const dfd = openRaw(tmp.path, "dir");
  try {
    futimensFd(dfd, 1n, 2n);
    fsyncFd(dfd);
  } finally {
    closeFd(dfd);
  }
  assert.equal(lstatRaw(tmp.path).mtimeNs, 2n);
});

Deno.test("files: read, pread, write, pwrite, truncate, fsync, and the open modes", () => {
  using tmp = tempDir();
  const f = `${tmp.path}/${raw("f", 0x80)}`;
  writeFile(f, "hello world", 0o600);
  throwsPosix(() => openRaw(f, "write-new"), "EEXIST", "open", f);
  assert.equal(new TextDecoder().decode(readAll(f)), "hello world");
  let fd = openRaw(f, "read");
  try {
    const buf = new Uint8Array(5);
    assert.equal(readFd(fd, buf, 6), 5);
    assert.equal(new TextDecoder().decode(buf), "world");
    assert.equal(readFd(fd, buf), 5); // the file offset did not move
    assert.equal(new TextDecoder().decode(buf), "hello");
    assert.equal(readFd(fd, buf, 100), 0);
  } finally {
    closeFd(fd);
  }
  fd = openRaw(f, "write-trunc");
  try {
    assert.equal(fstatRaw(fd).size, 0);
    writeFd(fd, new TextEncoder().encode("abc"));
    writeFd(fd, new TextEncoder().encode("XY"), 1);
    writeFd(fd, new TextEncoder().encode("--d--").subarray(2, 3)); // the offset is still 3
    ftruncateFd(fd, 6);
    fsyncFd(fd);
  } finally {
    closeFd(fd);
  }
  assert.deepEqual(readAll(f), Uint8Array.of(0x61, 0x58, 0x59, 0x64, 0, 0));
  // Views into larger buffers are read and written at their own offset.
  fd = openRaw(f, "read");
  try {
    const big = new Uint8Array(10);
    assert.equal(readFd(fd, big.subarray(4, 7), 1), 3);
    assert.deepEqual(big, Uint8Array.of(0, 0, 0, 0, 0x58, 0x59, 0x64, 0, 0, 0));
  } finally {
    closeFd(fd);
  }
  // "read" and "write-trunc" refuse a symlink; "write-new" does not replace one.
  symlinkRaw(raw("f", 0x80), `${tmp.path}/l`);
  throwsPosix(() => openRaw(`${tmp.path}/l`, "read"), "ELOOP", "open", `${tmp.path}/l`);
  throwsPosix(() => openRaw(`${tmp.path}/l`, "write-trunc"), "ELOOP", "open");
  throwsPosix(() => openRaw(`${tmp.path}/l`, "write-new"), "EEXIST", "open");
  throwsPosix(() => openRaw(tmp.path, "write-trunc"), "EISDIR", "open", tmp.path);
  // A new file gets the requested mode (this umask allowing).
  const umask = Deno.umask();
  const n = `${tmp.path}/new`;
  closeFd(openRaw(n, "write-new", 0o640));
  assert.equal(lstatRaw(n).mode, S_IFREG | (0o640 & ~umask));
  closeFd(openRaw(`${tmp.path}/default`, "write-new"));
  assert.equal(lstatRaw(`${tmp.path}/default`).mode, S_IFREG | (0o600 & ~umask));
  // A closed descriptor is an EBADF naming it.
  const e = throwsPosix(() => closeFd(fd), "EBADF", "close");
  assert.ok(e.message.includes(`fd ${fd}`), e.message);
  throwsPosix(() => readFd(fd, new Uint8Array(1)), "EBADF", "read");
  throwsPosix(() => fstatRaw(fd), "EBADF", "fstat");
});

Deno.test("sparse files: one byte at 1 GiB is one small data range and few blocks", () => {
  using tmp = tempDir();
  const f = `${tmp.path}/sparse`;
  const GiB = 1 << 30;
  const fd = openRaw(f, "write-new");
  try {
    writeFd(fd, Uint8Array.of(42), GiB);
    const s = fstatRaw(fd);
    assert.equal(s.size, GiB + 1);
    assert.ok(s.blocks <= 64, `${s.blocks} blocks`);
  } finally {
    closeFd(fd);
  }
  const rfd = openRaw(f, "read");
  try {
    const buf = new Uint8Array(3);
    assert.equal(readFd(rfd, buf), 3); // moves the offset to 3
    const ranges = dataRanges(rfd, GiB + 1);
    assert.equal(ranges.length, 1, JSON.stringify(ranges));
    const [[start, end]] = ranges;
    assert.equal(end, GiB + 1);
    assert.ok(start <= GiB && start >= GiB - (1 << 20), `starts at ${start}`);
    assert.equal(readFd(rfd, buf), 3); // dataRanges kept the offset
    assert.deepEqual(buf, new Uint8Array(3));
    assert.equal(seekData(rfd, 0), start);
    assert.equal(seekHole(rfd, 0), 0);
    assert.equal(seekData(rfd, GiB + 1), null);
    const one = new Uint8Array(1);
    assert.equal(readFd(rfd, one, GiB), 1);
    assert.equal(one[0], 42);
  } finally {
    closeFd(rfd);
  }
  // A dense file is one range, an empty one none.
  writeFile(`${tmp.path}/dense`, new Uint8Array(100_000).fill(1));
  writeFile(`${tmp.path}/empty`, "");
  for (const [name, want] of [["dense", [[0, 100_000]]], ["empty", []]] as const) {
    const d = openRaw(`${tmp.path}/${name}`, "read");
    try {
      assert.deepEqual(dataRanges(d, fstatRaw(d).size), want);
    } finally {
      closeFd(d);
    }
  }
});

Deno.test("errors name the call, the path as displayPath shows it, and errno", () => {
  using tmp = tempDir();
  const missing = `${tmp.path}/${raw("no", 0xe9, "\n")}`;
  const e = throwsPosix(() => lstatRaw(missing), "ENOENT", "lstat", missing);
  assert.equal(e.errno, 2);
  assert.equal(
    e.message,
    `lstat "${tmp.path}/no\\xe9\\n": No such file or directory (ENOENT)`,
  );
  mkdirRaw(`${tmp.path}/d`, 0o755);
  writeFile(`${tmp.path}/d/f`, "");
  throwsPosix(() => mkdirRaw(`${tmp.path}/d`, 0o755), "EEXIST", "mkdir", `${tmp.path}/d`);
  throwsPosix(() => rmdirRaw(`${tmp.path}/d`), "ENOTEMPTY", "rmdir", `${tmp.path}/d`);
  throwsPosix(() => unlinkRaw(`${tmp.path}/d`), "EISDIR", "unlink", `${tmp.path}/d`);
  throwsPosix(() => lstatRaw(`${tmp.path}/d/f/x`), "ENOTDIR", "lstat");
  throwsPosix(() => readDirRaw(`${tmp.path}/d/f`), "ENOTDIR", "opendir");
  throwsPosix(() => lstatRaw(`${tmp.path}/${"n".repeat(256)}`), "ENAMETOOLONG", "lstat");
  const r = throwsPosix(() => renameRaw(missing, `${tmp.path}/to`), "ENOENT", "rename", missing);
  assert.ok(r.message.includes(`"${tmp.path}/to"`), r.message);
  throwsPosix(() => renameRaw(`${tmp.path}/d`, `${tmp.path}/d/f/sub`), "ENOTDIR", "rename");
});

Deno.test("every call refuses a path or name holding NUL, or a surrogate that is no byte", () => {
  using tmp = tempDir();
  const ok = `${tmp.path}/f`;
  writeFile(ok, "");
  const calls: [string, (bad: string) => unknown][] = [
    ["opendir", (p) => readDirRaw(p)],
    ["lstat", (p) => lstatRaw(p)],
    ["readlink", (p) => readlinkRaw(p)],
    ["open", (p) => openRaw(p, "read")],
    ["open", (p) => openRaw(p, "write-new")],
    ["mkdir", (p) => mkdirRaw(p, 0o755)],
    ["rename", (p) => renameRaw(p, ok)],
    ["rename", (p) => renameRaw(ok, p)],
    ["unlink", (p) => unlinkRaw(p)],
    ["rmdir", (p) => rmdirRaw(p)],
    ["symlink", (p) => symlinkRaw(p, `${tmp.path}/s`)],
    ["symlink", (p) => symlinkRaw("t", p)],
    ["link", (p) => linkRaw(p, `${tmp.path}/h`)],
    ["link", (p) => linkRaw(ok, p)],
    ["mknod", (p) => mknodRaw(p, S_IFIFO | 0o600, 0n)],
    ["mkfifo", (p) => mkfifoRaw(p, 0o600)],
    ["lchown", (p) => lchownRaw(p, 0, 0)],
    ["chmod", (p) => fchmodatRaw(p, 0o600)],
    ["utimensat", (p) => utimensRaw(p, 0n, 0n)],
    ["llistxattr", (p) => listXattrs(p)],
    ["lgetxattr", (p) => getXattr(p, "user.a")],
    ["lgetxattr", (p) => getXattr(ok, `user.${p}`)],
    ["lsetxattr", (p) => setXattr(p, "user.a", Uint8Array.of(1))],
    ["lsetxattr", (p) => setXattr(ok, `user.${p}`, Uint8Array.of(1))],
    ["lremovexattr", (p) => removeXattr(p, "user.a")],
    ["lremovexattr", (p) => removeXattr(ok, `user.${p}`)],
    ["getpwnam_r", (p) => uidOf(p)],
    ["getgrnam_r", (p) => gidOf(p)],
  ];
  for (const [call, f] of calls) {
    const withNul = `${tmp.path}/a\0b`;
    const e = throwsPosix(() => f(withNul), "EINVAL", call);
    assert.match(e.message, /a\\x00b.*cannot hold a NUL byte \(EINVAL\)$/);
    const e2 = throwsPosix(() => f(`${tmp.path}/a\ud800`), "EINVAL", call);
    assert.match(e2.message, /a\\ud800": pathBytes: lone surrogate U\+D800/);
  }
  // Nothing was created or changed by any of them.
  assert.deepEqual(readDirRaw(tmp.path).map((e) => e.name), ["f"]);
  assert.deepEqual(listXattrs(ok), []);
});

Deno.test("users and groups: names and ids both ways, through a growing buffer", () => {
  _shrinkBuffers(); // also empties the caches
  assert.equal(userName(0), "root");
  assert.equal(groupName(0), "root");
  assert.equal(uidOf("root"), 0);
  assert.equal(gidOf("root"), 0);
  assert.equal(userName(3_999_999_999), null);
  assert.equal(groupName(3_999_999_999), null);
  assert.equal(uidOf("no-such-user-n2s"), null);
  assert.equal(gidOf("no-such-group-n2s"), null);
  // Every account in /etc/passwd and /etc/group, as the files say.
  for (
    const [file, byName, byId] of [
      ["/etc/passwd", uidOf, userName],
      ["/etc/group", gidOf, groupName],
    ] as const
  ) {
    const seen = new Set<number>();
    for (const line of Deno.readTextFileSync(file).split("\n")) {
      const [name, , id] = line.split(":");
      if (!name || id === undefined || name.startsWith("+") || name.startsWith("#")) continue;
      assert.equal(byName(name), Number(id), `${file}: ${name}`);
      // The first entry with an id is the one its name comes from.
      if (!seen.has(Number(id))) assert.equal(byId(Number(id)), name, `${file}: ${id}`);
      seen.add(Number(id));
    }
  }
  assert.equal(userName(0), "root"); // cached
});

Deno.test("the layer works in a Worker, which loads its own copy", async () => {
  using tmp = tempDir();
  const names = [raw("w", 0xe9), "plain"];
  writeFile(`${tmp.path}/${names[0]}`, Uint8Array.of(7, 8));
  writeFile(`${tmp.path}/${names[1]}`, "");
  const worker = new Worker(new URL("./posix_worker.ts", import.meta.url), { type: "module" });
  try {
    const reply = new Promise<MessageEvent>((resolve, reject) => {
      worker.onmessage = resolve;
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message));
      };
    });
    worker.postMessage(tmp.path);
    const { data } = await reply;
    assert.equal(data.available, true);
    const got = [...data.out].sort((a, b) => a.name < b.name ? -1 : 1);
    assert.deepEqual(
      got,
      [
        { name: "plain", size: 0, first: -1 },
        { name: raw("w", 0xe9), size: 2, first: 7 },
      ].sort((a, b) => a.name < b.name ? -1 : 1),
    );
  } finally {
    worker.terminate();
  }
});

Deno.test("without the FFI permission: posixAvailable is false and calls say what is missing", async () => {
  using tmp = tempDir();
  const script = `${tmp.path}/no_ffi.ts`;
  Deno.writeTextFileSync(
    script,
    `import { lstatRaw, posixAvailable } from ${
      JSON.stringify(new URL("../../lib/fs/posix.ts", import.meta.url).href)
    };
    console.log(posixAvailable());
    try { lstatRaw("/"); } catch (e) { console.log(e.message); }`,
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--no-config", "--allow-read", script],
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.deepEqual(new TextDecoder().decode(out.stdout).trim().split("\n"), [
    "false",
    "n2s's file system layer needs Linux (x86_64 or aarch64), glibc and the FFI permission " +
    "(--allow-ffi)",
  ]);
});
