/**
 * The careful path: every row validated and staged in PostgreSQL, checked
 * there set-based (so that every offending row is named), compared with the
 * target, written where it differs, and verified row by row.
 *
 * @module
 */

import type { Options, Step } from "./types.ts";
import { MigrationError, PROBLEM_KINDS } from "./errors.ts";
import type { Tx } from "./connect.ts";
import type { TablePlan } from "./plan.ts";
import { ProblemLog, type ProblemSink } from "./validate.ts";
import { type Diff, noWrites, pruneRows, writeTable, type Written } from "./table_ops.ts";
import { stageSource } from "./staging.ts";
import { diffBeforeWriting, extraExamples, isClean, verifyTarget } from "./verify.ts";
import type { Load, Loaded } from "./fast_path.ts";

/** Stages, compares, writes and verifies; see the module's description. */
export async function loadCarefully(
  { tx, source, plans, options, step, sink }: Load,
): Promise<Loaded> {
  step("reading SQLite into temporary tables in PostgreSQL, to check every row there");
  const stageStarted = performance.now();
  const { staged, skipped, policies } = await stageSource(tx, source, plans, options, sink);
  const stageSeconds = (performance.now() - stageStarted) / 1000;

  step("comparing with PostgreSQL");
  const diffs = new Map<TablePlan, Diff>();
  for (const plan of plans) diffs.set(plan, await diffBeforeWriting(tx, plan, staged.get(plan)!));
  await refuseExtraRows(tx, plans, diffs, options, sink);

  const written = options.mode === "verify-only" || [...diffs.values()].every(isClean)
    ? noWrites(plans)
    : await writeChanges(tx, plans, diffs, staged, options.prune, step);
  step("verifying every row against its source");
  const verification = await verifyTarget(tx, source, plans, skipped, options);
  return {
    strategy: "careful",
    written,
    verification,
    compared: staged,
    skipped,
    stageSeconds,
    policies: policies.groups,
  };
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
  step: Step,
): Promise<Map<TablePlan, Written>> {
  const written = noWrites(plans);
  for (const plan of [...plans].reverse()) {
    if (!prune || diffs.get(plan)!.extra === 0) continue;
    written.get(plan)!.pruned = await pruneRows(tx, plans, plan, step);
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
