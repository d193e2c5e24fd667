import assert from "node:assert/strict";
import { MIGRATE_PERMISSIONS } from "./permissions.ts";

Deno.test("migrate.ts's shebang grants exactly what deno task migrate grants", async () => {
  const shebang = (await Deno.readTextFile(new URL("../migrate.ts", import.meta.url)))
    .split("\n")[0];
  assert.deepEqual(shebang.split(/\s+/).filter((w) => w.startsWith("--allow-")), [
    ...MIGRATE_PERMISSIONS,
  ]);
  assert.ok(MIGRATE_PERMISSIONS.length > 0);
});
