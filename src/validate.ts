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

/** Where a problem found in a SQLite row keeps that row's whole value: see {@link sourceValue}. */
const SOURCE_VALUE = Symbol("source value");

/** The whole SQLite value a problem's `value` shows shortened, if it came from a row. */
export function sourceValue(problem: Problem): unknown {
  return (problem as Problem & { [SOURCE_VALUE]?: unknown })[SOURCE_VALUE];
}

/** What fills a NULL of a problem's column, where one value suits every row (a timestamp's now). */
const FILL = Symbol("fill");

/** Collects problems, keeping the first examples of each kind and the totals. */
export class ProblemLog {
  #groups = new Map<ProblemKind, ProblemGroup>();

  #fills = new Map<string, string>();

  /** With `policies`, the groups are rows a policy changed: their hint says what it did. */
  constructor(readonly sink?: (problem: Problem) => void, readonly policies = false) {}

  add(problem: Problem): void {
    let group = this.#groups.get(problem.kind);
    if (!group) {
      const { title, hint, policy } = PROBLEM_KINDS[problem.kind];
      const fix = this.policies && policy ? policy : hint;
      group = { kind: problem.kind, title, hint: fix, total: 0, examples: [] };
      this.#groups.set(problem.kind, group);
    }
    if (problem.kind === "null-value" && problem.column) this.#fill(group, problem);
    group.total++;
    if (group.examples.length < EXAMPLES_PER_KIND) group.examples.push(problem);
    this.sink?.(problem);
  }

  /** The null-value fix names each column's exact statement, safe for the rows' references. */
  #fill(group: ProblemGroup, problem: Problem): void {
    const where = `${problem.table}.${problem.column}`;
    if (this.#fills.has(where)) return;
    const value = (problem as Problem & { [FILL]?: string })[FILL] ?? "…";
    this.#fills.set(
      where,
      `UPDATE ${problem.table} SET ${problem.column} = ${value} WHERE ${problem.column} IS NULL`,
    );
    group.hint = `fill them in SQLite: ${
      [...this.#fills.values()].join("; ")
    } (deleting the rows instead also loses what refers to them, such as a track's snapshots)`;
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
    // The whole value, for the reject file only: kept out of reports and
    // --json (a payload can be megabytes), which print the shortened one.
    Object.defineProperty(problem, SOURCE_VALUE, { value: row[i], enumerable: false });
    if (result.kind === "null-value" && columns[i].kind === "timestamp") {
      // SQLite's CURRENT_TIMESTAMP is UTC, as the target's DEFAULT NOW() would be.
      Object.defineProperty(problem, FILL, { value: "CURRENT_TIMESTAMP", enumerable: false });
    }
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
