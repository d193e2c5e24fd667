/**
 * Reruns: buckets of digests compared first, rows only where a bucket differs.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type postgres from "postgres";
import type { CountCheck, Options } from "./types.ts";
import { q } from "./quote.ts";
import type { Tx } from "./connect.ts";
import { prepareArrays, type Source } from "./sqlite_source.ts";
import { columnList, keyMatch, type TablePlan, tempTable } from "./plan.ts";
import { duplicateSourceKeys, readPages, sourceColumns } from "./sqlite_read.ts";
import { validateRow, type ValidationLog } from "./validate.ts";
import {
  DIGEST,
  digestSql,
  fieldHashes,
  LITTLE_ENDIAN,
  RowDigest,
  rowDigestSql,
} from "./digest.ts";
import { collectIfLarge } from "./memory.ts";
import { copyInto, copyLine } from "./copy.ts";
import {
  changeDetection,
  hasRows,
  insertSql,
  noWrites,
  pruneRows,
  updateSql,
} from "./table_ops.ts";
import { orphansAfterChanges, orphansInTarget } from "./orphans.ts";
import { analyzeSql, createStaging, rowDigest } from "./staging.ts";
import {
  differFromSource,
  isObject,
  noOtherWrites,
  payloadChecks,
  payloadJson,
  verifyWritten,
} from "./verify.ts";
import {
  Abandon,
  abandoningLog,
  fastPath,
  type Load,
  type Loaded,
  parallelScans,
  type Stopped,
} from "./fast_path.ts";

/**
 * SQLite's side of a table on a rerun: its rows in buckets by key, each
 * bucket with its row count and the exact sum of its rows' digests (as the
 * signed high and low halves, summed apart), and each
 * row's bucket, rowid and digest: of a bucket that differs, the rows whose
 * digests the target lacks are read again.
 */
interface SourceBuckets {
  size: number;
  rows: number;
  /**
   * Per bucket, side by side: its row count, and the sums of its rows'
   * digests' high and low halves, both signed (see {@link BUCKET_ROWS}).
   */
  sums: Float64Array;
  rowids: Uint32Array | Float64Array;
  bucketOf: Int32Array;
  /** Each row's digest, its signed high half then its low half: see {@link matchDigests}. */
  digests: Int32Array;
}

/**
 * Rows a bucket may hold: below 2^21 rows of less than 2^32 each, a double
 * sums a half exactly, so both sides compare numbers, no BigInt (reading a
 * large table's buckets back made a BigInt or four per bucket, and 20 MB of
 * garbage). With four to sixteen rows a bucket, only a target with hundreds of
 * millions of rows more than SQLite could reach it; then the careful path.
 */
const BUCKET_ROWS = 2 ** 21;

/**
 * Buckets for a table: fewer make PostgreSQL's grouping cheaper (the medium
 * set's 300,000 snapshots in 2^17 buckets: 320–400 ms; in 2^15: 240–280)
 * and the bucket table shorter to read back, but each row of a differing
 * bucket is digested again (see scanBuckets). Where a row holds JSON, that
 * is printing it again (~25 µs a track), so about four rows a bucket; other
 * rows take well under a microsecond, so about sixteen. At most 2^18 buckets
 * (6 MB of counts and sums).
 */
function bucketsFor(plan: TablePlan, rows: number): number {
  const perBucket = plan.columns.some((c) => c.kind === "json") ? 4 : 16;
  return 2 ** Math.min(18, Math.max(8, Math.ceil(Math.log2(Math.max(1, rows / perBucket)))));
}

/**
 * A row's bucket in SQL, over the target row `t` (or over `hashes`, its
 * fields' hashes already computed): the key's fields' hashes, each shifted
 * left by its place and XORed, masked.
 */
function bucketSql(plan: TablePlan, size: number, hashes = fieldHashes(plan)): string {
  const parts = hashes.slice(0, plan.keyIndexes.length)
    .map((hash, place) => place === 0 ? hash : `(${hash} << ${place})`);
  return `((${parts.join(" # ")}) & ${size - 1})::int`;
}

/** The same in JavaScript, from a row just digested: see {@link RowDigest.endField}. */
const rowBucket = (digest: RowDigest, size: number) => digest.keyHash & (size - 1);

/**
 * Lets the queries just issued leave before a stretch of synchronous work:
 * postgres.js writes on the next turn of the event loop, and Deno's socket
 * (TLS or not) sends on the one after. Measured: one turn left a query
 * waiting for the whole stretch; two, none.
 */
async function onTheWire(): Promise<void> {
  for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * Each row of a query as it arrives (postgres.js's forEach, which keeps no
 * rows). postgres.js rejects the query with an error the callback throws,
 * but goes on calling it for the rows after: those are skipped.
 */
async function eachRow(
  query: postgres.PendingQuery<postgres.Row[]>,
  take: (row: postgres.Row) => void,
): Promise<void> {
  let failed = false;
  await query.forEach((row) => {
    if (failed) return;
    try {
      take(row);
    } catch (error) {
      failed = true;
      throw error;
    }
  });
}

/**
 * The bytes of a text of hex digits (`encode(bytes, 'hex')`, whatever the
 * session's bytea_output): V8's Uint8Array.fromHex where the runtime has it
 * (a millisecond a megabyte), else Buffer's (as postgres.js reads a bytea,
 * ten times slower).
 */
const fromHex = (hex: string): Uint8Array => {
  const native = Uint8Array as unknown as { fromHex?: (hex: string) => Uint8Array };
  return native.fromHex ? native.fromHex(hex) : Buffer.from(hex, "hex");
};

/**
 * Buckets read back as bytes: each bucket its number, count, and sums of
 * high and low halves, as `int4send` and `int8send` write them, a range of
 * the bucket table's pages a row (each compared as it arrives). As text,
 * four numbers a bucket, JavaScript took as long to parse them as PostgreSQL
 * to print them (the medium set's 2^17 buckets: 150 ms in all; 100 ms as
 * bytes, before collecting their garbage). The bytes come as hex text (see
 * {@link fromHex}): PostgreSQL's binary COPY would send them
 * raw, but postgres.js leaves its socket paused after a large one, and the
 * next query waits forever. Ranges of pages (a TID range scan each), not of
 * bucket numbers (a scan of the whole table each) nor groups (twice
 * PostgreSQL's time): 256 pages hold about 35,000 buckets (850 kB, twice
 * that as hex); the last range is open.
 */
const BUCKET_RANGE_PAGES = 256;

/** Rows of the bucket table a page: (8192 - 24) / (56 + 4), exact for its row type. */
const BUCKETS_A_PAGE = 136;

const BUCKET_BYTES = 24;

/**
 * Their garbage (the hex, postgres.js's copies of it, the bytes: about 7
 * bytes a byte) stays in V8's heap until a full collection, which V8 starts
 * late: the large set's 1 % rerun peaked at 160 MiB without one. The CLI
 * collects every 3 MB of hex (about 12 ms each; five on the large set, the
 * last when all are read): 139 MiB, as when the sums came as text. Only
 * while the process holds more than BUCKET_COLLECT_RSS: below it (the
 * medium set's reruns stay under 120 MiB) the garbage has room.
 */
const BUCKET_COLLECT_CHARS = 3_000_000;

/**
 * PostgreSQL's side: the target's buckets, summed from its stored rows into
 * a temporary table (by parallel workers where the server allows; a cursor
 * would forbid them), read back in batches. Returns once the query is sent,
 * so that PostgreSQL sums while JavaScript reads SQLite.
 */
async function targetBuckets(tx: Tx, plan: TablePlan, size: number) {
  const table = tempTable(plan.spec.name, "buckets");
  // Each field's hash once (OFFSET 0 keeps the planner from inlining the
  // key's twice), for the bucket and the digest.
  const hashes = fieldHashes(plan);
  const h = hashes.map((_, place) => `h.h${place}`);
  // The tracks' payloads that are JSON objects, counted on the way: where
  // nothing changes, the report needs no scan of its own.
  const json = payloadJson(plan);
  // The digest's halves summed apart, as JavaScript sums them, both as
  // signed int4: summed in an int8 (no numeric, as sum(int8) would be, nor
  // its cast), a sixth less time over 2^17 buckets.
  const summed = tx.unsafe(
    `CREATE TEMPORARY TABLE ${table} ON COMMIT DROP AS
     SELECT bucket, count(*)::int AS n, sum((d >> 32)::int4) AS high,
            sum(((d << 32) >> 32)::int4) AS low, count(*) FILTER (WHERE object)::int AS objects
     FROM (SELECT ${bucketSql(plan, size, h)} AS bucket, ${rowDigestSql(h)} AS d, h.object
           FROM (SELECT ${hashes.map((hash, place) => `${hash} AS h${place}`).join(", ")},
                        ${json ? isObject(json) : "false"} AS object
                 FROM ${plan.target.qualified} t OFFSET 0) h OFFSET 0) d
     GROUP BY 1`,
  ).execute();
  // Every bucket at once (see everyBucketAgrees), asked for right behind,
  // so it is ready when JavaScript is.
  // In bigint, not numeric (a quarter of the time over 2^18 buckets): each
  // sum split at 2^26 keeps every product within bigint (below 2^45 for
  // buckets under BUCKET_ROWS, checked after); sum(int8) adds in numeric.
  const split = (sum: string) =>
    [" >> 26", " & 67108863"].map((part, i) =>
      `coalesce(sum((bucket + 1)::int8 * (${sum}${part})), 0)::text AS ${sum}${i}`
    ).join(", ");
  const weighted = tx.unsafe(
    `SELECT coalesce(sum((bucket + 1)::int8 * n), 0)::text AS count, ${split("high")},
       ${split("low")}, coalesce(max(n), 0) AS largest,
       coalesce(sum(objects), 0)::int AS objects FROM ${table}`,
  ).execute();
  // Awaited by differingBuckets, unless reading SQLite abandons first.
  for (const query of [summed, weighted]) query.catch(() => {});
  await onTheWire();
  return { table, summed, weighted };
}

/** The tracks' payloads that are JSON objects, as {@link targetBuckets} counted them. */
async function countedObjects(
  theirs: Map<TablePlan, Awaited<ReturnType<typeof targetBuckets>>>,
): Promise<number | undefined> {
  const tracks = [...theirs.keys()].find((plan) => payloadJson(plan) !== null);
  if (!tracks) return undefined;
  const [{ objects }] = await theirs.get(tracks)!.weighted;
  return objects;
}

/** The buckets whose count or sums differ between the two sides. */
async function differingBuckets(
  tx: Tx,
  ours: SourceBuckets,
  theirs: Awaited<ReturnType<typeof targetBuckets>>,
): Promise<number[]> {
  await theirs.summed;
  if (await everyBucketAgrees(ours, theirs.weighted)) return [];
  const differ: number[] = [];
  const seen = new Uint8Array(ours.size);
  const sums = ours.sums;
  const ranges = Math.ceil(ours.size / (BUCKET_RANGE_PAGES * BUCKETS_A_PAGE));
  const pages = (range: number) => `'(${range * BUCKET_RANGE_PAGES},0)'::tid`;
  const rows = Array.from(
    { length: ranges },
    (_, range) =>
      `SELECT encode(string_agg(int4send(bucket) || int4send(n) || int8send(high) || int8send(low),
                              ''::bytea), 'hex') AS hex FROM ${theirs.table} WHERE ctid >= ${
        pages(range)
      }${range < ranges - 1 ? ` AND ctid < ${pages(range + 1)}` : ""}`,
  );
  // Exact as doubles: every sum is below 2^53 (see BUCKET_ROWS).
  const int64 = (view: DataView, at: number) =>
    view.getInt32(at) * 2 ** 32 + view.getUint32(at + 4);
  let received = 0;
  const collect = (atLeast: number) => {
    if (received < atLeast) return;
    collectIfLarge();
    received = 0;
  };
  // Each range as it arrives (see eachRow), while PostgreSQL goes on to the
  // next: a cursor's fetch waited for the row before, and PostgreSQL sat idle
  // while JavaScript compared it (the medium set's snapshots in 2^17
  // buckets: 100 ms, 80 this way).
  await eachRow(tx.unsafe(rows.join(" UNION ALL ")), ({ hex }) => {
    if (hex === null) return; // no rows in the range
    collect(BUCKET_COLLECT_CHARS);
    received += hex.length;
    const bytes = fromHex(hex);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let at = 0; at < view.byteLength; at += BUCKET_BYTES) {
      const bucket = view.getInt32(at);
      seen[bucket] = 1;
      const s = 3 * bucket;
      if (
        view.getInt32(at + 4) !== sums[s] || int64(view, at + 8) !== sums[s + 1] ||
        int64(view, at + 16) !== sums[s + 2]
      ) differ.push(bucket);
    }
  });
  // And what is left, before staging makes more.
  collect(1);
  for (let b = 0; b < ours.size; b++) if (!seen[b] && sums[3 * b] > 0) differ.push(b);
  return differ.sort((a, b) => a - b);
}

/**
 * Every bucket at once, before reading any back: the sums over buckets of
 * (bucket + 1) × its count, × its high halves' sum and × its low halves'
 * sum, exact on both sides. Where every bucket agrees they do; where one
 * differs, its sums do by the digests of the rows that differ, and the
 * weighted totals could still agree only by a 64-bit coincidence. Where
 * nothing changed, no bucket is read back.
 */
async function everyBucketAgrees(
  ours: SourceBuckets,
  weighted: Awaited<ReturnType<typeof targetBuckets>>["weighted"],
): Promise<boolean> {
  const [theirs] = await weighted;
  let largest = 0;
  for (let b = 0; b < ours.size; b++) largest = Math.max(largest, ours.sums[3 * b]);
  if (Math.max(largest, theirs.largest) >= BUCKET_ROWS) throw new Abandon("a bucket too large");
  const whole = (name: string) => (BigInt(theirs[`${name}0`]) << 26n) + BigInt(theirs[`${name}1`]);
  return [BigInt(theirs.count), whole("high"), whole("low")].every((total, part) =>
    total === weightedSum(ours, part)
  );
}

/**
 * The sum over buckets of (bucket + 1) × one of their sums (0: count,
 * 1: high halves, 2: low halves), exact: each sum (below 2^53, see
 * {@link BUCKET_ROWS}) split at 2^26, and the products summed as doubles
 * for 256 buckets at a time (below 2^53 with at most 2^18 buckets), then
 * as a BigInt: a thousand BigInts instead of a million.
 */
function weightedSum(ours: SourceBuckets, part: number): bigint {
  const SPLIT = 2 ** 26;
  let total = 0n;
  for (let start = 0; start < ours.size; start += 256) {
    let upper = 0;
    let lower = 0;
    for (let b = start; b < Math.min(start + 256, ours.size); b++) {
      const value = ours.sums[3 * b + part];
      const high = Math.floor(value / SPLIT);
      upper += (b + 1) * high;
      lower += (b + 1) * (value - high * SPLIT);
    }
    total += (BigInt(upper) << 26n) + BigInt(lower);
  }
  return total;
}

/**
 * Reads, validates and digests every row of a table, into buckets; the
 * first problem abandons the fast path. Nothing is sent to PostgreSQL.
 */
function sourceBuckets(
  source: Source,
  plan: TablePlan,
  options: Options,
  log: ValidationLog,
): SourceBuckets {
  const total = source.tables[plan.spec.name].rows;
  const size = bucketsFor(plan, total);
  const [[maxRowid]] = prepareArrays(source.db, `SELECT max(rowid) FROM ${q(plan.spec.name)}`)
    .all() as [[bigint | null]];
  const buckets: SourceBuckets = {
    size,
    rows: 0,
    sums: new Float64Array(3 * size),
    rowids: (maxRowid ?? 0n) < 2n ** 32n ? new Uint32Array(total) : new Float64Array(total),
    bucketOf: new Int32Array(total),
    digests: new Int32Array(2 * total),
  };
  const progress = (done: number) => options.onProgress?.({ table: plan.spec.name, done, total });
  // No generator between reading and summing, not even readRows: on a
  // large table each row's pass through one cost a tenth of the whole.
  const digest = new RowDigest();
  const { sums, rowids, bucketOf, digests } = buckets;
  let rows = 0;
  for (const page of readPages(source, plan, options.batchSize)) {
    for (const row of page) {
      const clean = validateRow(source, plan, row, options, log.problems, log.policies);
      if (!clean) throw new Abandon(`a row of ${plan.spec.name} refused`);
      rowDigest(digest, plan, clean);
      const bucket = rowBucket(digest, size);
      sums[3 * bucket]++;
      sums[3 * bucket + 1] += digest.high | 0;
      sums[3 * bucket + 2] += digest.low | 0;
      rowids[rows] = Number(row[row.length - 1]);
      digests[2 * rows] = digest.high;
      digests[2 * rows + 1] = digest.low;
      bucketOf[rows++] = bucket;
      if ((rows & 1023) === 0) progress(rows);
    }
  }
  buckets.rows = rows;
  progress(rows);
  return buckets;
}

/**
 * A rerun, when every target table has rows. SQLite's rows are read once and
 * summed into buckets by key, and PostgreSQL sums its stored rows the same
 * way; where every bucket agrees, nothing changed and nothing more is read,
 * sent or written. Otherwise PostgreSQL digests its rows of the differing
 * buckets (four to sixteen a bucket), and only the source rows whose digests it
 * lacks are staged and compared, and only their changes are written.
 * After writing, every staged row must be in the target with its source's
 * digest, and each table hold as many rows as SQLite: the other buckets
 * were equal and no write touched them (their keys are elsewhere, and the
 * tables are locked), so no other row can be missing or extra.
 *
 * Like {@link loadDirect}, it hands anything that needs explaining (a
 * problem in SQLite, rows only PostgreSQL has without --prune, an orphan,
 * a refusal, a bucket that still differs, verify-only finding a difference)
 * to the careful path, which starts from the beginning.
 */
export async function rerunByBuckets(
  { tx, source, plans, options, step }: Load,
): Promise<Loaded | Stopped | null> {
  for (const plan of plans) {
    if (!source.tables[plan.spec.name].pageable || !await hasRows(tx, plan)) return null;
    if (plan.target.constraints.some((c) => c.definition.endsWith("NOT VALID"))) return null;
  }
  return await fastPath(tx, step, async (sp) => {
    const log = abandoningLog(plans);
    step("comparing SQLite with PostgreSQL");
    step("comparing sums of row digests, bucket by bucket", true);
    const sources = new Map<TablePlan, SourceBuckets>();
    const differ = new Map<TablePlan, number[]>();
    const written = noWrites(plans);
    for (const plan of plans) {
      if (duplicateSourceKeys(source, plan).length > 0) throw new Abandon("duplicate keys");
    }
    // PostgreSQL sums every table's rows, one after the other, while
    // JavaScript reads SQLite's: all the queries go out before the reading,
    // so neither side waits for the other between tables. Without parallel
    // workers: on a small machine they take the core JavaScript needs.
    const theirs = new Map<TablePlan, Awaited<ReturnType<typeof targetBuckets>>>();
    for (const plan of plans) {
      theirs.set(
        plan,
        await targetBuckets(sp, plan, bucketsFor(plan, source.tables[plan.spec.name].rows)),
      );
    }
    for (const plan of plans) {
      const started = performance.now();
      sources.set(plan, sourceBuckets(source, plan, options, log));
      written.get(plan)!.seconds = (performance.now() - started) / 1000;
    }
    for (const plan of plans) {
      const started = performance.now();
      differ.set(plan, await differingBuckets(sp, sources.get(plan)!, theirs.get(plan)!));
      written.get(plan)!.seconds += (performance.now() - started) / 1000;
    }
    // From here on JavaScript mostly waits: workers may help PostgreSQL.
    await parallelScans(sp);
    const changed = plans.filter((p) => differ.get(p)!.length > 0);
    if (changed.length === 0) {
      await noOrphansInTarget(sp, plans);
    } else if (options.mode === "verify-only") {
      throw new Abandon("verify-only found differences");
    }
    const extras = new Map<TablePlan, string>();
    /** How the target's count of JSON objects changes with the writes. */
    let objects = 0;
    // PostgreSQL digests its rows of the differing buckets, and only the
    // rows whose digests the other side lacks are read again and staged
    // whole: where 1 % changed, a quarter of those buckets' tracks and a
    // fifteenth of their snapshots. Each table's comparison goes out as one
    // batch of statements, no round trip between them.
    for (const plan of changed) {
      const started = performance.now();
      step(`comparing the ${plan.spec.name} rows that may differ, one by one`);
      step(
        `staging the ${plan.spec.name} rows of ${differ.get(plan)!.length} differing bucket(s)`,
        true,
      );
      await createStaging(sp, plan, false);
      await scanBuckets(sp, plan, sources.get(plan)!, differ.get(plan)!);
      const { rowids, unmatched } = await matchDigests(
        sp,
        plan,
        sources.get(plan)!,
        differ.get(plan)!,
      );
      // The digests' garbage, before staging makes more (see
      // BUCKET_COLLECT_RSS): the large set's 1 % rerun peaked 4 MiB lower.
      collectIfLarge();
      await copyInto(sp, tempTable(plan.spec.name, "unmatched"), unmatched, () => {});
      await copyInto(
        sp,
        `${plan.staging} (${columnList(plan)}, ${DIGEST})`,
        rowLines(source, plan, options, log, rowids),
        () => {},
      );
      const staged = compareBuckets(sp, plan);
      extras.set(plan, staged.extra);
      objects += await staged.compared;
      written.get(plan)!.seconds += (performance.now() - started) / 1000;
    }
    for (const plan of plans) {
      const why = await orphansAfterChanges(sp, plans, plan, extras);
      if (why) throw new Abandon(why);
    }
    for (const plan of [...changed].reverse()) {
      const [{ n }] = await sp.unsafe(`SELECT count(*)::int AS n FROM ${extras.get(plan)}`);
      if (n === 0) continue;
      if (!options.prune) throw new Abandon(`rows only in PostgreSQL in ${plan.spec.name}`);
      written.get(plan)!.pruned = await pruneRows(sp, plans, plan, step, extras.get(plan));
    }
    for (const plan of changed) {
      const started = performance.now();
      step(`writing ${plan.spec.name}`);
      const entry = written.get(plan)!;
      entry.updated = (await sp.unsafe(updateSql(plan))).count;
      entry.inserted = (await sp.unsafe(insertSql(plan))).count;
      entry.seconds += (performance.now() - started) / 1000;
    }
    // Rows that stay may be orphans too where no foreign key rules them out.
    if (changed.length > 0) await noOrphansInTarget(sp, plans);
    step("verifying every row against its source");
    const counts: CountCheck[] = [];
    const triggered = plans.some((p) => p.target.triggers.length > 0);
    for (const plan of plans) {
      const ours = sources.get(plan)!;
      if (differ.get(plan)!.length > 0) await verifyWritten(sp, plan);
      if (changed.length > 0) {
        await bucketsAgreeAfterWriting(sp, source, plan, options, ours, differ.get(plan)!);
      }
      if (triggered && changed.length > 0) await noOtherWrites(sp, plan, written.get(plan)!);
      // Where nothing was written, PostgreSQL counted its rows bucket by
      // bucket, and every count agreed. After writing, count: more than our
      // statements can write (a trigger on a partition, a foreign key's
      // ON DELETE CASCADE from another table), and their counts would not say.
      const [{ n }] = changed.length === 0
        ? [{ n: ours.rows }]
        : await sp.unsafe(`SELECT count(*)::int AS n FROM ${plan.target.qualified}`);
      if (n !== ours.rows) throw new Abandon(`row count of ${plan.spec.name}`);
      const sqlite = source.tables[plan.spec.name].rows;
      counts.push({ table: plan.spec.name, sqlite, expected: sqlite, postgres: n });
    }
    // Counted while summing buckets, and changed as the writes said; a
    // trigger could change more: count again.
    const counted = triggered && changed.length > 0 ? undefined : await countedObjects(theirs);
    const { jsonObjects, sample } = await payloadChecks(
      sp,
      plans,
      counted === undefined ? undefined : counted + objects,
    );
    return {
      strategy: "buckets",
      written,
      verification: { ok: true, counts, jsonObjects, sample, mismatches: [], rechecked: 0 },
      differingBuckets: new Map(plans.map((p) => [p, differ.get(p)!.length])),
    };
  });
}

/**
 * After writing, the target's sums of every bucket that differed, and of
 * every bucket holding a row this transaction wrote (its xmin: see
 * {@link noOtherWrites}), summed again from the stored rows and compared
 * with SQLite's: what the comparison did not choose to write is looked at
 * again, whatever chose the writes. The other buckets agreed before
 * writing, in this transaction, under lock; nothing has inserted or updated
 * a row of theirs since, and a row deleted from them shows in the row
 * count. A row written outside the buckets that differed is a write no
 * comparison asked for: the careful path compares everything. One scan
 * hashing every key, as {@link scanBuckets}'s.
 */
async function bucketsAgreeAfterWriting(
  tx: Tx,
  source: Source,
  plan: TablePlan,
  options: Options,
  ours: SourceBuckets,
  differ: number[],
): Promise<void> {
  // Rows left as they are stored because they equal SQLite's by value
  // (1.0 as 1.00): their digests differ by design. Each is compared with
  // SQLite again, by value, and left out of both sides' sums.
  const excused = plan.changes && differ.length > 0
    ? await tx.unsafe(
      `SELECT ${plan.spec.key.map((k, i) => `t.${q(k)}::text AS k${i}`).join(", ")},
         ${bucketSql(plan, ours.size)} AS bucket, (t.${DIGEST} >> 32)::int4 AS high,
         ((t.${DIGEST} << 32) >> 32)::int4 AS low
       FROM ${plan.changes} t WHERE t.migrate_equal`,
    )
    : [];
  const sums = excused.length > 0 ? ours.sums.slice() : ours.sums;
  const keys = excused.map((row) => plan.spec.key.map((_, i) => row[`k${i}`] as string));
  if (await differFromSource(tx, source, plan, options, keys) > 0) {
    throw new Abandon(`${plan.spec.name} rows taken for equal differ from SQLite`);
  }
  for (const { bucket, high, low } of excused) {
    sums[3 * bucket] -= 1;
    sums[3 * bucket + 1] -= high;
    sums[3 * bucket + 2] -= low;
  }
  const unexcused = excused.length > 0
    ? ` AND NOT EXISTS (SELECT FROM ${plan.changes} c
          WHERE c.migrate_equal AND ${keyMatch(plan, "c", "t")})`
    : "";
  const hashes = fieldHashes(plan);
  const h = hashes.map((_, place) => `h.h${place}`);
  // A literal (as scanBuckets's), which PostgreSQL looks up by hash.
  const buckets = `'{${differ.join(",")}}'::int[]`;
  const rows = await tx.unsafe(
    `SELECT bucket, bucket = ANY(${buckets}) AS differed, count(*)::int AS n,
            sum((d >> 32)::int4)::text AS high, sum(((d << 32) >> 32)::int4)::text AS low
     FROM (SELECT ${bucketSql(plan, ours.size, h)} AS bucket, ${rowDigestSql(h)} AS d
           FROM (SELECT ${hashes.map((hash, place) => `${hash} AS h${place}`).join(", ")}
                 FROM ${plan.target.qualified} t
                 WHERE (age(t.xmin) <= 0 OR ${
      bucketSql(plan, ours.size)
    } = ANY(${buckets}))${unexcused}
                 OFFSET 0) h) d
     GROUP BY bucket`,
  );
  const agreed = new Set<number>();
  for (const { bucket, differed, n, high, low } of rows) {
    if (!differed) throw new Abandon(`${plan.spec.name} written outside the buckets that differed`);
    const s = 3 * bucket;
    if (
      n !== sums[s] || Number(high) !== sums[s + 1] || Number(low) !== sums[s + 2]
    ) {
      throw new Abandon(`a bucket of ${plan.spec.name} still differs after writing`);
    }
    agreed.add(bucket);
  }
  // A bucket the target no longer has a row of: SQLite has none either.
  if (differ.some((b) => !agreed.has(b) && sums[3 * b] > 0)) {
    throw new Abandon(`a bucket of ${plan.spec.name} still differs after writing`);
  }
}

/**
 * The target's rows of the differing buckets (a scan hashing every key), into
 * a table of their keys and digests; and a table for those digests that
 * SQLite's rows of the buckets lack (see {@link matchDigests}).
 */
async function scanBuckets(tx: Tx, plan: TablePlan, ours: SourceBuckets, differ: number[]) {
  const json = payloadJson(plan);
  await tx.unsafe(
    `CREATE TEMPORARY TABLE ${tempTable(plan.spec.name, "target")} ON COMMIT DROP AS
     SELECT ${plan.spec.key.map((k) => `t.${q(k)}`).join(", ")}, ${digestSql(plan)} AS ${DIGEST},
            ${json ? isObject(json) : "false"} AS object
     FROM ${plan.target.qualified} t
     WHERE ${bucketSql(plan, ours.size)} = ANY('{${differ.join(",")}}'::int[])`,
  );
  await tx.unsafe(
    `CREATE TEMPORARY TABLE ${tempTable(plan.spec.name, "unmatched")} (high bigint, low bigint)
     ON COMMIT DROP`,
  );
}

/**
 * Sends statements at once: PostgreSQL runs them in order, with no round
 * trip between them. Settles with their results, or with the first one's
 * failure.
 */
function queued(tx: Tx, statements: string[]): Promise<Record<string, unknown>[][]> {
  const results = statements.map((text) => tx.unsafe(text).execute());
  for (const result of results) result.catch(() => {});
  return Promise.all(results);
}

/**
 * Digests read back as bytes (`int8send`, as hex: see {@link fromHex}), a
 * sixteenth of them a row (by their low bits), each taken in as it arrives:
 * a few MB at most however many buckets differ.
 */
const DIGEST_CHUNKS = 16;

/** Where a digest's halves lie in an Int32Array that a BigInt64Array views too. */
const HIGH = LITTLE_ENDIAN ? 1 : 0;

const LOW = 1 - HIGH;

/**
 * Matches the digests of the target's rows of the differing buckets with
 * those of SQLite's rows of the same buckets, as multisets: a source row
 * whose digest the target has (the key is part of it) is unchanged, as the
 * bucket sums would have said of a bucket of it alone. Returns the rowids of
 * the other source rows, to stage, and as COPY lines (high and low halves)
 * the target's digests that no source row matched: rows that changed or only
 * PostgreSQL has. The target's digests are sorted as 64-bit integers through
 * a BigInt64Array over their halves, and each source digest looked up by
 * bisection: no BigInt, no object per digest.
 */
async function matchDigests(
  tx: Tx,
  plan: TablePlan,
  ours: SourceBuckets,
  differ: number[],
): Promise<{ rowids: number[]; unmatched: string[] }> {
  let theirs = new Int32Array(1 << 12);
  let n = 0;
  await eachRow(
    tx.unsafe(
      `SELECT encode(string_agg(int8send(${DIGEST}), ''::bytea), 'hex') AS hex
     FROM ${tempTable(plan.spec.name, "target")} GROUP BY ${DIGEST} & ${DIGEST_CHUNKS - 1}`,
    ),
    ({ hex }) => {
      const bytes = fromHex(hex as string);
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const count = bytes.length / 8;
      if (2 * (n + count) > theirs.length) {
        const bigger = new Int32Array(Math.max(2 * theirs.length, 2 * (n + count)));
        bigger.set(theirs);
        theirs = bigger;
      }
      for (let at = 0; at < bytes.length; at += 8, n++) {
        theirs[2 * n + HIGH] = view.getInt32(at);
        theirs[2 * n + LOW] = view.getInt32(at + 4);
      }
    },
  );
  new BigInt64Array(theirs.buffer, 0, n).sort();
  /** Whether target digest k is below (high, low) (low unsigned). */
  const below = (k: number, high: number, low: number) =>
    theirs[2 * k + HIGH] < high ||
    (theirs[2 * k + HIGH] === high && theirs[2 * k + LOW] >>> 0 < low);
  const equal = (k: number, high: number, low: number) =>
    theirs[2 * k + HIGH] === high && theirs[2 * k + LOW] >>> 0 === low;
  const matched = new Uint8Array(n);
  const wanted = new Uint8Array(ours.size);
  for (const bucket of differ) wanted[bucket] = 1;
  const rowids: number[] = [];
  const { digests, bucketOf } = ours;
  for (let r = 0; r < ours.rows; r++) {
    if (!wanted[bucketOf[r]]) continue;
    const high = digests[2 * r];
    const low = digests[2 * r + 1] >>> 0;
    let first = 0;
    for (let last = n; first < last;) {
      const middle = (first + last) >>> 1;
      if (below(middle, high, low)) first = middle + 1;
      else last = middle;
    }
    while (first < n && matched[first] && equal(first, high, low)) first++;
    if (first < n && equal(first, high, low)) matched[first] = 1;
    else rowids.push(ours.rowids[r]);
  }
  const unmatched: string[] = [];
  for (let k = 0; k < n; k++) {
    if (!matched[k]) unmatched.push(`${theirs[2 * k + HIGH]}\t${theirs[2 * k + LOW] >>> 0}\n`);
  }
  return { rowids, unmatched };
}

/**
 * The COPY lines of source rows read again by rowid, a page a query
 * (--batch-size, as readRows pages), not one.
 */
function* rowLines(
  source: Source,
  plan: TablePlan,
  options: Options,
  log: ValidationLog,
  rowids: number[],
): Generator<string> {
  const lookup = prepareArrays(
    source.db,
    `SELECT ${sourceColumns(source, plan)} FROM ${q(plan.spec.name)}
     WHERE rowid IN (SELECT value FROM json_each(?))`,
  );
  const digest = new RowDigest();
  for (let at = 0; at < rowids.length; at += options.batchSize) {
    const batch = rowids.slice(at, at + options.batchSize);
    const rows = lookup.all(JSON.stringify(batch));
    if (rows.length !== batch.length) throw new Abandon(`${plan.spec.name} changed while reading`);
    for (const row of rows) {
      const clean = validateRow(source, plan, row, options, log.problems, log.policies);
      if (!clean) throw new Abandon(`${plan.spec.name} changed while reading`);
      yield copyLine([...clean, rowDigest(digest, plan, clean).value]);
    }
  }
}

/**
 * Sends at once the comparison of a table's staged rows with the
 * target's rows of the same buckets (see {@link scanBuckets}), as the
 * careful path's comparison does: `plan.changes` holds what to write,
 * `extra` the keys in those buckets that only PostgreSQL has. `compared`
 * settles with how the target's count of JSON objects changes once written.
 */
function compareBuckets(tx: Tx, plan: TablePlan): { extra: string; compared: Promise<number> } {
  const theirs = tempTable(plan.spec.name, "target");
  const keys = plan.spec.key.map((k) => `t.${q(k)}`).join(", ");
  const json = payloadJson(plan);
  const [collect, markEqual] = changeDetection(plan, theirs);
  const extra = tempTable(plan.spec.name, "extra");
  const unmatched = tempTable(plan.spec.name, "unmatched");
  const compared = queued(tx, [
    ...analyzeSql(plan, [plan.staging, theirs]),
    collect,
    markEqual,
    `ANALYZE ${unmatched}`,
    `CREATE TEMPORARY TABLE ${extra} ON COMMIT DROP AS
     SELECT ${keys} FROM ${theirs} t
     WHERE t.${DIGEST} IN (SELECT (high << 32) | low FROM ${unmatched})
       AND NOT EXISTS (SELECT FROM ${plan.staging} s WHERE ${keyMatch(plan, "s", "t")})`,
    `ANALYZE ${plan.changes}`,
    `ANALYZE ${extra}`,
    // Once written, the staged rows stand where the target's rows whose
    // digests no source row matched stood (changed ones replaced, extra ones
    // pruned; rows equal by value count on both sides): the change in its
    // count of JSON objects, for the report.
    json
      ? `SELECT (SELECT count(*) FROM ${plan.staging} t WHERE ${isObject(json)})
              - (SELECT count(*) FROM ${theirs} t WHERE object
                   AND t.${DIGEST} IN (SELECT (high << 32) | low FROM ${unmatched})) AS objects`
      : "SELECT 0 AS objects",
  ]).then((results) => Number(results.at(-1)![0].objects));
  return { extra, compared };
}

/**
 * Orphans in the target: where nothing changed, or after the changes, it
 * holds exactly SQLite's rows, so its declared foreign key rules them out;
 * without one, look.
 */
async function noOrphansInTarget(tx: Tx, plans: TablePlan[]): Promise<void> {
  for (const plan of plans) {
    if (await orphansInTarget(tx, plans, plan) > 0) {
      throw new Abandon(`orphans in ${plan.spec.name}`);
    }
  }
}
