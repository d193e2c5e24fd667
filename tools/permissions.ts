// The permissions migrate.ts runs with, stated once: deno.json's `migrate`
// task. The demo, the README checker and the compiled binary take them from
// here; migrate.ts's shebang cannot read a file, so permissions_test.ts holds
// it to the same list.
import denoJson from "../deno.json" with { type: "json" };

/** The `--allow-…` flags of `deno task migrate`, in its order. */
export const MIGRATE_PERMISSIONS: readonly string[] = denoJson.tasks.migrate.split(/\s+/)
  .filter((word) => word.startsWith("--allow-"));
