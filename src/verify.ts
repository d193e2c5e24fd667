/**
 * Verification: the target equals the staged source, row by row, and JSON
 * payloads are objects; the differences as problems.
 *
 * @module
 */

import type { CountCheck, Options, Sample, Verification } from "./types.ts";
import { VERIFY_ONLY_HINT } from "./errors.ts";
import { TRACKS } from "./tables.ts";
import { q } from "./quote.ts";
import type { Tx } from "./connect.ts";
import type { Source } from "./sqlite_source.ts";
import {
  keyMatch,
  keyOrder,
  keyText,
  type PlannedColumn,
  type TablePlan,
  tempTable,
} from "./plan.ts";
import { sourceLookup } from "./sqlite_read.ts";
import { ProblemLog, validateRow } from "./validate.ts";
import { comparableText, DIGEST, digestSql, type DigestSum, targetDigests } from "./digest.ts";
import { changeDetection, type Diff, extraRow, logRows, type Written } from "./table_ops.ts";
import { Abandon, parallelScans } from "./fast_path.ts";

export const isClean = (diff: Diff) => diff.missing + diff.extra + diff.differ === 0;

/**
 * Staged rows the target lacks or holds otherwise, and target rows SQLite
 * lacks: what a run writes. Staging holds every source row, or on a rerun that
 * shipped keys first, the rows whose digests differed.
 */
async function diffTable(tx: Tx, plan: TablePlan): Promise<Diff> {
  const [collect, markEqual] = changeDetection(
    plan,
    `(${targetDigests(plan, plan.staging === plan.keys ? undefined : plan.staging)})`,
  );
  await tx.unsafe(collect);
  await tx.unsafe(`ANALYZE ${plan.changes}`);
  await tx.unsafe(markEqual);
  const [row] = await tx.unsafe(`SELECT
      count(*) FILTER (WHERE migrate_missing)::int AS missing,
      count(*) FILTER (WHERE NOT migrate_missing AND NOT migrate_equal)::int AS differ
    FROM ${plan.changes}`);
  const [{ extra }] = await tx.unsafe(
    `SELECT count(*)::int AS extra FROM ${plan.target.qualified} t WHERE ${extraRow(plan)}`,
  );
  return { missing: row.missing, extra, differ: row.differ };
}

/** The diff that decides the writes; into an empty table, every staged row is missing. */
export async function diffBeforeWriting(tx: Tx, plan: TablePlan, staged: number): Promise<Diff> {
  const [{ empty }] = await tx.unsafe(
    `SELECT NOT EXISTS (SELECT FROM ${plan.target.qualified}) AS empty`,
  );
  return empty ? { missing: staged, extra: 0, differ: 0 } : diffTable(tx, plan);
}

/** Target rows that SQLite does not have, by key in byte order like SQLite's. */
export async function extraExamples(tx: Tx, plan: TablePlan, log: ProblemLog): Promise<void> {
  await logRows(
    tx,
    `SELECT ${keyText(plan, "t")} AS key FROM ${plan.target.qualified} t WHERE ${extraRow(plan)}
     ORDER BY ${keyOrder(plan, "t")}`,
    [],
    log,
    (row) => ({ kind: "extra-row", table: plan.spec.name, key: row.key }),
  );
}

/**
 * The tutorial's checks (counts, JSONB objects, sample query) plus the proof
 * of content: every target row compared with its SQLite source.
 */
export async function verifyTarget(
  tx: Tx,
  source: Source,
  plans: TablePlan[],
  skipped: Map<TablePlan, number>,
  options: Options,
): Promise<Verification> {
  const counts: CountCheck[] = [];
  const mismatches = new ProblemLog();
  let rechecked = 0;
  for (const plan of plans) {
    const [{ n }] = await tx.unsafe(`SELECT count(*)::int AS n FROM ${plan.target.qualified}`);
    const sqlite = source.tables[plan.spec.name].rows;
    counts.push({
      table: plan.spec.name,
      sqlite,
      expected: sqlite - skipped.get(plan)!,
      postgres: n,
    });
    rechecked += await verifyFromSource(tx, source, plan, options, mismatches);
  }
  const { jsonObjects, sample } = await payloadChecks(tx, plans);
  // --verify-only wrote nothing, so no trigger changed a row on the way in:
  // SQLite or PostgreSQL changed since the last run, and a run mends it.
  const hint = options.mode === "verify-only" ? VERIFY_ONLY_HINT : undefined;
  return {
    ok: mismatches.total === 0 && counts.every((c) => c.expected === c.postgres),
    counts,
    jsonObjects,
    sample,
    mismatches: mismatches.groups.map((group) => hint ? { ...group, hint } : group),
    rechecked,
  };
}

/** Rows whose digests differ are read again and compared by value, this many at a time. */
const RECHECK_BATCH = 500;

/** Beyond this many differing digests, the rows are reported without a second look. */
const RECHECK_MAX = 100_000;

/**
 * Compares every target row with its SQLite source, by digest, and rows
 * whose digests differ by value (see "Row digests"); logs rows that are
 * missing, extra or different as content mismatches. Returns how many rows
 * were compared by value.
 */
async function verifyFromSource(
  tx: Tx,
  source: Source,
  plan: TablePlan,
  options: Options,
  log: ProblemLog,
): Promise<number> {
  const k = q(plan.spec.key[0]);
  const found = tempTable(plan.spec.name, "verify");
  const keys = plan.spec.key.map((key, i) => `coalesce(s.${q(key)}, t.${q(key)})::text AS k${i}`);
  // Rows present on one side only; then every row's digest, whatever the
  // comparison before writing found: a row it wrongly took for equal, or
  // one written by something else, differs here.
  await tx.unsafe(`CREATE TEMPORARY TABLE ${found} ON COMMIT DROP AS
    SELECT ${keys.join(", ")},
      CASE WHEN t.${k} IS NULL THEN 'missing in PostgreSQL' ELSE 'only in PostgreSQL' END AS what
    FROM ${plan.target.qualified} t FULL JOIN ${plan.keys} s ON ${keyMatch(plan, "s", "t")}
    WHERE t.${k} IS NULL OR s.${k} IS NULL`);
  await tx.unsafe(`INSERT INTO ${found}
    SELECT ${plan.spec.key.map((key) => `s.${q(key)}::text`).join(", ")}, 'values differ'
    FROM (${targetDigests(plan)}) t JOIN ${plan.keys} s ON ${keyMatch(plan, "s", "t")}
    WHERE t.${DIGEST} <> s.${DIGEST}`);
  const key = plan.spec.key.map((_, i) => `k${i}`).join(" || '/' || ");
  const differ = await tx.unsafe(
    `SELECT ${plan.spec.key.map((_, i) => `k${i}`).join(", ")} FROM ${found}
     WHERE what = 'values differ' LIMIT ${RECHECK_MAX + 1}`,
  );
  // What differs in each row compared by value: the columns, both sides.
  const details = new Map<string, string>();
  if (differ.length <= RECHECK_MAX) {
    // Equal by value after all (1.0 stored as 1.00): not a mismatch.
    const equal: string[] = [];
    for (let i = 0; i < differ.length; i += RECHECK_BATCH) {
      const batch = differ.slice(i, i + RECHECK_BATCH)
        .map((row) => plan.spec.key.map((_, j) => row[`k${j}`] as string));
      const different = await recheck(tx, source, plan, options, batch);
      for (const [k, detail] of different) details.set(k, detail);
      equal.push(...batch.map((k) => k.join("/")).filter((k) => !different.has(k)));
    }
    await tx.unsafe(`DELETE FROM ${found} WHERE ${key} = ANY($1::text[])`, [equal]);
  }
  await logRows(
    tx,
    `SELECT ${key} AS key, what FROM ${found} ORDER BY ${key} COLLATE "C"`,
    [],
    log,
    (row) => ({
      kind: "content-mismatch",
      table: plan.spec.name,
      key: row.key,
      value: details.get(row.key) ?? row.what,
    }),
  );
  return differ.length;
}

/**
 * How a target column is compared with a source value sent as text: the
 * stored value printed (`::text`, byte for byte) against the text the
 * digest hashes. Never the source value cast to the column's type: the cast
 * would apply the very truncation or rounding (`varchar(5)` drops trailing
 * spaces) the comparison is there to catch. JSONB is compared as JSONB, the
 * source's text parsed by jsonb's own input (no type modifier, nothing to
 * round): equal values with other digits (1.0, 1.00) are equal.
 */
function sameValue(column: PlannedColumn, stored: string, sent: string): string {
  return column.kind === "json" && column.target.baseName === "jsonb"
    ? `${stored} IS NOT DISTINCT FROM ${sent}::jsonb`
    : `${stored}::text COLLATE "C" IS NOT DISTINCT FROM ${sent}`;
}

/**
 * Reads the rows with these keys from SQLite again and compares them with
 * the target by value, over bind parameters; returns the keys that differ
 * (their parts joined by `/`), each with what differs: `name: "Old" in
 * SQLite, "New" in PostgreSQL`.
 */
export async function recheck(
  tx: Tx,
  source: Source,
  plan: TablePlan,
  options: Options,
  keys: string[][],
): Promise<Map<string, string>> {
  const lookup = sourceLookup(source, plan);
  const columns: (string | null)[][] = plan.columns.map(() => []);
  const quiet = new ProblemLog();
  for (const key of keys) {
    const [row] = lookup.all(...key);
    const clean = row ? validateRow(source, plan, row, options, quiet, quiet) : null;
    // A row that is gone or now invalid cannot match: its key alone shows it.
    plan.columns.forEach((column, i) => {
      const keyAt = plan.keyIndexes.indexOf(i);
      columns[i].push(
        clean ? comparableText(column, clean[i]) : keyAt >= 0 ? key[keyAt] : null,
      );
    });
  }
  // The key's cast only finds the row (by its index); the comparison of
  // every column, the key's too, is by text.
  const found = plan.keyIndexes.map((i) =>
    `t.${q(plan.columns[i].name)} = u.c${i}::${plan.columns[i].target.stageType}`
  );
  const same = plan.columns.map((c, i) => sameValue(c, `t.${q(c.name)}`, `u.c${i}`));
  // Each column's two sides as text, where they differ; JSONB as PostgreSQL
  // prints it on both sides, so that the first difference is one of value.
  const sides = plan.columns.map((c, i) => {
    const sent = c.kind === "json" && c.target.baseName === "jsonb"
      ? `u.c${i}::jsonb::text`
      : `u.c${i}`;
    return `CASE WHEN NOT (${same[i]}) THEN ARRAY[${sent}, t.${q(c.name)}::text] END AS d${i}`;
  });
  const rows = await tx.unsafe(
    `SELECT u.n, t.${q(plan.spec.key[0])} IS NULL AS gone, ${sides.join(", ")}
     FROM unnest(${plan.columns.map((_, i) => `$${i + 1}::text[]`).join(", ")})
       WITH ORDINALITY AS u(${plan.columns.map((_, i) => `c${i}`).join(", ")}, n)
     LEFT JOIN ${plan.target.qualified} t ON ${found.join(" AND ")}
     WHERE t.${q(plan.spec.key[0])} IS NULL OR NOT (${same.join(" AND ")})`,
    columns as never[],
  );
  return new Map(rows.map((row) => {
    const differences = plan.columns.flatMap((c, i) => {
      const pair = row[`d${i}`] as (string | null)[] | null;
      if (!pair) return [];
      const [a, b] = shownPair(pair[0], pair[1], c.kind === "text");
      return [`${c.name}: ${a} in SQLite, ${b} in PostgreSQL`];
    });
    const detail = row.gone || differences.length === 0
      ? "values differ"
      : `values differ: ${differences.join("; ")}`;
    return [keys[Number(row.n) - 1].join("/"), detail];
  }));
}

/** Characters of a differing value shown, and of what comes before the difference. */
const SHOWN_CHARS = 60;
const SHOWN_BEFORE = 20;

/**
 * Two differing values as a mismatch shows them: around where they first
 * differ (long payloads share their start), shortened, text quoted, NULL as NULL.
 */
function shownPair(a: string | null, b: string | null, quoted: boolean): [string, string] {
  let same = 0;
  if (a !== null && b !== null) { while (same < a.length && a[same] === b[same]) same++; }
  const start = Math.max(0, same - SHOWN_BEFORE);
  const show = (value: string | null) => {
    if (value === null) return "NULL";
    const cut = value.slice(start, start + SHOWN_CHARS);
    const text = quoted ? JSON.stringify(cut) : cut;
    return `${start > 0 ? "…" : ""}${text}${start + SHOWN_CHARS < value.length ? "…" : ""}`;
  };
  return [show(a), show(b)];
}

/**
 * Of rows a comparison took for equal by value though their digests differ
 * (1.0 stored as 1.00), how many differ from SQLite's rows after all: each
 * read again from SQLite and compared by value, as {@link verifyTarget}
 * compares (see `sameValue`), not as the comparison that chose them did.
 */
export async function differFromSource(
  tx: Tx,
  source: Source,
  plan: TablePlan,
  options: Options,
  keys: string[][],
): Promise<number> {
  let differ = 0;
  for (let i = 0; i < keys.length; i += RECHECK_BATCH) {
    differ += (await recheck(tx, source, plan, options, keys.slice(i, i + RECHECK_BATCH))).size;
  }
  return differ;
}

/** The seed's JSONB checks, where the target has tracks with a JSON raw_json (jsonb or json). */
export async function payloadChecks(
  tx: Tx,
  plans: TablePlan[],
  counted?: number,
): Promise<{ jsonObjects: number; sample: Sample | null }> {
  const tracks = plans.find((p) => p.spec === TRACKS);
  const json = payloadJson(tracks);
  if (!tracks || !json) return { jsonObjects: 0, sample: null };
  const [{ objects }] = counted !== undefined ? [{ objects: counted }] : await tx.unsafe(
    `SELECT count(*)::int AS objects FROM ${tracks.target.qualified} t WHERE ${isObject(json)}`,
  );
  // In key order, the scan stops at the first track with an album.
  const hasName = tracks.columns.some((c) => c.name === "name");
  const [sample] = await tx.unsafe(
    `SELECT ${hasName ? "name" : "track_id"} AS name,
            ${json}->'album'->>'release_date' AS release_date, ${json}->>'explicit' AS explicit
     FROM ${tracks.target.qualified} t WHERE ${json} ? 'album' ORDER BY track_id LIMIT 1`,
  );
  return {
    jsonObjects: objects,
    sample: sample
      ? { name: sample.name, releaseDate: sample.release_date, explicit: sample.explicit }
      : null,
  };
}

/** The tracks' payload as jsonb in SQL, over the target row `t`, if the plan has one. */
export function payloadJson(plan: TablePlan | undefined): string | null {
  const payload = plan?.spec === TRACKS &&
    plan.columns.find((c) => c.name === "raw_json" && c.kind === "json");
  return payload ? `t.${q(payload.name)}::jsonb` : null;
}

export const isObject = (json: string) =>
  `${json} IS NOT NULL AND jsonb_typeof(${json}) = 'object'`;

/**
 * A table's count and digest sum, from PostgreSQL's stored rows, against
 * SQLite's. PostgreSQL may share the scan among parallel workers (the
 * target is an ordinary table, and printing the payloads is the work), for
 * this query only: keys built later keep the server's own choice. Not with
 * `parallel` false: JavaScript is busy meanwhile and needs the other core.
 */
export async function verifySum(
  tx: Tx,
  source: Source,
  plan: TablePlan,
  expected: DigestSum,
  parallel = true,
): Promise<CountCheck> {
  if (parallel) await parallelScans(tx);
  const [{ rows, sum }] = await tx.unsafe(
    `SELECT count(*)::int AS rows, coalesce(sum(${DIGEST}), 0)::text AS sum
     FROM (${targetDigests(plan)}) t`,
  );
  if (parallel) await parallelScans(tx, false);
  if (rows !== expected.rows || BigInt.asIntN(64, BigInt(sum)) !== expected.value) {
    throw new Abandon(`digest sum of ${plan.spec.name}`);
  }
  const sqlite = source.tables[plan.spec.name].rows;
  return { table: plan.spec.name, sqlite, expected: sqlite, postgres: rows };
}

/**
 * After a rerun's writes, every row it wrote must be in the target with its
 * source's digest. Each is looked up by key (LATERAL: the planner would
 * otherwise hash every target row to join a few), and the digest computed
 * for those rows only. The other rows compared equal in this transaction,
 * under lock, and nothing wrote them (see {@link noOtherWrites}).
 */
export async function verifyWritten(tx: Tx, plan: TablePlan): Promise<void> {
  const [{ written, equal }] = await tx.unsafe(
    `SELECT count(*)::int AS written,
       (count(*) FILTER (WHERE t.${DIGEST} = c.${DIGEST}))::int AS equal
     FROM ${plan.changes} c LEFT JOIN LATERAL (
       SELECT ${digestSql(plan)} AS ${DIGEST} FROM ${plan.target.qualified} t
       WHERE ${keyMatch(plan, "c", "t")}) t ON true
     WHERE NOT c.migrate_equal`,
  );
  if (equal !== written) throw new Abandon(`${plan.spec.name} still differs after writing`);
}

/**
 * A trigger on a table written may write any row of any table: then the
 * rows this transaction wrote (its own or its subtransactions' xids, which
 * age() puts at 0 or below) must be exactly those it meant to write, or the
 * careful path compares everything. Deleted rows are the row counts' part.
 */
export async function noOtherWrites(tx: Tx, plan: TablePlan, written: Written): Promise<void> {
  const [{ n }] = await tx.unsafe(
    `SELECT count(*)::int AS n FROM ${plan.target.qualified} t WHERE age(t.xmin) <= 0`,
  );
  if (n !== written.inserted + written.updated) {
    throw new Abandon(`a trigger wrote other rows of ${plan.spec.name}`);
  }
}
