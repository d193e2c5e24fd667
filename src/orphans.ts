/**
 * Orphans: rows whose reference (a snapshot's `track_id`) has no row in the
 * table it refers to. SQLite does not enforce foreign keys, and a target may
 * not declare one, so every strategy looks for them, each in the rows it has
 * at hand, with the one condition {@link orphanCondition}.
 *
 * @module
 */

import type { Options } from "./types.ts";
import { q } from "./quote.ts";
import type { Tx } from "./connect.ts";
import type { Reference } from "./tables.ts";
import { keyMatch, keyOrder, keyText, referenceMatch, type TablePlan } from "./plan.ts";
import type { ValidationLog } from "./validate.ts";
import { logRows } from "./table_ops.ts";

/** A table's reference and the plan of the table it refers to, if both are in the run. */
export interface Parent {
  ref: Reference;
  parent: TablePlan;
}

/** The plan that `plan`'s rows refer to, if it has a reference and both tables are migrated. */
export function parentOf(plans: TablePlan[], plan: TablePlan): Parent | undefined {
  const ref = plan.spec.references;
  const parent = plans.find((p) => p.spec.name === ref?.table);
  return ref && parent ? { ref, parent } : undefined;
}

/** True if the target declares the foreign key of the table's declaration. */
export function hasForeignKey(plan: TablePlan): boolean {
  const ref = plan.spec.references!;
  const references = new RegExp(`REFERENCES (\\S+\\.)?"?${ref.table}"?\\(`);
  return plan.target.constraints.some((c) =>
    c.type === "f" && c.columns?.join() === ref.columns.join() && references.test(c.definition) &&
    !c.definition.endsWith("NOT VALID")
  );
}

/** SQL: the child row `s` has no row in `parents` (a relation with the referenced columns). */
export function orphanCondition(ref: Reference, parents: string): string {
  return `NOT EXISTS (SELECT FROM ${parents} p WHERE ${referenceMatch(ref, "p", "s")})`;
}

/**
 * Names every orphan among `children` (the staged rows, or the target's own
 * after a first run), whose parents are in `parents` (the staged keys, or the
 * parent's target table). They are problems, or with --orphans=skip deleted
 * from `children` and reported. Rows referring to rows that validation
 * refused are not orphans: the refused row is the problem. Returns the rows
 * skipped.
 */
export async function checkOrphans(
  tx: Tx,
  plans: TablePlan[],
  plan: TablePlan,
  options: Options,
  log: ValidationLog,
  children = plan.staging,
  parents?: string,
): Promise<number> {
  const found = parentOf(plans, plan);
  if (!found) return 0;
  const { ref, parent } = found;
  const orphan = `${orphanCondition(ref, parents ?? parent.keys)}
    AND ${ref.columns.map((c) => `s.${q(c)}::text`).join(" || '/' || ")} <> ALL($1::text[])`;
  const into = options.orphans === "skip" ? log.policies : log.problems;
  const params = [log.refused.get(parent.spec.name)!];
  const named = await logRows(
    tx,
    `SELECT ${keyText(plan, "s")} AS key FROM ${children} s WHERE ${orphan}
     ORDER BY ${keyOrder(plan, "s")}`,
    params,
    into,
    (row) => ({ kind: "orphan-snapshot", table: plan.spec.name, key: row.key }),
  );
  if (named === 0 || options.orphans !== "skip") return 0;
  return (await tx.unsafe(`DELETE FROM ${children} s WHERE ${orphan}`, params)).count;
}

/**
 * How many of the target's rows of `plan` are orphans in the target. Where
 * the target declares the foreign key it rules them out, and this is 0
 * without a look.
 */
export async function orphansInTarget(
  tx: Tx,
  plans: TablePlan[],
  plan: TablePlan,
): Promise<number> {
  const found = parentOf(plans, plan);
  if (!found || hasForeignKey(plan)) return 0;
  // count(*), not LIMIT 1: see orphansAfterChanges.
  const [{ n }] = await tx.unsafe(
    `SELECT count(*)::int AS n FROM ${plan.target.qualified} s
     WHERE ${orphanCondition(found.ref, found.parent.target.qualified)}`,
  );
  return n;
}

/**
 * Orphans a rerun's changes would make, before they are written: a row to
 * write (in `plan.changes`) whose parent is neither kept nor staged, or a row
 * that stays while its parent is pruned. `extras` holds, per table changed,
 * the relation of its target rows to prune. Returns why, or undefined.
 */
export async function orphansAfterChanges(
  tx: Tx,
  plans: TablePlan[],
  plan: TablePlan,
  extras: Map<TablePlan, string>,
): Promise<string | undefined> {
  const found = parentOf(plans, plan);
  if (!found) return;
  const { ref, parent } = found;
  const parentExtra = extras.get(parent);
  if (!parentExtra && !extras.has(plan)) return;
  // count(*), not LIMIT 1: with a LIMIT the planner bets on finding a row
  // early and scans the whole target for it, while there is usually none.
  if (extras.has(plan)) {
    // A row to write needs its parent in the target or staged (one set of
    // keys, so the planner hashes it once rather than looping over them),
    // and not pruned (pruned parents are never staged). Staged rows equal to
    // the target's are rows that stay: the check below covers them.
    const columns = ref.targetColumns.map(q).join(", ");
    const parents = parentExtra
      ? `(SELECT ${columns} FROM ${parent.target.qualified}
          UNION ALL SELECT ${columns} FROM ${parent.staging})`
      : parent.target.qualified;
    const [{ n }] = await tx.unsafe(
      `SELECT (SELECT count(*) FROM ${plan.changes} s WHERE NOT s.migrate_equal
                 AND ${orphanCondition(ref, parents)})${
        parentExtra
          ? ` + (SELECT count(*) FROM ${plan.changes} s WHERE NOT s.migrate_equal
                   AND EXISTS (SELECT FROM ${parentExtra} p
                     WHERE ${referenceMatch(ref, "p", "s")}))`
          : ""
      } AS n`,
    );
    if (Number(n) > 0) return `orphans in ${plan.spec.name}`;
  }
  if (!parentExtra) return;
  // A row that stays needs its parent to stay. Counted from the few pruned
  // parents, so that the planner looks their children up by key instead of
  // scanning every child to join a few.
  const pruned = extras.has(plan)
    ? `AND NOT EXISTS (SELECT FROM ${extras.get(plan)} x WHERE ${keyMatch(plan, "x", "s")})`
    : "";
  const [{ n }] = await tx.unsafe(
    `SELECT count(*)::int AS n FROM ${parentExtra} p WHERE EXISTS (
       SELECT FROM ${plan.target.qualified} s WHERE ${referenceMatch(ref, "p", "s")} ${pruned})`,
  );
  if (n > 0) return `rows of ${plan.spec.name} would lose their ${parent.spec.name}`;
}
