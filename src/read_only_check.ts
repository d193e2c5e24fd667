/**
 * --verify-only where nothing can be written, not even a temporary table:
 * a hot standby, or a role whose transactions are read-only. Every row's
 * digest is compared in JavaScript: SQLite's held by digest, PostgreSQL's
 * streamed past them.
 *
 * @module
 */

import type { CountCheck, Options } from "./types.ts";
import { MigrationError, VERIFY_ONLY_HINT } from "./errors.ts";
import type { Tx } from "./connect.ts";
import type { Source } from "./sqlite_source.ts";
import { keyText, type TablePlan } from "./plan.ts";
import { readPages } from "./sqlite_read.ts";
import { ProblemLog, validateRow } from "./validate.ts";
import { fieldHashes, RowDigest, rowDigestSql } from "./digest.ts";
import { rowDigest } from "./staging.ts";
import { payloadChecks, recheck } from "./verify.ts";
import { noWrites } from "./table_ops.ts";
import type { Load, Loaded } from "./fast_path.ts";

/** A digest as one string: its signed high and low halves, as both sides print them. */
const digestKey = (high: number, low: number) => `${high | 0}:${low | 0}`;

/** The same over a bigint digest `d` in SQL. */
const DIGEST_KEY_SQL = `((d >> 32)::int4)::text || ':' || (((d << 32) >> 32)::int4)::text`;

/** Rows that differ by digest and are read again and compared by value, at most. */
const RECHECK_MAX = 10_000;

/**
 * Compares each table with SQLite by reading only: no lock beyond a
 * reader's, nothing created. Rows whose digests differ are compared again
 * by value (equal JSONB stored with other digits is not a mismatch).
 */
export async function checkWithoutWriting(
  { tx, source, plans, options, step }: Load,
): Promise<Loaded> {
  step("comparing SQLite with PostgreSQL row by row, reading only (the server takes no writes)");
  const counts: CountCheck[] = [];
  const mismatches = new ProblemLog();
  for (const plan of plans) {
    const ours = sourceDigests(source, plan, options);
    const theirs = await compareTarget(tx, plan, ours);
    const sqlite = source.tables[plan.spec.name].rows;
    counts.push({ table: plan.spec.name, sqlite, expected: sqlite, postgres: theirs.rows });
    const missing = new Set([...ours.values()].flat());
    const extra = new Set(theirs.unmatched);
    const differ = [...missing].filter((k) => extra.has(k));
    const equal = new Set(
      differ.length > RECHECK_MAX ? [] : await equalByValue(tx, source, plan, options, differ),
    );
    const log = (key: string, value: string) =>
      mismatches.add({ kind: "content-mismatch", table: plan.spec.name, key, value });
    for (const key of [...missing].sort()) {
      if (!extra.has(key)) log(key, "missing in PostgreSQL");
      else if (!equal.has(key)) log(key, "values differ");
    }
    for (const key of [...extra].sort()) if (!missing.has(key)) log(key, "only in PostgreSQL");
  }
  const { jsonObjects, sample } = await payloadChecks(tx, plans);
  return {
    strategy: "read-only",
    written: noWrites(plans),
    verification: {
      ok: mismatches.total === 0 && counts.every((c) => c.expected === c.postgres),
      counts,
      jsonObjects,
      sample,
      mismatches: mismatches.groups.map((group) => ({ ...group, hint: VERIFY_ONLY_HINT })),
      rechecked: 0,
    },
  };
}

/** SQLite's rows by digest: each digest's keys (as messages show them, `a/b/c`). */
function sourceDigests(source: Source, plan: TablePlan, options: Options): Map<string, string[]> {
  const problems = new ProblemLog();
  // A policy's changes (--invalid-json=null) are what a migration stored.
  const policies = new ProblemLog();
  const byDigest = new Map<string, string[]>();
  const digest = new RowDigest();
  for (const page of readPages(source, plan, options.batchSize)) {
    for (const row of page) {
      const clean = validateRow(source, plan, row, options, problems, policies);
      if (!clean) continue;
      rowDigest(digest, plan, clean);
      const key = plan.keyIndexes.map((i) => String(clean[i])).join("/");
      const at = digestKey(digest.high, digest.low);
      const keys = byDigest.get(at);
      if (keys) keys.push(key);
      else byDigest.set(at, [key]);
    }
  }
  if (problems.total > 0) {
    throw new MigrationError(
      "data",
      `SQLite holds rows that a migration would refuse (${plan.spec.name}); nothing was compared`,
      "fix them in SQLite: a dry run against the primary lists each one with its fix",
      problems.groups,
    );
  }
  return byDigest;
}

/**
 * Streams the target's rows' digests past SQLite's, taking out each one
 * found; returns how many rows there were and the keys SQLite lacks.
 */
async function compareTarget(tx: Tx, plan: TablePlan, ours: Map<string, string[]>) {
  let rows = 0;
  const unmatched: string[] = [];
  await tx.unsafe(
    `SELECT key, ${DIGEST_KEY_SQL} AS digest
     FROM (SELECT ${keyText(plan, "t")} AS key, ${rowDigestSql(fieldHashes(plan))} AS d
           FROM ${plan.target.qualified} t) r`,
  ).forEach((row) => {
    rows++;
    const keys = ours.get(row.digest);
    const at = keys?.indexOf(row.key) ?? -1;
    if (at < 0) unmatched.push(row.key);
    else if (keys!.length === 1) ours.delete(row.digest);
    else keys!.splice(at, 1);
  });
  return { rows, unmatched };
}

/** Of keys whose rows differ by digest, those equal by value after all. */
async function equalByValue(
  tx: Tx,
  source: Source,
  plan: TablePlan,
  options: Options,
  keys: string[],
): Promise<string[]> {
  // A key of one column is the text itself; of several, the parts, where
  // no part holds the separator (otherwise the row stays reported).
  const parts = keys.map((k) => plan.spec.key.length === 1 ? [k] : k.split("/"))
    .filter((p) => p.length === plan.spec.key.length);
  if (parts.length === 0) return [];
  const different = await recheck(tx, source, plan, options, parts);
  return parts.map((p) => p.join("/")).filter((k) => !different.has(k));
}
