// The SFTP version 3 codec against bytes written out by hand from draft-ietf-secsh-filexfer-02
// and OpenSSH's PROTOCOL: requests, the framing of a stream cut anywhere, and replies.

import assert from "node:assert/strict";
import {
  decodeHello,
  decodeReply,
  encodePacket,
  Framer,
  FXF,
  FXP,
  ProtocolError,
  WritePacket,
} from "../../lib/backends/sftp/protocol.ts";

const bytes = (...parts: (number[] | string)[]) =>
  new Uint8Array(
    parts.flatMap((p) => typeof p === "string" ? [...new TextEncoder().encode(p)] : p),
  );
const u32 = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
const u64 = (n: number) => [...u32(Math.floor(n / 2 ** 32)), ...u32(n >>> 0)];

Deno.test("an OPEN request is length, type, id, path, flags and empty attributes", () => {
  const p = encodePacket(FXP.OPEN, [{ u32: 7 }, { str: "/a/b" }, {
    u32: FXF.WRITE | FXF.CREAT | FXF.EXCL,
  }, { u32: 0 }]);
  assert.deepEqual(
    p,
    bytes(u32(21), [3], u32(7), u32(4), "/a/b", u32(0x2a), u32(0)),
  );
});

Deno.test("a WRITE filled in place carries its id, handle, offset and only the bytes used", () => {
  const handle = bytes([0, 0, 0, 9]);
  const w = new WritePacket(handle, 2 ** 33 + 5, 16);
  w.data.set([1, 2, 3]);
  assert.deepEqual(
    w.finish(42, 3),
    bytes(
      u32(1 + 4 + 4 + 4 + 8 + 4 + 3),
      [6],
      u32(42),
      u32(4),
      [0, 0, 0, 9],
      u64(2 ** 33 + 5),
      u32(3),
      [
        1,
        2,
        3,
      ],
    ),
  );
});

Deno.test("the framer finds the same packets wherever the stream is cut", () => {
  const status = bytes(u32(1 + 4 + 4 + 4 + 2 + 4), [101], u32(1), u32(2), u32(2), "no", u32(0));
  const data = bytes(u32(1 + 4 + 4 + 300), [103], u32(2), u32(300), new Array(300).fill(9));
  const stream = bytes([...status], [...data]);
  for (let cut = 0; cut <= stream.length; cut++) {
    for (const step of [1, 7, 1000]) {
      const f = new Framer();
      const got: Uint8Array[] = [];
      const feed = (b: Uint8Array) => {
        for (let o = 0; o < b.length; o += step) {
          f.push(b.subarray(o, o + step));
          for (let p = f.next(); p; p = f.next()) got.push(p);
        }
      };
      feed(stream.subarray(0, cut));
      feed(stream.subarray(cut));
      assert.equal(got.length, 2, `cut at ${cut}, pieces of ${step}`);
      assert.deepEqual(decodeReply(got[0]), { type: 101, id: 1, code: 2, message: "no" });
      const d = decodeReply(got[1]);
      assert.ok(d.type === FXP.DATA && d.id === 2 && d.data.length === 300);
    }
  }
});

Deno.test("a stream that is not SFTP is named by what it sent", () => {
  const f = new Framer();
  f.push(new TextEncoder().encode("Welcome to the server!\n"));
  assert.throws(() => f.next(), (e) => {
    assert.ok(e instanceof ProtocolError);
    assert.match(e.message, /did not answer in SFTP.*Welcome to the server/);
    return true;
  });
});

Deno.test("VERSION's extension pairs run to the end of the packet", () => {
  const hello = decodeHello(
    bytes(
      [2],
      u32(3),
      u32(24),
      "posix-rename@openssh.com",
      u32(1),
      "1",
      u32(18),
      "limits@openssh.com",
      u32(1),
      "1",
    ),
  );
  assert.equal(hello.version, 3);
  assert.deepEqual([...hello.extensions], [["posix-rename@openssh.com", "1"], [
    "limits@openssh.com",
    "1",
  ]]);
});

Deno.test("NAME entries carry size, mode and times; a bare STATUS is accepted", () => {
  const attrs = [
    ...u32(1 | 4 | 8),
    ...u64(5_000_000_000),
    ...u32(0o100644),
    ...u32(10),
    ...u32(20),
  ];
  const name = decodeReply(
    bytes([104], u32(9), u32(1), u32(1), "f", u32(2), "ls", attrs),
  );
  assert.deepEqual(name, {
    type: FXP.NAME,
    id: 9,
    names: [{
      filename: "f",
      longname: "ls",
      attrs: { size: 5_000_000_000, permissions: 0o100644, atime: 10, mtime: 20 },
    }],
  });
  assert.deepEqual(decodeReply(bytes([101], u32(3), u32(1))), {
    type: FXP.STATUS,
    id: 3,
    code: 1,
    message: "",
  });
  const ext = decodeReply(bytes([201], u32(4), u64(262144), u64(261120)));
  assert.ok(ext.type === FXP.EXTENDED_REPLY && ext.data.length === 16);
  assert.throws(() => decodeReply(bytes([103], u32(1), u32(10), [1, 2])), ProtocolError);
});
