// A Worker for tests/fs/posix_test.ts: lists a directory and stats and reads each file with the
// POSIX layer loaded in this thread, and posts the result.

import {
  closeFd,
  fstatRaw,
  openRaw,
  posixAvailable,
  readDirRaw,
  readFd,
} from "../../lib/fs/posix.ts";

const scope = globalThis as unknown as {
  addEventListener(type: "message", f: (e: MessageEvent<string>) => void): void;
  postMessage(m: unknown): void;
};

scope.addEventListener("message", (e) => {
  const dir = e.data;
  const out: { name: string; size: number; first: number }[] = [];
  if (posixAvailable()) {
    for (const entry of readDirRaw(dir)) {
      const fd = openRaw(`${dir}/${entry.name}`, "read");
      const buf = new Uint8Array(16);
      try {
        const n = readFd(fd, buf);
        out.push({ name: entry.name, size: fstatRaw(fd).size, first: n > 0 ? buf[0] : -1 });
      } finally {
        closeFd(fd);
      }
    }
  }
  scope.postMessage({ available: posixAvailable(), out });
});
