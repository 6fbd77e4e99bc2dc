// The IPFS backend against a real node (js-ipfs 0.66.1, offline, on loopback): the conformance
// suite, the CLI round trip, a fast failure on a closed port, and what is particular to IPFS:
// the ref is the node's CID, that CID is pinned, and stored objects survive garbage collection.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { BackendError, bytesBody, readAll } from "../../lib/backends/backend.ts";
import { ADD_ATTEMPTS, IpfsBackend, openIpfsLocation } from "../../lib/backends/ipfs/backend.ts";
import { startIpfs } from "../servers/ipfs.ts";
import { startRelay } from "../servers/relay.ts";
import { expectFastFailure, runCliRoundTrip, runConformance } from "./harness.ts";

/** Calls the node's RPC API directly and returns the parsed JSON (or the raw text). */
async function rpc(api: string, cmd: string, params: [string, string][] = []): Promise<unknown> {
  const res = await fetch(`${api}/api/v0/${cmd}?${new URLSearchParams(params)}`, {
    method: "POST",
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${cmd}: HTTP ${res.status}: ${text}`);
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** A loopback port nobody listens on. */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function seeded(size: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 0xff;
  }
  return out;
}

Deno.test("ipfs backend: conformance, IPFS specifics and CLI round trip", async (t) => {
  // Throws, naming `bash scripts/setup.sh`, when js-ipfs is not installed.
  const node = await startIpfs();
  try {
    const location = `ipfs://n2s-conf?api=${node.api}`;

    await t.step("the ref of a put is the CID files/stat reports, and it is pinned", async () => {
      const b = await openIpfsLocation(`ipfs://n2s-refs?api=${node.api}`, {});
      try {
        const info = await b.put("blobs/ab/one", bytesBody(seeded(300_000, 1)));
        assert.ok(info.ref, "put returns a ref");
        const st = await rpc(node.api, "files/stat", [["arg", "/n2s-refs/blobs/ab/one"]]) as {
          Hash: string;
        };
        assert.equal(info.ref, st.Hash);
        assert.equal((await b.stat("blobs/ab/one"))?.ref, st.Hash);
        const listed = [];
        for await (const i of b.list("blobs/")) listed.push(i);
        assert.deepEqual(listed, [{ key: "blobs/ab/one", size: 300_000, ref: st.Hash }]);
        const pins = await rpc(node.api, "pin/ls", [["arg", info.ref], ["type", "recursive"]]) as {
          Keys: Record<string, unknown>;
        };
        assert.ok(info.ref in pins.Keys, `pin/ls lists ${info.ref}`);

        // An overwrite unpins the content it replaced; a delete unpins the object's.
        const second = await b.put("blobs/ab/one", bytesBody(seeded(1000, 2)));
        assert.notEqual(second.ref, info.ref);
        await assert.rejects(() => rpc(node.api, "pin/ls", [["arg", info.ref!]]), /not pinned/);
        await b.delete("blobs/ab/one");
        await assert.rejects(() => rpc(node.api, "pin/ls", [["arg", second.ref!]]), /not pinned/);
      } finally {
        await b.close();
      }
    });

    await t.step("objects survive repo/gc, pinned content even outside MFS", async () => {
      const b = await openIpfsLocation(`ipfs://n2s-gc?api=${node.api}`, {});
      try {
        const kept = seeded(700_000, 3);
        const outside = seeded(500_000, 4);
        await b.put("keys/kept", bytesBody(kept));
        const info = await b.put("keys/outside", bytesBody(outside));
        // Unpinned content outside MFS, which garbage collection must remove.
        const form = new FormData();
        form.append("file", new Blob([seeded(400_000, 6)], { type: "application/octet-stream" }));
        const added = await fetch(`${node.api}/api/v0/add?pin=false`, {
          method: "POST",
          body: form,
        });
        const loose = (await added.json()).Hash as string;
        // Drop the MFS entry behind the backend's back: only the pin holds the content now.
        await rpc(node.api, "files/rm", [["arg", "/n2s-gc/keys/outside"]]);
        await b.flush();
        // js-ipfs's collection takes time in proportion to garbage times pins (minutes after a
        // thousand puts), so this step runs before the conformance suite fills the node.
        const gc = await fetch(`${node.api}/api/v0/repo/gc`, {
          method: "POST",
          signal: AbortSignal.timeout(120_000),
        }).catch((e) => {
          throw new Error(`repo/gc did not finish within 120 s: ${e}`);
        });
        assert.equal(gc.status, 200, await gc.text());
        const cat = async (cid: string) => {
          const res = await fetch(
            `${node.api}/api/v0/cat?${new URLSearchParams({ arg: cid, timeout: "3s" })}`,
            { method: "POST" },
          );
          return { status: res.status, bytes: new Uint8Array(await res.arrayBuffer()) };
        };
        assert.notEqual((await cat(loose)).status, 200, "repo/gc removed unpinned content");
        assert.deepEqual(await readAll(await b.get("keys/kept")), kept);
        const got = await cat(info.ref!);
        assert.equal(got.status, 200, new TextDecoder().decode(got.bytes.subarray(0, 200)));
        assert.deepEqual(got.bytes, outside, "the pinned content outlives its MFS entry");
      } finally {
        await b.close();
      }
    });

    await t.step("leftovers of cut-off puts are listed with their age and deleted", async () => {
      const b = await openIpfsLocation(`ipfs://n2s-tmp-test?api=${node.api}`, {});
      try {
        await b.put("keys/k", bytesBody(seeded(1000, 7)));
        assert.deepEqual(await b.temporaries!(), [], "a finished put leaves nothing");
        // What a killed put leaves: a file under the temporary area, named as a put names it.
        const old = `${(Date.now() - 2 * 3600_000).toString(36)}-dead`;
        const form = new FormData();
        form.append("file", new Blob([seeded(5000, 8)], { type: "application/octet-stream" }));
        const res = await fetch(
          `${node.api}/api/v0/files/write?${new URLSearchParams({
            arg: `/n2s-tmp-test/.n2s-tmp/${old}`,
            create: "true",
            parents: "true",
          })}`,
          { method: "POST", body: form },
        );
        assert.equal(res.status, 200, await res.text());
        const tmp = await b.temporaries!();
        assert.equal(tmp.length, 1);
        assert.equal(tmp[0].key, `.n2s-tmp/${old}`);
        assert.equal(tmp[0].size, 5000);
        assert.ok(Date.now() - tmp[0].mtime >= 2 * 3600_000 - 1000, "its age comes from its name");
        await assert.rejects(() => b.deleteTemporary!("keys/k"), /not a temporary object/);
        await b.deleteTemporary!(tmp[0].key);
        assert.deepEqual(await b.temporaries!(), []);
        assert.ok(await b.stat("keys/k"), "objects stay");
      } finally {
        await b.close();
      }
    });

    const api = new URL(node.api);
    const relay = startRelay({ hostname: api.hostname, port: Number(api.port) });
    try {
      await runConformance(t, () => openIpfsLocation(location, {}), {
        trouble: {
          what: "connections to the node cut",
          open: () => openIpfsLocation(`ipfs://n2s-relayed?api=http://127.0.0.1:${relay.port}`, {}),
          // deno-lint-ignore require-await
          strike: async () => {
            relay.cut();
            return () => relay.mend();
          },
        },
      });
    } finally {
      await relay.stop();
    }

    await t.step("an upload whose connection is lost is sent again, a few times", async () => {
      const again = startRelay({ hostname: api.hostname, port: Number(api.port) });
      const b = await openIpfsLocation(
        `ipfs://n2s-resent?api=http://127.0.0.1:${again.port}`,
        {},
      );
      try {
        const data = seeded(1_000_000, 7);
        // The first connection (the put's add) is closed a tenth of the way in.
        again.dropAfter(1, 100_000);
        await b.put("blobs/one", bytesBody(data));
        assert.equal(again.dropped, 1);
        assert.deepEqual(await readAll(await b.get("blobs/one")), data);
        // A node that loses every attempt (through a relay of its own, so that no pooled
        // connection is reused): the put fails, transient, naming the lost connection.
        const lossy = startRelay({ hostname: api.hostname, port: Number(api.port) });
        const c = await openIpfsLocation(
          `ipfs://n2s-resent?api=http://127.0.0.1:${lossy.port}`,
          {},
        );
        try {
          lossy.dropAfter(ADD_ATTEMPTS, 100_000);
          await assert.rejects(
            () => c.put("blobs/two", bytesBody(data)),
            (e) =>
              e instanceof BackendError && e.kind === "transient" &&
              /put blobs\/two: connection lost$/.test(e.message),
          );
          assert.equal(lossy.dropped, ADD_ATTEMPTS);
        } finally {
          await c.close();
          await lossy.stop();
        }
        assert.equal(await b.stat("blobs/two"), null);
      } finally {
        await b.close();
        await again.stop();
      }
    });

    await t.step("a 1 GiB object reads back byte for byte", async () => {
      // js-ipfs's files/write stored files this large wrongly (reads differed from 261 MiB on);
      // puts go through add, and this step keeps it that way.
      const b = await openIpfsLocation(location, {});
      try {
        // Distinct random pieces: repeated ones would be stored once (same blocks).
        const size = 1 << 30;
        const sent = createHash("sha256");
        const body = {
          size,
          async *open() {
            for (let i = 0; i < size >> 20; i++) {
              const piece = new Uint8Array(1 << 20);
              for (let o = 0; o < piece.length; o += 65536) {
                crypto.getRandomValues(piece.subarray(o, o + 65536));
              }
              sent.update(piece);
              yield piece;
            }
          },
        };
        let t0 = performance.now();
        await b.put("perf/1gib", body);
        const putS = (performance.now() - t0) / 1000;
        t0 = performance.now();
        let n = 0;
        const got = createHash("sha256");
        for await (const p of await b.get("perf/1gib")) {
          got.update(p);
          n += p.length;
        }
        const getS = (performance.now() - t0) / 1000;
        assert.equal(n, size);
        assert.equal(got.digest("hex"), sent.digest("hex"), "the 1 GiB object reads back whole");
        console.log(
          `ipfs 1 GiB: put ${putS.toFixed(2)} s (${(1024 / putS).toFixed(0)} MiB/s), ` +
            `get ${getS.toFixed(2)} s (${(1024 / getS).toFixed(0)} MiB/s)`,
        );
        await b.delete("perf/1gib");
      } finally {
        await b.close();
      }
    });

    await t.step("location forms and their errors", async () => {
      const name = async (loc: string, env: Record<string, string> = {}) =>
        (await openIpfsLocation(loc, env)).name;
      assert.equal(await name("ipfs://r"), "ipfs /r at http://127.0.0.1:5001");
      assert.equal(
        await name("ipfs://r/sub", { N2S_IPFS_API: "http://h:1/", IPFS_API: "http://x:2" }),
        "ipfs /r/sub at http://h:1",
      );
      assert.equal(
        await name("ipfs://r", { IPFS_API: "/ip4/10.0.0.1/tcp/5002" }),
        "ipfs /r at http://10.0.0.1:5002",
      );
      assert.equal(
        await name("ipfs://r?api=http://u:secret@h:5/api/v0"),
        "ipfs /r at http://h:5",
        "credentials never appear in the name",
      );
      for (
        const [loc, pattern] of [
          ["ipfs://", /no root name/],
          ["ipfs://?api=http://h:1", /no root name/],
          ["ipfs://r/../x", /bad root name/],
          ["ipfs://r?api=ftp://h:1", /http:\/\/ or https:\/\//],
          ["ipfs://r?api=nonsense", /expected a URL/],
          ["ipfs://r?apii=http://h:1", /unknown parameter "apii"/],
        ] as const
      ) {
        await assert.rejects(() => openIpfsLocation(loc, {}), pattern, loc);
      }
      const b = await openIpfsLocation(location, {});
      await assert.rejects(() => b.put(".n2s-tmp/x", bytesBody(new Uint8Array(1))), /invalid/);
      await assert.rejects(() => b.put("a/../b", bytesBody(new Uint8Array(1))), /invalid/);
    });

    await t.step(
      "a refused first connection is permanent, a lost node later transient",
      async () => {
        const port = closedPort();
        const b = await openIpfsLocation(`ipfs://x?api=http://127.0.0.1:${port}`, {});
        await assert.rejects(
          () => b.stat("config"),
          (e) =>
            e instanceof BackendError && e.kind === "permanent" &&
            /^ipfs \/x at http:\/\/127\.0\.0\.1:\d+: stat config: connection refused; is the IPFS daemon running\?$/
              .test(e.message),
        );
        const other = await startIpfs();
        const c = new IpfsBackend({ api: other.api, root: "lost" });
        await c.put("config", bytesBody(new Uint8Array(10)));
        await other.stop();
        await assert.rejects(
          () => c.stat("config"),
          (e) =>
            e instanceof BackendError && e.kind === "transient" && /connection/.test(e.message),
        );
      },
    );

    await runCliRoundTrip(t, `ipfs://n2s-cli?api=${node.api}`, {});
    await expectFastFailure(
      t,
      `ipfs://n2s?api=http://127.0.0.1:${closedPort()}`,
      {},
      /ipfs \/n2s at http:\/\/127\.0\.0\.1:\d+.*connection refused; is the IPFS daemon running\?/,
    );
  } finally {
    await node.stop();
  }
});
