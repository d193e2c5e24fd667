/**
 * The privileges a run needs on the target tables, checked before any row
 * is read, so that a missing one is named with its GRANT.
 *
 * @module
 */

import type { Mode, Options } from "./types.ts";
import { MigrationError } from "./errors.ts";
import type { Tx } from "./connect.ts";
import { TABLES } from "./tables.ts";
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

/**
 * Refuses the run, naming each missing privilege and the GRANT that gives
 * it. Asked by oid: a name would need USAGE on the schema to resolve.
 */
export async function checkPrivileges(
  tx: Tx,
  options: Pick<Options, "mode" | "prune" | "schema">,
): Promise<void> {
  const privileges = needed(options.mode, options.prune);
  const missing: string[] = [];
  const [{ usage }] = await tx`SELECT has_schema_privilege(${options.schema}, 'USAGE') AS usage`;
  if (!usage) missing.push(`USAGE ON SCHEMA ${q(options.schema)}`);
  // Tables that do not exist are planning's to report.
  const names = TABLES.map((t) => t.name);
  const lacking = await tx`
    SELECT c.relname AS table, string_agg(p, ', ' ORDER BY o) AS privileges
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
         unnest(${privileges}::text[]) WITH ORDINALITY AS u(p, o)
    WHERE n.nspname = ${options.schema} AND c.relname = ANY(${names}::text[])
      AND NOT has_table_privilege(c.oid, p)
    GROUP BY c.relname ORDER BY array_position(${names}::text[], c.relname::text)`;
  for (const row of lacking) {
    missing.push(`${row.privileges} ON ${q(options.schema)}.${q(row.table)}`);
  }
  if (missing.length === 0) return;
  const [{ user }] = await tx`SELECT current_user AS user`;
  throw new MigrationError(
    "config",
    `user ${user} lacks privileges the run needs: ${missing.join("; ")}; nothing was read`,
    missing.map((m) => `GRANT ${m} TO ${q(user)}`).join("; "),
  );
}
