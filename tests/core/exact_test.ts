// A restore gives back exactly what was there: names that are not UTF-8 (files, directories,
// link targets), newlines and backslashes in names, empty and private and setgid directories,
// other owners, hard links across directories, user and trusted xattrs, a sparse file, a FIFO
// and a device, nanosecond mtimes. Source and restore are compared by Python's os module, an
// independent reader, field by field; on the local backend and over SFTP, with and without an
// index. And nothing is ever left out in silence: every branch of the walk that cannot store an
// entry names it, and the push exits 1.

import assert from "node:assert/strict";
import { n2s, n2sOk } from "../helpers/cli.ts";
import { tempDir } from "../helpers/fs.ts";
import { startSshd } from "../servers/sshd.ts";

const ENV = { N2S_PASSPHRASE: "pw" };

/** Builds the tree at argv[1] (Python: bytes names, xattrs, chown, mknod, ns times). */
const MAKE_TREE = String.raw`
import os, sys
b = os.fsencode(sys.argv[1])
def p(*parts): return os.path.join(b, *parts)
os.makedirs(p(b'dir\xff', b'sub'))
open(p(b'dir\xff', b'caf\xe9.txt'), 'wb').write(b'a name that is not UTF-8\n')
open(p(b'new\nline.txt'), 'wb').write(b'a newline in the name\n')
open(p(b'back\\slash.txt'), 'wb').write(b'a backslash in the name\n')
os.makedirs(p(b'empty'))
os.makedirs(p(b'private')); os.chmod(p(b'private'), 0o700)
open(p(b'private', b'secret.txt'), 'wb').write(b'secret\n')
os.makedirs(p(b'setgid')); os.chmod(p(b'setgid'), 0o2775)
open(p(b'owned.txt'), 'wb').write(b'owned by another user\n'); os.chown(p(b'owned.txt'), 1234, 5678)
os.makedirs(p(b'owned-dir')); os.chown(p(b'owned-dir'), 4321, 8765)
open(p(b'hl1.txt'), 'wb').write(b'hard link content\n')
os.makedirs(p(b'other'))
os.link(p(b'hl1.txt'), p(b'other', b'hl2.txt'))
os.symlink(b'tar\xe9get', p(b'rawlink'))
os.symlink(b'hl1.txt', p(b'goodlink'))
open(p(b'xattr.txt'), 'wb').write(b'x\n')
os.setxattr(p(b'xattr.txt'), b'user.note', b'hello')
os.setxattr(p(b'xattr.txt'), b'trusted.secret', bytes(range(256)))
os.setxattr(p(b'dir\xff'), b'user.on-a-dir', b'yes')
with open(p(b'sparse.bin'), 'wb') as f:
    f.write(b'start'); f.seek(64 * 1024 * 1024); f.write(b'end')
os.mkfifo(p(b'fifo'))
os.mknod(p(b'null'), 0o20640, os.makedev(1, 3))
os.utime(p(b'owned.txt'), ns=(1, 1700000000123456789))
os.utime(p(b'empty'), ns=(1, 1600000000987654321))
`;

/** Prints every difference between two trees, then "differences: N" (Python's os module). */
const COMPARE = String.raw`
import os, sys, stat, hashlib
def walk(root):
    out = {}
    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            full = os.path.join(dp, n)
            st = os.lstat(full)
            d = dict(mode=oct(st.st_mode), uid=st.st_uid, gid=st.st_gid, mtime=st.st_mtime_ns)
            if not stat.S_ISDIR(st.st_mode): d['nlink'] = st.st_nlink
            if stat.S_ISREG(st.st_mode):
                d['size'] = st.st_size
                d['sha256'] = hashlib.sha256(open(full, 'rb').read()).hexdigest()
                d['sparse'] = st.st_blocks * 512 < st.st_size
            if stat.S_ISLNK(st.st_mode): d['target'] = os.readlink(full)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode): d['rdev'] = st.st_rdev
            d['xattrs'] = sorted((k, os.getxattr(full, k, follow_symlinks=False))
                                 for k in os.listxattr(full, follow_symlinks=False))
            out[os.path.relpath(full, root)] = d
    return out
a, b = walk(os.fsencode(sys.argv[1])), walk(os.fsencode(sys.argv[2]))
bad = 0
for k in sorted(set(a) | set(b)):
    if a.get(k) != b.get(k):
        bad += 1
        print('DIFF', k, '\n  source ', a.get(k), '\n  restore', b.get(k))
hl = b.get(b'hl1.txt'), b.get(os.path.join(b'other', b'hl2.txt'))
same = os.lstat(os.path.join(os.fsencode(sys.argv[2]), b'hl1.txt')).st_ino == \
    os.lstat(os.path.join(os.fsencode(sys.argv[2]), b'other', b'hl2.txt')).st_ino
print('hard links share an inode:', same)
print('entries:', len(a))
print('differences:', bad)
`;

async function python(script: string, ...args: string[]): Promise<string> {
  const r = await new Deno.Command("python3", { args: ["-c", script, ...args] }).output();
  const dec = new TextDecoder();
  if (!r.success) throw new Error(`python3 failed:\n${dec.decode(r.stderr)}`);
  return dec.decode(r.stdout);
}

function assertSame(report: string): void {
  assert.match(report, /differences: 0\n/, report);
  assert.match(report, /hard links share an inode: True/, report);
  assert.match(report, /entries: 2\d\n/, report);
}

async function roundTrip(dir: string, repo: string, env: Record<string, string>): Promise<void> {
  const src = `${dir}/src`;
  await python(MAKE_TREE, src);
  const index = `${dir}/index.sqlite`;
  const args = ["--repo", repo, "--index", index];
  await n2sOk(["init", ...args], { ...ENV, ...env });
  const push = JSON.parse(await n2sOk(["push", src, "--json", ...args], { ...ENV, ...env }));
  assert.deepEqual(push.problems, []);
  // The device and FIFO are entries; nothing was only noted.
  assert.deepEqual(push.notes, []);
  const id = push.changeset;
  for (const [name, ix] of [["with-index", index], ["no-index", `${dir}/fresh.sqlite`]]) {
    const out = `${dir}/${name}`;
    await n2sOk(
      ["pull", "--changeset-id", id, "--target-path", out, "--repo", repo, "--index", ix],
      { ...ENV, ...env },
    );
    assertSame(await python(COMPARE, src, out));
  }
  // Nothing changed: nothing is recorded. A metadata change alone is recorded, not uploaded.
  const again = JSON.parse(await n2sOk(["push", src, "--json", ...args], { ...ENV, ...env }));
  assert.equal(again.changeset, null);
  Deno.chmodSync(`${src}/hl1.txt`, 0o600);
  Deno.chownSync(`${src}/private/secret.txt`, 99, 99);
  const meta = JSON.parse(await n2sOk(["push", src, "--json", ...args], { ...ENV, ...env }));
  assert.equal(meta.uploaded, 0);
  assert.equal(meta.present, 2);
  const out = `${dir}/after-chmod`;
  await n2sOk(
    ["pull", "--changeset-id", meta.changeset, "--target-path", out, ...args],
    { ...ENV, ...env },
  );
  assertSame(await python(COMPARE, src, out));
}

Deno.test("an exotic tree round-trips exactly on the local backend, with and without an index", async () => {
  using t = tempDir();
  await roundTrip(t.path, `${t.path}/repo`, {});
});

Deno.test("an exotic tree round-trips exactly over SFTP", async () => {
  using t = tempDir();
  const sshd = await startSshd();
  try {
    await roundTrip(t.path, `sftp://${sshd.alias}${sshd.dir}/repo`, {
      N2S_SSH_CONFIG: sshd.configFile,
    });
  } finally {
    await sshd.stop();
  }
});

Deno.test("a sparse file comes back sparse: its allocated blocks, not its size", async () => {
  using t = tempDir();
  const src = `${t.path}/src`;
  Deno.mkdirSync(src);
  const size = 1 << 30;
  using f = Deno.openSync(`${src}/sparse.img`, { write: true, create: true });
  f.writeSync(new TextEncoder().encode("head"));
  f.seekSync(size / 2, Deno.SeekMode.Start);
  f.writeSync(new TextEncoder().encode("middle"));
  f.truncateSync(size);
  const args = ["--repo", `${t.path}/repo`, "--index", `${t.path}/index.sqlite`];
  await n2sOk(["init", ...args], ENV);
  const id = JSON.parse(await n2sOk(["push", src, "--json", ...args], ENV)).changeset;
  await n2sOk(["pull", "--changeset-id", id, "--target-path", `${t.path}/out`, ...args], ENV);
  const st = Deno.statSync(`${t.path}/out/sparse.img`);
  assert.equal(st.size, size);
  // Two small data extents: a few blocks of 4 KiB each, nowhere near 1 GiB.
  assert.ok(st.blocks! * 512 <= 1 << 20, `${st.blocks} blocks allocated`);
  const back = Deno.readFileSync(`${t.path}/out/sparse.img`);
  assert.equal(new TextDecoder().decode(back.subarray(0, 4)), "head");
  assert.equal(new TextDecoder().decode(back.subarray(size / 2, size / 2 + 6)), "middle");
  assert.ok(back.subarray(4, size / 2).every((b) => b === 0));
});

Deno.test("every entry the walk cannot store is named and fails the push; sockets are notes", async () => {
  using t = tempDir();
  const src = `${t.path}/src`;
  await python(
    String.raw`
import os, sys, socket
b = os.fsencode(sys.argv[1])
os.makedirs(os.path.join(b, b'locked'))
open(os.path.join(b, b'locked', b'inside.txt'), 'wb').write(b'x')
os.chmod(os.path.join(b, b'locked'), 0o000)
open(os.path.join(b, b'unreadable.txt'), 'wb').write(b'x')
os.chmod(os.path.join(b, b'unreadable.txt'), 0o000)
open(os.path.join(b, b'fine.txt'), 'wb').write(b'fine')
open(os.path.join(b, b'caf\xe9.txt'), 'wb').write(b'raw name')
os.mknod(os.path.join(b, b'zero'), 0o20644, os.makedev(1, 5))
s = socket.socket(socket.AF_UNIX); s.bind(os.path.join(b, b'sock'))
`,
    src,
  );
  const args = ["--repo", `${t.path}/repo`, "--index", `${t.path}/index.sqlite`];
  await n2sOk(["init", ...args], ENV);
  // Without the capability to override file permissions, root meets them as any user does.
  const cli = new URL("../../cli.ts", import.meta.url).pathname;
  const asUser = async (flags: string[]) => {
    const r = await new Deno.Command("setpriv", {
      args: [
        "--bounding-set=-dac_override,-dac_read_search",
        Deno.execPath(),
        "run",
        ...flags,
        "--quiet",
        cli,
        "push",
        src,
        "--json",
        ...args,
      ],
      env: { ...ENV, N2S_KDF_LOG_N: "10", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
  };
  const r = await asUser(["-A"]);
  assert.equal(r.code, 1, r.err);
  const problems = JSON.parse(r.out).problems as { path: string; message: string }[];
  const byPath = new Map(problems.map((p) => [p.path, p.message]));
  assert.match(byPath.get("locked") ?? "", /directory not readable.*nothing under it was stored/);
  assert.match(byPath.get("unreadable.txt") ?? "", /permission denied/);
  assert.equal(problems.length, 2, JSON.stringify(problems));
  const notes = JSON.parse(r.out).notes as { path: string; message: string }[];
  assert.deepEqual(notes.map((n) => n.path), ["sock"]);
  assert.match(r.err, /n2s: locked: directory not readable/);
  // The rest was stored: the raw name and the device among them.
  const listed = await n2sOk(
    ["ls", JSON.parse(r.out).changeset, "--changed", "--json", ...args],
    ENV,
  );
  const rows = JSON.parse(listed) as { path: string; status: string }[];
  const stored = rows.filter((f) => f.status !== "failed").map((f) => f.path).sort();
  assert.deepEqual(stored, ["caf\udce9.txt", "fine.txt", "locked", "zero"]);
  assert.deepEqual(rows.filter((f) => f.status === "failed").map((f) => f.path), [
    "unreadable.txt",
  ]);

  // Without FFI, a name that is not UTF-8 cannot be read back and a device cannot be stored:
  // both are named, never stored under a wrong name or dropped.
  await n2sOk(["init", "--repo", `${t.path}/repo2`, "--index", `${t.path}/i2.sqlite`], ENV);
  const plain = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys",
      "--allow-net",
      "--allow-run",
      "--quiet",
      cli,
      "push",
      src,
      "--json",
      "--repo",
      `${t.path}/repo2`,
      "--index",
      `${t.path}/i2.sqlite`,
    ],
    env: { ...ENV, N2S_KDF_LOG_N: "10", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = JSON.parse(new TextDecoder().decode(plain.stdout));
  assert.equal(plain.code, 1);
  const msgs = (out.problems as { path: string; message: string }[]).map((p) => p.message);
  assert.ok(msgs.some((m) => /may not be UTF-8.*--allow-ffi/.test(m)), msgs.join("\n"));
  assert.ok(msgs.some((m) => /device.*--allow-ffi/.test(m)), msgs.join("\n"));
});

Deno.test("ls and find print names that are not UTF-8 escaped, and patterns match them", async () => {
  using t = tempDir();
  const src = `${t.path}/src`;
  await python(
    String.raw`
import os, sys
b = os.fsencode(sys.argv[1])
os.makedirs(os.path.join(b, b'd\xff'))
open(os.path.join(b, b'd\xff', b'caf\xe9.txt'), 'wb').write(b'x')
open(os.path.join(b, b'plain.txt'), 'wb').write(b'y')
`,
    src,
  );
  const args = ["--repo", `${t.path}/repo`, "--index", `${t.path}/index.sqlite`];
  await n2sOk(["init", ...args], ENV);
  const id = JSON.parse(await n2sOk(["push", src, "--json", ...args], ENV)).changeset;
  const ls = await n2sOk(["ls", id, ...args], ENV);
  assert.match(ls, /d\\xff\/caf\\xe9\.txt/);
  const found = await n2sOk(["find", "caf\\xe9*", ...args], ENV);
  assert.match(found, /d\\xff\/caf\\xe9\.txt/);
  assert.doesNotMatch(found, /plain/);
  const r = await n2s(
    ["pull", "--changeset-id", id, "--target-path", `${t.path}/out`, "d\\xff", ...args],
    ENV,
  );
  assert.equal(r.code, 0, r.stderr);
  const names = await python(
    "import os,sys; print(sorted(os.listdir(os.fsencode(sys.argv[1]))))",
    `${t.path}/out`,
  );
  assert.equal(names.trim(), "[b'd\\xff']");
});
