/**
 * What the fast paths share: a savepoint to fall back from, and the careful
 * path taking over on any doubt.
 *
 * @module
 */

import type { Options, Problem, ProblemGroup, Step, Strategy, Verification } from "./types.ts";
import { errorMessage, PROBLEM_KINDS } from "./errors.ts";
import type { Tx } from "./connect.ts";
import type { TablePlan } from "./plan.ts";
import type { Source } from "./sqlite_source.ts";
import { ProblemLog, type ProblemSink, type ValidationLog } from "./validate.ts";
import { CopyRefused } from "./copy.ts";
import type { Written } from "./table_ops.ts";

/** Raised inside a first run's fast path: the careful path takes over from the start. */
export class Abandon extends Error {
  constructor(readonly why: string) {
    super(`abandoned: ${why}`);
  }
}

/** A problem log for the fast path: the first problem hands the run to the careful path. */
class AbandoningLog extends ProblemLog {
  override add(problem: Problem): void {
    throw new Abandon(`${problem.table}: ${PROBLEM_KINDS[problem.kind].title}`);
  }
}

/** Validation for a fast path: problems and policies alike abandon it. */
export function abandoningLog(plans: TablePlan[]): ValidationLog {
  return {
    problems: new AbandoningLog(),
    policies: new AbandoningLog(),
    refused: new Map(plans.map((p) => [p.spec.name, []])),
  };
}

/**
 * PostgreSQL's refusals that the careful path explains row by row: data
 * exceptions, integrity violations, privileges, a trigger's RAISE, features.
 * Anything else (a lost connection, a cancel) ends the run as it would anyway.
 */
const CAREFUL_PATH_EXPLAINS = /^(22|23|42|2B|0A|44|P0)[0-9A-Z]{3}$/;

/** What every load strategy is given. */
export interface Load {
  tx: Tx;
  source: Source;
  plans: TablePlan[];
  options: Options;
  step: Step;
  /** Where the careful path writes each problem row (--reject-file). */
  sink?: ProblemSink;
}

/** What a strategy did to the target, from which the report is built. */
export interface Loaded {
  strategy: Strategy;
  written: Map<TablePlan, Written>;
  verification: Verification;
  /** Source rows compared with the target (all of them, less those a policy skipped). */
  compared?: Map<TablePlan, number>;
  /** Source rows a policy left out. */
  skipped?: Map<TablePlan, number>;
  /** Seconds spent staging, counted towards every table. */
  stageSeconds?: number;
  /** Rows changed by a policy. */
  policies?: ProblemGroup[];
  /** For `buckets`: how many buckets of each table differed. */
  differingBuckets?: Map<TablePlan, number>;
  /** Why the careful path took over from a fast one. */
  carefulBecause?: string;
}

/** A fast path that began and gave way to the careful path, and why. */
export interface Stopped {
  stopped: string;
}

/**
 * Runs a fast path in a savepoint. When it abandons, or PostgreSQL refuses
 * something the careful path explains row by row, the savepoint is rolled
 * back, the reason shown as a step, and the reason returned.
 */
export async function fastPath(
  tx: Tx,
  step: Step,
  run: (sp: Tx) => Promise<Loaded>,
): Promise<Loaded | Stopped> {
  try {
    return await tx.savepoint(run);
  } catch (error) {
    const code = (error as { code?: unknown })?.code;
    const why = error instanceof Abandon
      ? error.why
      : error instanceof CopyRefused
      ? `PostgreSQL refused rows for ${error.target}`
      : typeof code === "string" && CAREFUL_PATH_EXPLAINS.test(code)
      ? errorMessage(error)
      : null;
    if (why === null) throw error;
    step(`checking every row in PostgreSQL, to name each one that needs attention (${why})`);
    step("the fast path stopped: the careful path stages every row", true);
    return { stopped: why };
  }
}

/**
 * Lets PostgreSQL share a scan of the target among parallel workers for the
 * rest of the transaction (or, with `on` false, no longer): computing
 * digests is CPU work, and the planner does not know what printing a payload
 * costs. Staging tables are temporary, and so never scanned in parallel.
 */
export async function parallelScans(tx: Tx, on = true): Promise<void> {
  const value = (zero: string) => on ? zero : "DEFAULT";
  await tx.unsafe(`SET LOCAL parallel_setup_cost = ${value("0")}`);
  await tx.unsafe(`SET LOCAL parallel_tuple_cost = ${value("0")}`);
  await tx.unsafe(`SET LOCAL min_parallel_table_scan_size = ${value("0")}`);
}
