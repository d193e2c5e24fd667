/**
 * The table operations every strategy uses: orphan and constraint checks,
 * update, insert and prune, suspending and restoring keys and indexes, sequences.
 *
 * @module
 */

import type postgres from "postgres";
import type { Options, Problem, Step } from "./types.ts";
import { EXAMPLES_PER_KIND } from "./errors.ts";
import { literal, q } from "./quote.ts";
import type { Tx } from "./connect.ts";
import type { TargetConstraint } from "./catalog.ts";
import {
  columnList,
  keyMatch,
  keyOrder,
  keyText,
  type PlannedColumn,
  type TablePlan,
  tempTable,
} from "./plan.ts";
import type { ProblemLog } from "./validate.ts";
import { DIGEST } from "./digest.ts";

/**
 * Adds the rows a query finds to a problem log: with a reject file, every
 * row (through a cursor, so memory stays flat); otherwise the first
 * {@link EXAMPLES_PER_KIND} and the total. The query selects `key`,
 * optionally `value`, and is ordered.
 */
export async function logRows(
  tx: Tx,
  query: string,
  params: unknown[],
  log: ProblemLog,
  problem: (row: postgres.Row) => Problem,
): Promise<number> {
  if (log.sink) {
    let total = 0;
    for await (const rows of tx.unsafe(query, params as never[]).cursor(1000)) {
      for (const row of rows) log.add(problem(row));
      total += rows.length;
    }
    return total;
  }
  const rows = await tx.unsafe(
    `SELECT *, count(*) OVER ()::int AS total FROM (${query}) found LIMIT ${EXAMPLES_PER_KIND}`,
    params as never[],
  );
  for (const row of rows) log.add(problem(row));
  if (rows.length === 0) return 0;
  log.count(problem(rows[0]).kind, rows[0].total - rows.length);
  return rows[0].total;
}

/**
 * The target's CHECK constraints and unique indexes, evaluated set-based on
 * the staged rows, so that every offending row is named (PostgreSQL itself
 * would stop at the first). Rules that involve columns SQLite does not supply
 * are left to PostgreSQL, which enforces them when the rows are written.
 */
export async function checkConstraints(
  tx: Tx,
  plan: TablePlan,
  options: Options,
  problems: ProblemLog,
): Promise<void> {
  const staged = new Set(plan.columns.map((c) => c.name));
  const covered = (columns: string[] | null) =>
    columns !== null && columns.length > 0 && columns.every((c) => staged.has(c));
  for (const check of plan.target.constraints) {
    if (check.type !== "c" || !covered(check.columns)) continue;
    // The values the constraint judged, so the row is recognisable (rank = 0).
    const judged = check.columns!.map((c) =>
      `'${c.replaceAll("'", "''")} = ' || coalesce(s.${q(c)}::text, 'NULL')`
    );
    await logRows(
      tx,
      `SELECT ${keyText(plan, "s")} AS key, concat_ws(', ', ${judged.join(", ")}) AS value
       FROM ${plan.staging} s WHERE NOT (${check.expression})
       ORDER BY ${keyOrder(plan, "s")}`,
      [],
      problems,
      (row) => ({
        kind: "check-violation",
        table: plan.spec.name,
        key: row.key,
        value: row.value,
        constraint: `${check.name}: ${check.definition}`,
      }),
    );
  }
  const key = new Set(plan.spec.key);
  for (const index of plan.target.indexes) {
    if (!index.unique || !covered(index.columns)) continue;
    if (index.columns!.length === key.size && index.columns!.every((c) => key.has(c))) continue;
    const columns = index.columns!.map(q);
    const values = (alias: string) => columns.map((c) => `${alias}.${c}`).join(", ");
    // The rows as they will be: staged rows, plus target rows that stay.
    const kept = `UNION ALL SELECT ${keyText(plan, "t")}, ${values("t")}
      FROM ${plan.target.qualified} t
      WHERE NOT EXISTS (SELECT FROM ${plan.staging} s WHERE ${keyMatch(plan, "s", "t")})${
      options.prune ? ` AND NOT (${extraRow(plan)})` : ""
    }`;
    await logRows(
      tx,
      `WITH rows (key, ${columns.join(", ")}) AS (
         SELECT ${keyText(plan, "s")}, ${values("s")} FROM ${plan.staging} s ${kept})
       SELECT r.key, concat_ws(', ', ${values("r")}) AS value FROM rows r
       WHERE (${values("r")}) IN (SELECT ${columns.join(", ")} FROM rows
         WHERE ${columns.map((c) => `${c} IS NOT NULL`).join(" AND ")}
         GROUP BY ${columns.join(", ")} HAVING count(*) > 1)
       ORDER BY r.key COLLATE "C"`,
      [],
      problems,
      (row) => ({
        kind: "unique-violation",
        table: plan.spec.name,
        key: row.key,
        value: row.value,
        constraint: `${index.name}: ${
          index.definition.replace(/^CREATE UNIQUE INDEX \S+ ON /, "")
        }`,
      }),
    );
  }
}

/**
 * The change detection of every strategy that compares: staged rows whose
 * digest the target's rows `theirs` (a relation of keys and digests) lack or
 * hold otherwise go into `plan.changes`, marked missing or not; only these can
 * need writing, every other row is proven equal to its source. The second
 * statement marks those equal by value after all (1.0 stored as 1.00): nothing
 * to write. The caller runs them, with an ANALYZE where its plan needs one.
 */
export function changeDetection(plan: TablePlan, theirs: string): [string, string] {
  plan.changes = tempTable(plan.spec.name, "changes");
  const k = q(plan.spec.key[0]);
  return [
    `CREATE TEMPORARY TABLE ${plan.changes} ON COMMIT DROP AS
     SELECT s.*, t.${k} IS NULL AS migrate_missing, false AS migrate_equal
     FROM ${plan.staging} s LEFT JOIN ${theirs} t ON ${keyMatch(plan, "s", "t")}
     WHERE t.${k} IS NULL OR t.${DIGEST} <> s.${DIGEST}`,
    `UPDATE ${plan.changes} c SET migrate_equal = true
     FROM ${plan.target.qualified} t
     WHERE ${keyMatch(plan, "c", "t")} AND NOT c.migrate_missing
       AND NOT (${distinct(plan.columns, "c", "t")})`,
  ];
}

/**
 * Updates only rows whose values are distinct, so a rerun over unchanged
 * data rewrites nothing and keeps `updated_at`.
 */
export function updateSql(plan: TablePlan): string {
  const values = plan.columns.filter((c) => !plan.spec.key.includes(c.name));
  const assignments = values.map((c) => `${q(c.name)} = s.${q(c.name)}`);
  if (plan.touch) assignments.push(`${q(plan.touch)} = NOW()`);
  return `UPDATE ${plan.target.qualified} t SET ${assignments.join(", ")}
    FROM ${plan.changes} s
    WHERE ${keyMatch(plan, "s", "t")} AND NOT s.migrate_missing AND NOT s.migrate_equal`;
}

/**
 * True where two rows' values differ. JSONB equality walks both documents;
 * equal binary images (the usual case: both sides parsed from the same text
 * by the same server) settle it with a memory compare, about twice as fast
 * over a table of payloads. Different images may still hold equal values
 * (1.0 and 1.00), so those rows get the full comparison. `json` has no
 * equality operator: its text is compared, which is what it keeps; so is
 * every text's.
 */
export function distinct(columns: PlannedColumn[], a: string, b: string): string {
  if (columns.length === 0) return "false";
  // Text as it is stored, byte for byte: a type or collation that takes
  // 'ABC' for 'abc' (citext, a case-insensitive collation) would keep the
  // target's old spelling.
  const value = (c: PlannedColumn, alias: string) =>
    c.target.baseName === "json" || (c.kind === "text" && c.target.baseName !== "text")
      ? `${alias}.${q(c.name)}::text COLLATE "C"`
      : c.kind === "text"
      ? `${alias}.${q(c.name)} COLLATE "C"`
      : `${alias}.${q(c.name)}`;
  const list = (alias: string) => columns.map((c) => value(c, alias)).join(", ");
  const values = `(${list(a)}) IS DISTINCT FROM (${list(b)})`;
  if (!columns.some((c) => c.kind === "json")) return values;
  const image = (alias: string) => columns.map((c) => `${alias}.${q(c.name)}`).join(", ");
  return `CASE WHEN ROW(${image(a)})::record *= ROW(${
    image(b)
  })::record THEN false ELSE ${values} END`;
}

/** Identity columns that always generate their value need to be told to take ours. */
const overriding = (plan: TablePlan) =>
  plan.columns.some((c) => c.target.identityAlways) ? "OVERRIDING SYSTEM VALUE" : "";

/** Inserts the rows the target lacks, in key order so that index inserts stay local. */
export function insertSql(plan: TablePlan): string {
  const rows = plan.changes ? `${plan.changes} s WHERE s.migrate_missing` : `${plan.staging} s`;
  return `INSERT INTO ${plan.target.qualified} (${columnList(plan)}) ${overriding(plan)}
    SELECT ${columnList(plan, "s.")} FROM ${rows}
    ORDER BY ${plan.spec.key.map((k) => `s.${q(k)}`).join(", ")}`;
}

const ON_DELETE: Record<string, string> = { c: "CASCADE", n: "SET NULL", d: "SET DEFAULT" };

/**
 * Prunes `plan`'s target rows that SQLite does not have: those whose key is
 * in the relation `extra` where the caller has found them, else every row
 * whose key is not in `plan.keys`. The rows it deletes may be what other
 * tables' foreign keys point at, and with ON DELETE CASCADE, SET NULL or SET
 * DEFAULT PostgreSQL deletes or changes those tables' rows too (the schema's
 * own rule, not ours to refuse). Each such table touched gets a line, with how
 * many of its rows (this transaction's own counts, read before and after):
 * --dry-run shows them too. Returns the rows pruned.
 */
export async function pruneRows(
  tx: Tx,
  plans: TablePlan[],
  plan: TablePlan,
  step: Step,
  extra?: string,
): Promise<number> {
  step(`pruning ${plan.spec.name} rows that SQLite does not have`);
  const statement = extra
    ? `DELETE FROM ${plan.target.qualified} t USING ${extra} e WHERE ${keyMatch(plan, "e", "t")}`
    : `DELETE FROM ${plan.target.qualified} t WHERE ${extraRow(plan)}`;
  const dependents = await tx.unsafe(
    `SELECT format('%I.%I', n.nspname, r.relname) AS name, c.conrelid::oid::text AS oid,
            c.conname, c.confdeltype AS action
     FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
       JOIN pg_namespace n ON n.oid = r.relnamespace
     WHERE c.contype = 'f' AND c.confrelid = $1::oid AND c.confdeltype IN ('c', 'n', 'd')
       AND c.conrelid <> ALL($2::oid[])
     ORDER BY 1, 3`,
    [plan.target.oid, plans.map((p) => p.target.oid)],
  );
  const touched = async () =>
    await Promise.all(dependents.map(async (d) => {
      const [{ n }] = await tx.unsafe(
        `SELECT (pg_stat_get_xact_tuples_deleted($1::oid)
                 + pg_stat_get_xact_tuples_updated($1::oid))::int AS n`,
        [d.oid],
      );
      return n as number;
    }));
  const before = await touched();
  const pruned = (await tx.unsafe(statement)).count;
  const after = await touched();
  dependents.forEach((d, i) => {
    const n = after[i] - before[i];
    if (n === 0) return;
    step(
      `  … and ${d.action === "c" ? "deleted" : "changed"} ${n} row${
        n === 1 ? "" : "s"
      } of ${d.name} (its foreign key ${d.conname} is ON DELETE ${ON_DELETE[d.action]})`,
    );
  });
  return pruned;
}

/** A target row (alias t) whose key SQLite does not have. */
export const extraRow = (plan: TablePlan) =>
  `NOT EXISTS (SELECT FROM ${plan.keys} k WHERE ${keyMatch(plan, "k", "t")})`;

/** Below this many new rows, per-row index and key checks cost less than rebuilding. */
export const BULK_INSERT_ROWS = 10_000;

const INSUFFICIENT_PRIVILEGE = "42501";

const UNIQUE_VIOLATION = "23505";

/**
 * Fresh statistics for a table just filled, so that the foreign key check and
 * the verification plan joins for its real size (autovacuum has not seen it).
 */
async function analyzeKeys(tx: Tx, plan: TablePlan): Promise<void> {
  await tx.unsafe(`ANALYZE ${plan.target.qualified} (${plan.spec.key.map(q).join(", ")})`);
}

/**
 * What a bulk load into an empty table may take away and put back: foreign
 * keys, primary key and unique constraints that no other table's foreign key
 * depends on, and indexes that back no constraint (B-tree, GIN, any kind).
 */
export function suspendable(plan: TablePlan, checks = false) {
  const constraints = plan.target.constraints.filter((c) =>
    c.type === "f" || (["p", "u"].includes(c.type) && !c.referenced) ||
    // A first run checks CHECK constraints when it re-creates them, all rows
    // at once, rather than one row into COPY; one not yet valid must stay,
    // to check the new rows.
    (checks && c.type === "c" && !c.definition.endsWith("NOT VALID"))
  );
  const indexes = plan.target.indexes.filter((i) => !i.constraint && !i.referenced);
  return { constraints, indexes };
}

type Suspended = ReturnType<typeof suspendable>;

/** Drops what {@link suspendable} lists, for a bulk load; {@link restore} puts it back. */
export async function suspend(tx: Tx, plan: TablePlan, suspended: Suspended): Promise<void> {
  for (const c of suspended.constraints) {
    await tx.unsafe(`ALTER TABLE ${plan.target.qualified} DROP CONSTRAINT ${q(c.name)}`);
  }
  for (const index of suspended.indexes) {
    await tx.unsafe(`DROP INDEX ${plan.target.schema}.${q(index.name)}`);
  }
}

/** Re-creates what {@link suspendable} took away, keys and indexes first, foreign keys last. */
export async function restore(tx: Tx, plan: TablePlan, suspended: Suspended): Promise<void> {
  const table = plan.target.qualified;
  const add = async (c: TargetConstraint) => {
    await tx.unsafe(`ALTER TABLE ${table} ADD CONSTRAINT ${q(c.name)} ${c.definition}`);
    if (c.comment !== null) {
      await tx.unsafe(`COMMENT ON CONSTRAINT ${q(c.name)} ON ${table} IS ${literal(c.comment)}`);
    }
  };
  for (const c of suspended.constraints.filter((c) => c.type !== "f")) await add(c);
  for (const index of suspended.indexes) {
    await tx.unsafe(
      index.definition + (index.tablespace ? ` TABLESPACE ${q(index.tablespace)}` : ""),
    );
    if (index.comment !== null) {
      await tx.unsafe(
        `COMMENT ON INDEX ${plan.target.schema}.${q(index.name)} IS ${literal(index.comment)}`,
      );
    }
  }
  for (const c of suspended.constraints.filter((c) => c.type === "f")) await add(c);
  for (const index of plan.target.indexes) {
    if (index.clustered) await tx.unsafe(`ALTER TABLE ${table} CLUSTER ON ${q(index.name)}`);
    if (index.replicaIdentity) {
      await tx.unsafe(`ALTER TABLE ${table} REPLICA IDENTITY USING INDEX ${q(index.name)}`);
    }
  }
}

/**
 * Writes one table: updates changed rows, then inserts missing ones.
 *
 * A bulk load into an empty table drops the table's keys and indexes,
 * inserts, and re-creates them: one build per index and one set-based
 * foreign key check instead of one of each per row. All of it happens inside
 * this transaction, so no one ever sees the table without them, and
 * re-creating validates every row. Without the privilege for that, rows go
 * in one by one.
 */
export async function writeTable(
  tx: Tx,
  plan: TablePlan,
  diff: Diff,
  staged: number,
  step: Step,
): Promise<{ inserted: number; updated: number }> {
  const update = diff.differ > 0 ? await updateRows(tx, plan, step) : { updated: 0 };
  // Rows that swapped values under a unique constraint: all written already.
  if (update.inserted !== undefined) return { inserted: update.inserted, updated: update.updated };
  const { updated } = update;
  const insert = async () => {
    const inserted = (await tx.unsafe(insertSql(plan))).count;
    if (inserted >= BULK_INSERT_ROWS) await analyzeKeys(tx, plan);
    return { inserted, updated };
  };
  const emptyTarget = diff.missing === staged && diff.extra === 0 && diff.differ === 0;
  if (!emptyTarget || staged < BULK_INSERT_ROWS) return insert();
  const suspended = suspendable(plan);
  if (suspended.constraints.length + suspended.indexes.length === 0) return insert();
  try {
    return await tx.savepoint(async (sp) => {
      await suspend(sp, plan, suspended);
      const inserted = (await sp.unsafe(
        `INSERT INTO ${plan.target.qualified} (${columnList(plan)}) ${overriding(plan)}
         SELECT ${columnList(plan)} FROM ${plan.staging}`,
      )).count;
      await analyzeKeys(sp, plan);
      await restore(sp, plan, suspended);
      return { inserted, updated };
    });
  } catch (error) {
    if ((error as { code?: string }).code !== INSUFFICIENT_PRIVILEGE) throw error;
    return insert();
  }
}

/**
 * Unique constraints and indexes other than the key's, which an UPDATE
 * checks row by row: rows that swap values under one (two ranks of a day, two
 * surrogate ids) collide halfway, though the rows as they end up, which
 * {@link checkConstraints} judged, are fine. Those that no foreign key
 * depends on can be taken away for the writes and re-created after, which
 * checks every row at once, as a first run's bulk load does.
 */
function uniqueBesidesKey(plan: TablePlan): Suspended {
  const isKey = (columns: string[] | null) =>
    columns !== null && columns.length === plan.spec.key.length &&
    columns.every((c) => plan.spec.key.includes(c));
  return {
    constraints: plan.target.constraints.filter((c) =>
      ["p", "u"].includes(c.type) && !c.referenced && !isKey(c.columns)
    ),
    indexes: plan.target.indexes.filter((i) =>
      i.unique && !i.constraint && !i.referenced && !isKey(i.columns)
    ),
  };
}

/**
 * Updates the changed rows, in a savepoint where the table has such
 * constraints: if one refuses a row halfway, the table's updates and inserts
 * are written with them taken away, and they are re-created (then
 * `inserted` is set too). Where they cannot be taken away (no privilege),
 * PostgreSQL's refusal stands.
 */
async function updateRows(
  tx: Tx,
  plan: TablePlan,
  step: Step,
): Promise<{ updated: number; inserted?: number }> {
  const unique = uniqueBesidesKey(plan);
  if (unique.constraints.length + unique.indexes.length === 0) {
    return { updated: (await tx.unsafe(updateSql(plan))).count };
  }
  try {
    return { updated: await tx.savepoint(async (sp) => (await sp.unsafe(updateSql(plan))).count) };
  } catch (error) {
    if ((error as { code?: string }).code !== UNIQUE_VIOLATION) throw error;
    const names = [...unique.constraints, ...unique.indexes].map((u) => u.name).join(", ");
    step(
      `rows of ${plan.spec.name} swap values under ${names}: writing them with it dropped and re-created, which needs the table to itself (the app's readers wait until COMMIT)`,
    );
    try {
      return await tx.savepoint(async (sp) => {
        await suspend(sp, plan, unique);
        const updated = (await sp.unsafe(updateSql(plan))).count;
        const inserted = (await sp.unsafe(insertSql(plan))).count;
        await restore(sp, plan, unique);
        return { inserted, updated };
      });
    } catch (retry) {
      if ((retry as { code?: string }).code === INSUFFICIENT_PRIVILEGE) throw error;
      throw retry;
    }
  }
}

/**
 * Serial and identity columns that SQLite filled: their sequences move past
 * the highest value, so that the app's next INSERT does not collide. Called
 * once, after every check passed, and only in a run that commits: setval is
 * never rolled back, so a dry run, or a run that fails, must not call it.
 */
export async function syncSequences(
  tx: Tx,
  plans: TablePlan[],
  written: Map<TablePlan, Written>,
  options: Options,
): Promise<void> {
  if (options.mode !== "migrate") return;
  for (const plan of plans) {
    // Only where rows went in: a run that wrote nothing reads nothing more.
    const rows = written.get(plan);
    if (rows && rows.inserted + rows.updated > 0) await syncSequencesOf(tx, plan);
  }
}

async function syncSequencesOf(tx: Tx, plan: TablePlan): Promise<void> {
  for (const column of plan.columns) {
    if (column.kind !== "integer" || !column.target.filled) continue;
    const [{ sequence }] = await tx.unsafe(
      `SELECT pg_get_serial_sequence($1, $2) AS sequence`,
      [plan.target.qualified, column.name],
    );
    if (!sequence) continue;
    await tx.unsafe(
      `SELECT setval($1::regclass, max) FROM (SELECT max(${
        q(column.name)
      }) FROM ${plan.target.qualified}) m
       WHERE max IS NOT NULL AND max > (SELECT last_value FROM ${sequence})`,
      [sequence],
    );
  }
}

/** How the target differs from the staged source, per table. */
export interface Diff {
  /** Source rows the target lacks. */
  missing: number;
  /** Target rows the source lacks. */
  extra: number;
  /** Rows in both whose values differ. */
  differ: number;
}

/** Whether the target table has any row. */
export async function hasRows(tx: Tx, plan: TablePlan): Promise<boolean> {
  const [{ filled }] = await tx.unsafe(
    `SELECT EXISTS (SELECT FROM ${plan.target.qualified}) AS filled`,
  );
  return filled;
}

/** What was written to one table. */
export interface Written {
  inserted: number;
  updated: number;
  pruned: number;
  seconds: number;
}

/** Nothing written yet, for every table. */
export function noWrites(plans: TablePlan[]): Map<TablePlan, Written> {
  return new Map(plans.map((plan) => [plan, { inserted: 0, updated: 0, pruned: 0, seconds: 0 }]));
}
