/**
 * The careful path's staging: every row validated and copied into a temporary
 * table beside its digest, then checked set-based in PostgreSQL.
 *
 * @module
 */

import type { Options } from "./types.ts";
import { MigrationError } from "./errors.ts";
import { q } from "./quote.ts";
import type { Tx } from "./connect.ts";
import type { CleanValue } from "./values.ts";
import type { Source } from "./sqlite_source.ts";
import { columnList, keyMatch, type TablePlan, tempTable } from "./plan.ts";
import { duplicateSourceKeys, readRows, sourceLookup } from "./sqlite_read.ts";
import { ProblemLog, type ProblemSink, validateRow, type ValidationLog } from "./validate.ts";
import { addCanonical, DIGEST, RowDigest, targetDigests } from "./digest.ts";
import { copyInto, copyLine } from "./copy.ts";
import { checkConstraints, hasRows } from "./table_ops.ts";
import { checkOrphans } from "./orphans.ts";

/**
 * Staging: a temporary table per source table, in the target's own column
 * types, plus each row's digest as JavaScript computed it from SQLite.
 */
const STAGING_STATISTICS = 10;

export async function createStaging(tx: Tx, plan: TablePlan, firstRun: boolean): Promise<void> {
  const columns = plan.columns.map((c) => `${q(c.name)} ${c.target.stageType}`);
  await tx.unsafe(
    `CREATE TEMPORARY TABLE ${plan.staging} (${
      columns.join(", ")
    }, ${DIGEST} bigint) ON COMMIT DROP`,
  );
  await chooseStagingStorage(tx, plan, firstRun);
}

/**
 * Payloads are compressed once, in staging, with lz4 where the server has it:
 * PostgreSQL copies a compressed value into the target as it is, and lz4 is
 * much cheaper than the default pglz both ways (the large data set's tracks
 * stage in 4.5 s instead of 6.8 s, and read back twice as fast in the
 * comparison). Without lz4, payloads stay compressed for a first run, where
 * they are copied, and uncompressed when the target already has rows, where
 * they are mostly compared (a rerun of the large data set: 12.3 s → 10.4 s).
 */
async function chooseStagingStorage(tx: Tx, plan: TablePlan, firstRun: boolean): Promise<void> {
  const json = plan.columns.filter((c) => c.kind === "json");
  if (json.length === 0) return;
  const [{ lz4 }] = await tx.unsafe(`SELECT EXISTS (SELECT FROM pg_settings
    WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) AS lz4`);
  const storage = lz4 ? "SET COMPRESSION lz4" : firstRun ? null : "SET STORAGE EXTERNAL";
  if (storage === null) return;
  for (const column of json) {
    await tx.unsafe(`ALTER TABLE ${plan.staging} ALTER COLUMN ${q(column.name)} ${storage}`);
  }
}

/**
 * Reads, validates and encodes one table as COPY lines, each made by
 * `encode` from the clean row and its digest; rows with problems are logged
 * and never sent. Returns the number of rows sent.
 */
export function* encodedRows(
  source: Source,
  plan: TablePlan,
  options: Options,
  log: ValidationLog,
  progress: (done: number) => void,
  encode: (clean: CleanValue[], digest: RowDigest, row: unknown[]) => string,
): Generator<string, number> {
  const refused = log.refused.get(plan.spec.name)!;
  const singleKey = plan.keyIndexes.length === 1 ? plan.keyIndexes[0] : -1;
  const digest = new RowDigest();
  let read = 0;
  let sent = 0;
  for (const row of readRows(source, plan, options.batchSize)) {
    if (++read % 1024 === 0) progress(read);
    const clean = validateRow(source, plan, row, options, log.problems, log.policies);
    if (!clean) {
      const key = row[singleKey];
      if (typeof key === "string") refused.push(key);
      continue;
    }
    sent++;
    yield encode(clean, rowDigest(digest, plan, clean), row);
  }
  progress(read);
  return sent;
}

/** Staging lines: the row, or only its key, followed by its digest. */
function stagingLines(
  source: Source,
  plan: TablePlan,
  options: Options,
  log: ValidationLog,
  progress: (done: number) => void,
  keysOnly: boolean,
): Generator<string, number> {
  return encodedRows(
    source,
    plan,
    options,
    log,
    progress,
    keysOnly
      ? (clean, digest) => copyLine([...plan.keyIndexes.map((i) => clean[i]), digest.value])
      : (clean, digest) => copyLine([...clean, digest.value]),
  );
}

/** The digest of one clean row: see "Row digests". */
export function rowDigest(digest: RowDigest, plan: TablePlan, clean: CleanValue[]): RowDigest {
  const order = plan.digestOrder;
  const keyFields = plan.keyIndexes.length;
  for (let place = 0; place < order.length; place++) {
    const i = order[place];
    addCanonical(digest, plan.columns[i], clean[i]);
    digest.endField(place < keyFields);
  }
  return digest.finish();
}

/**
 * Reads every SQLite table in load order, validates every row against the
 * target's types, and COPYs the clean rows into staging. Then checks what
 * needs the whole set: orphans, the target's CHECK and UNIQUE rules. Throws
 * with every problem found, before anything reaches the target tables.
 */
export async function stageSource(
  tx: Tx,
  source: Source,
  plans: TablePlan[],
  options: Options,
  sink: ProblemSink | undefined,
): Promise<
  { staged: Map<TablePlan, number>; skipped: Map<TablePlan, number>; policies: ProblemLog }
> {
  const log: ValidationLog = {
    problems: new ProblemLog(sink && ((p) => sink(p, "refused"))),
    policies: new ProblemLog(sink && ((p) => sink(p, "changed")), true),
    refused: new Map(plans.map((p) => [p.spec.name, []])),
  };
  for (const plan of plans) {
    for (const duplicate of duplicateSourceKeys(source, plan)) {
      log.problems.add({
        kind: "duplicate-key",
        table: plan.spec.name,
        key: duplicate.key,
        value: `${duplicate.count} rows${
          duplicate.folded
            ? ", equal as PostgreSQL compares the key (char(n) ignores trailing spaces, citext case)"
            : ""
        }`,
      });
    }
  }
  const staged = new Map<TablePlan, number>();
  for (const plan of plans) {
    const filled = await hasRows(tx, plan);
    await createStaging(tx, plan, !filled);
    // A rerun of a table with payloads ships keys and digests first, and
    // whole rows only where the target's digest differs: PostgreSQL then
    // parses only the payloads that changed.
    const keysFirst = filled && !plan.spec.references &&
      plan.columns.some((c) => c.kind === "json");
    if (keysFirst) await createKeys(tx, plan);
    const total = source.tables[plan.spec.name].rows;
    let done = 0;
    let sent = 0;
    const progress = () => options.onProgress?.({ table: plan.spec.name, done, total });
    const lines = stagingLines(source, plan, options, log, (read) => (done = read), keysFirst);
    const counted = (function* () {
      sent = yield* lines;
    })();
    const into = keysFirst
      ? `${plan.keys} (${plan.spec.key.map(q).join(", ")}, ${DIGEST})`
      : `${plan.staging} (${columnList(plan)}, ${DIGEST})`;
    await copyInto(tx, into, counted, progress);
    done = total;
    progress();
    if (keysFirst) await stageChangedRows(tx, source, plan, options);
    staged.set(plan, sent);
  }
  const skipped = new Map<TablePlan, number>();
  for (const plan of plans) {
    skipped.set(plan, await checkOrphans(tx, plans, plan, options, log));
    await checkConstraints(tx, plan, options, log.problems);
  }
  if (log.problems.total > 0) {
    throw new MigrationError(
      "data",
      `${log.problems.total} problem(s) in the SQLite data; nothing was written`,
      "fix the rows named above in SQLite and rerun",
      log.problems.groups,
    );
  }
  for (const plan of plans) {
    staged.set(plan, staged.get(plan)! - skipped.get(plan)!);
    await analyzeStaging(tx, plan);
  }
  return { staged, skipped, policies: log.policies };
}

/**
 * Statistics for the joins on the key; the payload columns need none. A
 * sample of 3,000 rows (statistics target 10) plans these joins as well as the
 * default 30,000 and takes a tenth of the time: 170 ms → 20 ms for medium's
 * tracks, whose wide rows make every sampled page a read.
 */
async function analyzeStaging(
  tx: Tx,
  plan: TablePlan,
  tables = [plan.staging, plan.keys],
): Promise<void> {
  for (const statement of analyzeSql(plan, tables)) await tx.unsafe(statement);
}

export function analyzeSql(plan: TablePlan, tables: string[]): string[] {
  const columns = plan.spec.key.map(q);
  return [...new Set(tables)].flatMap((table) => [
    `ALTER TABLE ${table} ${
      columns.map((c) => `ALTER COLUMN ${c} SET STATISTICS ${STAGING_STATISTICS}`).join(", ")
    }`,
    `ANALYZE ${table} (${columns.join(", ")})`,
  ]);
}

/** The keys-and-digests table of a rerun that ships keys first. */
async function createKeys(tx: Tx, plan: TablePlan): Promise<void> {
  plan.keys = tempTable(plan.spec.name, "keys");
  const columns = plan.keyIndexes.map((i) => plan.columns[i])
    .map((c) => `${q(c.name)} ${c.target.stageType}`);
  await tx.unsafe(
    `CREATE TEMPORARY TABLE ${plan.keys} (${columns.join(", ")}, ${DIGEST} bigint) ON COMMIT DROP`,
  );
}

/**
 * Reads again, by key, the source rows whose digest the target lacks or has
 * otherwise, and stages them whole: what a rerun may write, and what it
 * compares by value (a digest can differ for rows equal as JSONB).
 */
async function stageChangedRows(
  tx: Tx,
  source: Source,
  plan: TablePlan,
  options: Options,
): Promise<void> {
  const k = q(plan.spec.key[0]);
  const changed = await tx.unsafe(
    `SELECT ${plan.spec.key.map((key, i) => `k.${q(key)}::text AS k${i}`).join(", ")}
     FROM ${plan.keys} k LEFT JOIN (${targetDigests(plan)}) t ON ${keyMatch(plan, "k", "t")}
     WHERE t.${k} IS NULL OR t.${DIGEST} <> k.${DIGEST}`,
  );
  if (changed.length === 0) return;
  const lookup = sourceLookup(source, plan);
  const quiet = new ProblemLog();
  const digest = new RowDigest();
  const lines = function* () {
    for (const row of changed) {
      const [found] = lookup.all(...plan.spec.key.map((_, i) => row[`k${i}`]));
      const clean = found && validateRow(source, plan, found, options, quiet, quiet);
      if (clean) yield copyLine([...clean, rowDigest(digest, plan, clean).value]);
    }
  };
  await copyInto(tx, `${plan.staging} (${columnList(plan)}, ${DIGEST})`, lines(), () => {});
}
