// The committed recovery page is what the build produces from its sources.

import assert from "node:assert/strict";
import { buildPageModule } from "../../scripts/build_recovery_page.ts";

Deno.test("the committed recovery page is up to date with lib/recovery_page (deno task build-page)", async () => {
  const built = await buildPageModule();
  const committed = await Deno.readTextFile(
    new URL("../../lib/recovery_page/page.generated.ts", import.meta.url),
  );
  assert.ok(built === committed, 'page.generated.ts is stale: run "deno task build-page"');
});
