/**
 * A run: read, validate, load and verify inside one transaction; migrate()
 * and verify().
 *
 * @module
 */

import type { Options, Report } from "./types.ts";
import { MigrationError, PROBLEM_KINDS } from "./errors.ts";
import { createTableDdl, TABLES } from "./tables.ts";
import { q } from "./quote.ts";
import { describeConnection, resolveConnection } from "./connection_settings.ts";
import { resolveOptions } from "./options.ts";
import { asMigrationError } from "./pg_errors.ts";
import { connect, getReady, type Sql, type Tx } from "./connect.ts";
import { TARGET_TABLE } from "./catalog.ts";
import { openSource, type Source } from "./sqlite_source.ts";
import { describePlan, planTables, type TablePlan } from "./plan.ts";
import { ProblemLog, type ProblemSink } from "./validate.ts";
import {
  type Diff,
  pruneRows,
  pruneSql,
  syncSequences,
  writeTable,
  type Written,
} from "./table_ops.ts";
import { stageSource } from "./staging.ts";
import { diffBeforeWriting, extraExamples, isClean, verifyTarget } from "./verify.ts";
import { loadDirect } from "./first_run.ts";
import { rerunByBuckets } from "./rerun.ts";
import { columnReport, tableReport } from "./report.ts";
import { openRejectFile } from "./reject_file.ts";
import { ownSession, transactionMode } from "./session.ts";
import { advisoryLockOn, conflictingTableLocks, waitForLock } from "./lock_wait.ts";
import { checkPrivileges } from "./privileges.ts";
import { checkWithoutWriting } from "./read_only_check.ts";

const WORK_MEM = "256MB";

/** Thrown inside the transaction to roll it back after a dry run or verify-only. */
class Rollback {
  constructor(readonly report: Report) {}
}

/**
 * Migrates SQLite to PostgreSQL in one transaction and returns what it did.
 * Throws {@link MigrationError} when data, setup or verification stops it;
 * the target is then exactly as it was.
 *
 * @example
 * ```ts
 * import { migrate } from "./migrate.ts";
 * const report = await migrate({ sqlitePath: "app.db", mode: "dry-run" });
 * for (const t of report.tables) console.log(t.table, t.inserted, t.updated);
 * ```
 */
export async function migrate(options: Partial<Options> = {}): Promise<Report> {
  const resolved: Options = { ...resolveOptions([], {}).options, ...options };
  // A library caller's databaseUrl is used alone; the CLI passes the
  // connection it resolved from the environment too.
  resolved.connection = options.connection ??
    { ...resolveConnection(resolved.databaseUrl, "DATABASE_URL", {}) };
  resolved.connectTimeout = options.connectTimeout ?? resolved.connection.connectTimeout;
  const started = performance.now();
  getReady(resolved.connection);
  const source = openSource(resolved.sqlitePath, resolved);
  const rejects = resolved.rejectFile ? openRejectFile(resolved.rejectFile) : undefined;
  let sql: Sql | undefined;
  // Seconds to let the connection close politely. After a failure nothing is
  // worth waiting for: a query cut off with its connection never settles,
  // and would hold the exit for the whole timeout.
  let closeTimeout = 5;
  try {
    sql = await connect(resolved);
    return await sql.begin(transactionMode(resolved.mode), async (tx) => {
      const report = await runInTransaction(tx, source, resolved, started, rejects?.sink);
      if (resolved.mode !== "migrate") throw new Rollback(report);
      report.committed = true;
      return report;
    }) as Report;
  } catch (error) {
    if (error instanceof Rollback) return error.report;
    closeTimeout = 0;
    throw asMigrationError(error, resolved.connection);
  } finally {
    rejects?.close();
    source.db.close();
    await sql?.end({ timeout: closeTimeout });
  }
}

/**
 * Compares the target with the SQLite source without writing anything.
 * Same checks as after a migration; `report.ok` says whether they match.
 *
 * @example
 * ```ts
 * import { verify } from "./migrate.ts";
 * const report = await verify({ sqlitePath: "app.db" });
 * if (!report.ok) console.log(report.verification.mismatches);
 * ```
 */
export function verify(options: Partial<Options> = {}): Promise<Report> {
  return migrate({ ...options, mode: "verify-only" });
}

/** The steps of a run, each returning what the next needs. */
async function runInTransaction(
  tx: Tx,
  source: Source,
  options: Options,
  started: number,
  sink: ProblemSink | undefined,
): Promise<Report> {
  const step = options.onStep ?? (() => {});
  const session = await ownSession(tx, options);
  options.onSettings?.(session.settings);
  // A check reads one snapshot (REPEATABLE READ) and, as any reader, waits
  // for no one.
  const reading = options.mode === "verify-only";
  if (!reading) await lockTarget(tx, options, step);
  await prepareTarget(tx, options);
  await checkPrivileges(tx, options);
  const plans = await planTables(tx, source, options);
  for (const plan of plans) step(describePlan(plan, source));
  if (!reading) await lockTables(tx, plans, options, step);

  // Where nothing can be written (a standby), a check compares without
  // temporary tables.
  const fast = session.readOnly
    ? await checkWithoutWriting(tx, source, plans, options, step)
    : options.careful
    ? null
    : await loadDirect(tx, source, plans, options, step) ??
      await rerunByBuckets(tx, source, plans, options, step);
  if (fast) {
    await syncSequences(tx, plans, fast.written, options);
    const rows = new Map(plans.map((p) => [p, source.tables[p.spec.name].rows]));
    const none = new Map(plans.map((p) => [p, 0]));
    return {
      ok: fast.verification.ok,
      mode: options.mode,
      committed: false,
      sqlitePath: options.sqlitePath,
      target: describeConnection(options.connection!),
      schema: options.schema,
      columns: plans.map(columnReport),
      tables: plans.map((p) => tableReport(p, source, rows, none, fast.written.get(p), 0)),
      verification: fast.verification,
      policies: [],
      seconds: (performance.now() - started) / 1000,
    };
  }

  step("reading SQLite and staging it in PostgreSQL");
  const stageStarted = performance.now();
  const { staged, skipped, policies } = await stageSource(tx, source, plans, options, sink);
  const stageSeconds = (performance.now() - stageStarted) / 1000;

  step("comparing with PostgreSQL");
  const diffs = new Map<TablePlan, Diff>();
  for (const plan of plans) diffs.set(plan, await diffBeforeWriting(tx, plan, staged.get(plan)!));
  await refuseExtraRows(tx, plans, diffs, options, sink);

  const written = options.mode === "verify-only" || [...diffs.values()].every(isClean)
    ? new Map<TablePlan, Written>()
    : await writeChanges(tx, plans, diffs, staged, options.prune, step);
  step("verifying every row against its source");
  const verification = await verifyTarget(tx, source, plans, skipped, options);
  const report: Report = {
    ok: verification.ok,
    mode: options.mode,
    committed: false,
    sqlitePath: options.sqlitePath,
    target: describeConnection(options.connection!),
    schema: options.schema,
    columns: plans.map(columnReport),
    tables: plans.map((plan) =>
      tableReport(plan, source, staged, skipped, written.get(plan), stageSeconds)
    ),
    verification,
    policies: policies.groups,
    seconds: (performance.now() - started) / 1000,
  };
  if (!verification.ok && options.mode !== "verify-only") {
    throw new MigrationError(
      "verification",
      "verification failed: PostgreSQL does not match SQLite; the transaction was rolled back",
      PROBLEM_KINDS["content-mismatch"].hint,
      verification.mismatches,
      report,
    );
  }
  await syncSequences(tx, plans, written, options);
  return report;
}

/** Rows only in PostgreSQL stop the run, unless --prune deletes them (or nothing is written). */
async function refuseExtraRows(
  tx: Tx,
  plans: TablePlan[],
  diffs: Map<TablePlan, Diff>,
  options: Options,
  sink: ProblemSink | undefined,
): Promise<void> {
  const extra = [...diffs.values()].some((d) => d.extra > 0);
  if (!extra || options.prune || options.mode === "verify-only") return;
  const extras = new ProblemLog(sink && ((p) => sink(p, "refused")));
  for (const plan of plans) await extraExamples(tx, plan, extras);
  throw new MigrationError(
    "data",
    "PostgreSQL holds rows that SQLite does not have; nothing was written",
    PROBLEM_KINDS["extra-row"].hint,
    extras.groups,
  );
}

/** Prunes (children first), then updates and inserts (parents first). */
async function writeChanges(
  tx: Tx,
  plans: TablePlan[],
  diffs: Map<TablePlan, Diff>,
  staged: Map<TablePlan, number>,
  prune: boolean,
  step: (line: string) => void,
): Promise<Map<TablePlan, Written>> {
  const written = new Map(
    plans.map((plan) => [plan, { inserted: 0, updated: 0, pruned: 0, seconds: 0 }]),
  );
  for (const plan of [...plans].reverse()) {
    if (!prune || diffs.get(plan)!.extra === 0) continue;
    step(`pruning ${plan.spec.name} rows that SQLite does not have`);
    written.get(plan)!.pruned = await pruneRows(tx, plans, plan, pruneSql(plan), step);
  }
  for (const plan of plans) {
    const diff = diffs.get(plan)!;
    if (diff.missing + diff.differ === 0) continue;
    const tableStarted = performance.now();
    step(`writing ${plan.spec.name}`);
    const { inserted, updated } = await writeTable(tx, plan, diff, staged.get(plan)!, step);
    Object.assign(written.get(plan)!, {
      inserted,
      updated,
      seconds: (performance.now() - tableStarted) / 1000,
    });
  }
  return written;
}

/**
 * One migration per target at a time: a transaction-level advisory lock is
 * released by COMMIT, ROLLBACK or a lost connection, so it cannot leak.
 */
async function lockTarget(tx: Tx, options: Options, step: (line: string) => void): Promise<void> {
  const [{ key }] = await tx`SELECT hashtext(${`migrate.ts:${options.schema}`}) AS key`;
  await waitForLock(
    tx,
    {
      what: `the lock of migrations into schema ${options.schema}`,
      take: (sp) => sp`SELECT pg_advisory_xact_lock(${key}::int)`,
      heldBy: advisoryLockOn(BigInt(key)),
      onlyMigrations: true,
    },
    options,
    step,
  );
}

async function prepareTarget(tx: Tx, options: Options): Promise<void> {
  if (options.createSchema) {
    await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS ${q(options.schema)}`);
  }
  const [{ exists }] = await tx`
    SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = ${options.schema}) AS exists`;
  if (!exists) {
    throw new MigrationError(
      "config",
      `PostgreSQL schema ${options.schema} does not exist`,
      "create it, or pass --create-schema",
    );
  }
  // Type names and constraint expressions from the catalog print relative to
  // the search path: with the target schema on it, they resolve as written.
  await tx.unsafe(`SET LOCAL search_path TO ${q(options.schema)}`);
  // The diff and the key-ordered insert sort and hash whole tables; with the
  // default 4 MB they spill to disk. This is the server's memory, for this
  // transaction only; index builds after a bulk load use the maintenance one.
  await tx.unsafe(`SET LOCAL work_mem = '${WORK_MEM}'`);
  await tx.unsafe(`SET LOCAL maintenance_work_mem = '${WORK_MEM}'`);
  // Payloads are compressed with lz4 where the server has it, in staging and
  // in target columns that leave the method to the server's default: the
  // same JSONB, written about twice as fast as with pglz and read faster.
  await tx.unsafe(`SELECT set_config('default_toast_compression', 'lz4', true)
    FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)`);
  if (options.createSchema) {
    for (const table of TABLES) {
      // A table that exists is the user's: it is used as it is, indexes and all.
      const [found] = await tx.unsafe(TARGET_TABLE, [options.schema, table.name]);
      if (!found) { for (const ddl of createTableDdl(table)) await tx.unsafe(ddl); }
    }
  }
}

/** Readers go on; writers wait until COMMIT, so the rows compared are the rows kept. */
async function lockTables(
  tx: Tx,
  plans: TablePlan[],
  options: Options,
  step: (line: string) => void,
): Promise<void> {
  const tables = plans.map((p) => p.target.qualified);
  await waitForLock(
    tx,
    {
      what: `tables ${
        plans.map((p) => p.spec.name).join(", ")
      } (LOCK TABLE … IN SHARE ROW EXCLUSIVE MODE)`,
      take: (sp) => sp.unsafe(`LOCK TABLE ${tables.join(", ")} IN SHARE ROW EXCLUSIVE MODE`),
      heldBy: conflictingTableLocks(tables),
    },
    options,
    step,
  );
}
