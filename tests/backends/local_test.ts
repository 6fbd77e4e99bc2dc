// The local directory backend under the conformance suite and the CLI round trip, through the
// same backend stack (limit, retry) as every other backend.

import { openBackend } from "../../lib/backends/open.ts";
import { tempDir } from "../helpers/fs.ts";
import { expectFastFailure, runCliRoundTrip, runConformance } from "./harness.ts";

Deno.test("local backend: conformance and CLI round trip", async (t) => {
  using tmp = tempDir();
  await runConformance(t, () => openBackend(`${tmp.path}/repo`, { env: {} }));
  await runConformance(t, () => openBackend(`file://${tmp.path}/repo-url`, { env: {} }));
  await runCliRoundTrip(t, `${tmp.path}/cli`, {});
  Deno.writeTextFileSync(`${tmp.path}/a-file`, "not a directory");
  await expectFastFailure(
    t,
    `${tmp.path}/a-file/repo`,
    {},
    /local .*a-file\/repo.*not a directory/i,
  );
});
