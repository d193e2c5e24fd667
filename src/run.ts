/**
 * A run: read, validate, load and verify inside one transaction; migrate()
 * and verify().
 *
 * @module
 */

import type { Options, Report, Step } from "./types.ts";
import { MigrationError, PROBLEM_KINDS } from "./errors.ts";
import { createTableDdl, TABLES } from "./tables.ts";
import { q } from "./quote.ts";
import { resolveConnection } from "./connection_settings.ts";
import { resolveOptions } from "./options.ts";
import { asMigrationError } from "./pg_errors.ts";
import { connect, getReady, type Sql, type Tx } from "./connect.ts";
import { TARGET_TABLE } from "./catalog.ts";
import { openSource, type Source } from "./sqlite_source.ts";
import { describePlan, planTables, type TablePlan } from "./plan.ts";
import type { ProblemSink } from "./validate.ts";
import { syncSequences } from "./table_ops.ts";
import type { Load, Loaded } from "./fast_path.ts";
import { loadDirect } from "./first_run.ts";
import { rerunByBuckets } from "./rerun.ts";
import { loadCarefully } from "./careful.ts";
import { buildReport } from "./report.ts";
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
  const loaded = await load({ tx, source, plans, options, step, sink }, session.readOnly);
  const report = buildReport(loaded, { plans, source, options, started });
  if (!report.ok && options.mode !== "verify-only") {
    throw new MigrationError(
      "verification",
      "verification failed: PostgreSQL does not match SQLite; the transaction was rolled back",
      PROBLEM_KINDS["content-mismatch"].hint,
      report.verification.mismatches,
      report,
    );
  }
  await syncSequences(tx, plans, loaded.written, options);
  return report;
}

/**
 * Loads the target by the first strategy that applies: a check that reads
 * only where nothing can be written, a first run straight into empty tables,
 * a rerun by buckets of digests, or the careful path, which also takes over
 * from either on any doubt.
 */
async function load(run: Load, readOnly: boolean): Promise<Loaded> {
  // Where nothing can be written (a standby), a check compares without
  // temporary tables.
  if (readOnly) return await checkWithoutWriting(run);
  if (run.options.careful) return await loadCarefully(run);
  const direct = await loadDirect(run);
  if (direct && "strategy" in direct) return direct;
  const rerun = await rerunByBuckets(run);
  if (rerun && "strategy" in rerun) return rerun;
  const stopped = rerun?.stopped ?? direct?.stopped;
  return { ...await loadCarefully(run), carefulBecause: stopped };
}

/**
 * One migration per target at a time: a transaction-level advisory lock is
 * released by COMMIT, ROLLBACK or a lost connection, so it cannot leak.
 */
async function lockTarget(tx: Tx, options: Options, step: Step): Promise<void> {
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
      if (found) continue;
      for (const ddl of createTableDdl(table)) {
        options.onStep?.(`${ddl};`);
        await tx.unsafe(ddl);
      }
    }
  }
}

/** Readers go on; writers wait until COMMIT, so the rows compared are the rows kept. */
async function lockTables(
  tx: Tx,
  plans: TablePlan[],
  options: Options,
  step: Step,
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
