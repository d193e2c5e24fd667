/**
 * A row's problems, collected in one log: totals kept, examples capped.
 *
 * @module
 */

import type { InvalidJsonPolicy, Problem, ProblemGroup, ProblemKind, TableName } from "./types.ts";
import { EXAMPLES_PER_KIND, PROBLEM_KINDS } from "./errors.ts";
import { type CleanValue, describeInvalid, INVALID, Invalid, preview } from "./values.ts";
import type { Source } from "./sqlite_source.ts";
import type { TablePlan } from "./plan.ts";
import { textFaults } from "./sqlite_read.ts";

/** Receives every problem found, for `--reject-file`. */
export type ProblemSink = (problem: Problem, action: "refused" | "changed") => void;

/** Collects problems, keeping the first examples of each kind and the totals. */
export class ProblemLog {
  #groups = new Map<ProblemKind, ProblemGroup>();

  constructor(readonly sink?: (problem: Problem) => void) {}

  add(problem: Problem): void {
    let group = this.#groups.get(problem.kind);
    if (!group) {
      group = { kind: problem.kind, ...PROBLEM_KINDS[problem.kind], total: 0, examples: [] };
      this.#groups.set(problem.kind, group);
    }
    group.total++;
    if (group.examples.length < EXAMPLES_PER_KIND) group.examples.push(problem);
    this.sink?.(problem);
  }

  /** Counts `more` problems of a kind beyond those added one by one. */
  count(kind: ProblemKind, more: number): void {
    const group = this.#groups.get(kind);
    if (group) group.total += more;
  }

  get groups(): ProblemGroup[] {
    return [...this.#groups.values()];
  }

  get total(): number {
    return this.groups.reduce((sum, group) => sum + group.total, 0);
  }
}

/** The row's key as messages show it: `track_id/snapshot_date/time_range`. */
function rowKey(plan: TablePlan, row: unknown[]): string {
  return plan.keyIndexes.map((i) => {
    const value = row[i];
    return typeof value === "string" ? value : preview(value);
  }).join("/");
}

/** Validates one source row; returns the clean row, or null after logging its problems. */
export function validateRow(
  source: Source,
  plan: TablePlan,
  row: unknown[],
  policy: { invalidJson: InvalidJsonPolicy },
  problems: ProblemLog,
  policies: ProblemLog,
): CleanValue[] | null {
  const columns = plan.columns;
  const clean: CleanValue[] = new Array(columns.length);
  const faults = textFaults(source, plan, row);
  let ok = true;
  for (let i = 0; i < columns.length; i++) {
    const fault = faults?.[i];
    const result = fault ? INVALID[fault] : columns[i].validate(row[i]);
    if (!(result instanceof Invalid)) {
      clean[i] = result;
      continue;
    }
    const problem: Problem = {
      kind: result.kind,
      table: plan.spec.name,
      key: rowKey(plan, row),
      column: columns[i].name,
      value: describeInvalid(result.kind, columns[i].target, row[i]),
    };
    if (
      result.kind === "invalid-json" && policy.invalidJson === "null" && !columns[i].target.notNull
    ) {
      clean[i] = null;
      policies.add(problem);
    } else {
      ok = false;
      problems.add(problem);
    }
  }
  return ok ? clean : null;
}

/** What validation found, and the keys it needs later. */
export interface ValidationLog {
  problems: ProblemLog;
  policies: ProblemLog;
  /** Keys of rows refused by validation, per table: rows referring to them are not orphans. */
  refused: Map<TableName, string[]>;
}
