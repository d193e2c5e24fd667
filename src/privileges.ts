/**
 * The privileges a run needs on the target tables, checked before any row
 * is read, so that a missing one is named with its GRANT.
 *
 * @module
 */

import type { Mode, Options } from "./types.ts";
import { MigrationError } from "./errors.ts";
import type { Tx } from "./connect.ts";
import type { TablePlan } from "./plan.ts";
import { q } from "./quote.ts";

/**
 * Per mode: a check only reads; a migration (and a dry run, which does the
 * same, then rolls back) reads, inserts and updates, and with --prune deletes.
 * A first run that may not alter the tables (not their owner) takes the
 * careful path, so ownership is not required.
 */
function needed(mode: Mode, prune: boolean): string[] {
  if (mode === "verify-only") return ["SELECT"];
  return ["SELECT", "INSERT", "UPDATE", ...(prune ? ["DELETE"] : [])];
}

/** Refuses the run, naming each missing privilege and the GRANT that gives it. */
export async function checkPrivileges(
  tx: Tx,
  plans: TablePlan[],
  options: Pick<Options, "mode" | "prune">,
): Promise<void> {
  const privileges = needed(options.mode, options.prune);
  const missing: string[] = [];
  for (const plan of plans) {
    const rows = await tx`
      SELECT p AS privilege FROM unnest(${privileges}::text[]) p
      WHERE NOT has_table_privilege(${plan.target.qualified}, p)`;
    if (rows.length > 0) {
      missing.push(`${rows.map((r) => r.privilege).join(", ")} ON ${plan.target.qualified}`);
    }
  }
  if (missing.length === 0) return;
  const [{ user }] = await tx`SELECT current_user AS user`;
  throw new MigrationError(
    "config",
    `user ${user} lacks privileges the run needs: ${missing.join("; ")}; nothing was read`,
    missing.map((m) => `GRANT ${m} TO ${q(user)}`).join("; "),
  );
}
