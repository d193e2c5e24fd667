/**
 * First runs: rows from SQLite straight into the empty target, verified by
 * count and digest sum.
 *
 * @module
 */

import type { CountCheck, Options, Verification } from "./types.ts";
import type { Source } from "./sqlite_source.ts";
import { columnList, type TablePlan } from "./plan.ts";
import { duplicateSourceKeys } from "./sqlite_read.ts";
import type { ValidationLog } from "./validate.ts";
import { DigestSum } from "./digest.ts";
import { copyInto, copyLine, Prefetch } from "./copy.ts";
import {
  BULK_INSERT_ROWS,
  hasRows,
  restore,
  suspend,
  suspendable,
  type Written,
} from "./table_ops.ts";
import { checkOrphans, hasForeignKey, parentOf } from "./orphans.ts";
import { encodedRows } from "./staging.ts";
import { payloadChecks, verifySum } from "./verify.ts";
import {
  Abandon,
  abandoningLog,
  fastPath,
  type Load,
  type Loaded,
  type Stopped,
} from "./fast_path.ts";

/**
 * A first run, when every target table is empty: rows go from SQLite straight
 * into the target, without staging, so every payload is parsed and written
 * once, as a hand-tuned COPY does. Keys, indexes and foreign keys are
 * suspended and rebuilt as in a bulk write, which checks them all, and the
 * target's own CHECK constraints and triggers see every row. Verification
 * compares each table's row count and the sum of its rows' digests with
 * SQLite's: any row that differs changes the sum (see "Row digests").
 *
 * Only data that needs no explaining takes this path. The first problem
 * (an invalid value, an orphan, a duplicate), a refusal by PostgreSQL, or a
 * sum that differs rolls it back to its savepoint and returns null: the
 * careful path then stages and checks everything and names every offending
 * row. Nothing reaches the reject file from here.
 */
export async function loadDirect(
  { tx, source, plans, options, step }: Load,
): Promise<Loaded | Stopped | null> {
  if (options.mode === "verify-only") return null;
  for (const plan of plans) if (await hasRows(tx, plan)) return null;
  return await fastPath(tx, step, async (sp) => {
    const log = abandoningLog(plans);
    const written = new Map<TablePlan, Written>();
    const sums = new Map<TablePlan, DigestSum>();
    const linesOf = (plan: TablePlan) => {
      const sum = new DigestSum();
      sums.set(plan, sum);
      return directLines(source, plan, options, log, sum);
    };
    const counts = new Map<TablePlan, CountCheck>();
    const unverified: TablePlan[] = [];
    let ahead: Prefetch | undefined;
    for (const [k, plan] of plans.entries()) {
      if (duplicateSourceKeys(source, plan).length > 0) throw new Abandon("duplicate keys");
      const tableStarted = performance.now();
      const bulk = source.tables[plan.spec.name].rows >= BULK_INSERT_ROWS;
      const suspended = bulk ? suspendable(plan, true) : { constraints: [], indexes: [] };
      const writing = `writing ${plan.spec.name} straight into PostgreSQL`;
      step(`${writing} (first run${bulk ? "; keys and indexes are rebuilt after" : ""})`);
      const mine = ahead;
      // The next table's lines are made while PostgreSQL works on this one.
      ahead = k + 1 < plans.length ? new Prefetch(linesOf(plans[k + 1])) : undefined;
      const meanwhile = <T>(work: Promise<T>) => ahead ? ahead.during(work) : work;
      await meanwhile(suspend(sp, plan, suspended));
      const into = `${plan.target.qualified} (${columnList(plan)})`;
      const progress = () =>
        options.onProgress?.({
          table: plan.spec.name,
          done: sums.get(plan)!.read,
          total: source.tables[plan.spec.name].rows,
        });
      // The lines made ahead go first. Then PostgreSQL verifies the tables
      // written before, which nothing writes any more (no trigger of this
      // table or a later one could), while JavaScript makes more of this
      // table's lines: it would otherwise wait, and PostgreSQL wait for it.
      // (A table made ahead whole leaves nothing to make meanwhile: the
      // tables before it are verified at the end, with parallel workers.)
      if (
        mine && !mine.allMade && unverified.length > 0 &&
        plans.slice(k).every((p) => p.target.triggers.length === 0)
      ) {
        await copyInto(sp, into, mine.made(), progress, mine);
        for (const done of unverified.splice(0)) {
          step(`verifying ${done.spec.name} against SQLite while reading ${plan.spec.name}`, true);
          counts.set(done, await mine.during(verifySum(sp, source, done, sums.get(done)!, false)));
        }
        step(`${writing} (the rest)`, true);
      }
      await copyInto(sp, into, mine ? mine.lines() : linesOf(plan), progress, ahead);
      if (bulk) step(`indexing ${plan.spec.name}`);
      // Before the foreign key is rebuilt: where the target declares it,
      // rebuilding finds orphans anyway; where it does not, this does.
      if (plan.spec.references && !hasForeignKey(plan)) {
        const parents = parentOf(plans, plan)?.parent.target.qualified;
        await meanwhile(
          checkOrphans(sp, plans, plan, options, log, plan.target.qualified, parents),
        );
      }
      await meanwhile(restore(sp, plan, suspended));
      const inserted = sums.get(plan)!.rows;
      const seconds = (performance.now() - tableStarted) / 1000;
      written.set(plan, { inserted, updated: 0, pruned: 0, seconds });
      unverified.push(plan);
    }
    step("verifying every row against its source");
    for (const plan of unverified) {
      counts.set(plan, await verifySum(sp, source, plan, sums.get(plan)!));
    }
    const { jsonObjects, sample } = await payloadChecks(sp, plans);
    const verification: Verification = {
      ok: true,
      counts: plans.map((plan) => counts.get(plan)!),
      jsonObjects,
      sample,
      mismatches: [],
      rechecked: 0,
    };
    return { strategy: "direct", written, verification };
  });
}

/** One table's clean rows as COPY lines for the target itself, counted and summed into `sum`. */
function directLines(
  source: Source,
  plan: TablePlan,
  options: Options,
  log: ValidationLog,
  sum: DigestSum,
): Generator<string, number> {
  // OVERRIDING SYSTEM VALUE is implied: COPY writes identity columns as given.
  return encodedRows(source, plan, options, log, (read) => (sum.read = read), (clean, digest) => {
    sum.add(digest);
    return copyLine(clean);
  });
}
