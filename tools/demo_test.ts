import assert from "node:assert/strict";
import { splitDemoArgs } from "./demo.ts";

Deno.test("deno task demo keeps its own options and passes the others on to migrate.ts", () => {
  assert.deepEqual(
    splitDemoArgs([
      "--ignore-columns",
      "snapshots.id",
      "--sqlite",
      "app.db",
      "--keep",
      "--year=2020",
    ]),
    {
      own: ["--sqlite", "app.db", "--keep", "--year=2020"],
      migrate: ["--ignore-columns", "snapshots.id"],
    },
  );
  assert.deepEqual(splitDemoArgs(["--dry-run"]), { own: [], migrate: ["--dry-run"] });
});
