/**
 * The plan: which SQLite column goes to which target column, how each is
 * validated, and the SQL fragments of a table's key.
 *
 * @module
 */

import type { Options, TableName } from "./types.ts";
import { MigrationError } from "./errors.ts";
import {
  type Kind,
  KIND_ACCEPTS,
  type Reference,
  TABLES,
  type TableSpec,
  TYPE_RULES,
} from "./tables.ts";
import { q } from "./quote.ts";
import type { Tx } from "./connect.ts";
import { readTarget, type TargetColumn, type TargetTable } from "./catalog.ts";
import { type Validator, validatorFor } from "./values.ts";
import { jsonbCanonicalizer } from "./jsonb.ts";
import type { Source, SourceTable } from "./sqlite_source.ts";

/** Columns whose values should be text, so node:sqlite's reading of them is checked. */
const isTextChecked = (column: PlannedColumn) =>
  column.kind !== "integer" && column.kind !== "boolean";

/** A column both sides have: read from SQLite, validated for its target type, written, verified. */
export interface PlannedColumn {
  name: string;
  kind: Kind;
  target: TargetColumn;
  validate: Validator;
  /**
   * For JSON columns: this run's canonicalizer, which validates a payload and
   * makes its digest's text in one parse (see jsonb.ts).
   */
  canonical?: (text: string) => Uint8Array;
}

/** What the run does with one table, derived from its declaration, SQLite and the catalog. */
export interface TablePlan {
  spec: TableSpec;
  target: TargetTable;
  /** In the target's column order. */
  columns: PlannedColumn[];
  /** Positions of the key columns in `columns`. */
  keyIndexes: number[];
  /** The order of the columns in a row's digest: see "Row digests". */
  digestOrder: number[];
  /** Positions of the columns whose text {@link textFaults} checks. */
  textChecked: number[];
  touch: string | null;
  filledByPostgres: string[];
  ignored: string[];
  /** SQLite's own row id, left behind: the target keys the table by its natural key. */
  rowIds: string[];
  /** The staging table: same column types as the target. */
  staging: string;
  /**
   * Every clean source row's key and digest: the staging table itself, or on
   * a rerun of a table with payloads, a table of keys and digests only, and
   * staging then holds just the rows whose digests differ from the target's.
   */
  keys: string;
  /**
   * After the comparison of a table that had rows: the staged rows the target
   * lacks (`migrate_missing`) or holds otherwise, so the writes touch only them.
   */
  changes?: string;
}

const ruleFor = (column: TargetColumn) => TYPE_RULES.find((r) => r.types.includes(column.baseName));

/** `tracks.id` or `id`: the `--ignore-columns` entries that name this column. */
const isIgnored = (options: Options, table: TableName, column: string) =>
  options.ignoreColumns.some((entry) => entry === column || entry === `${table}.${column}`);

/**
 * The name of a temporary table of this run for `table`, named by what it
 * holds (`stage`, `changes`, `buckets`…): `pg_temp."migrate_stage_tracks"`.
 * Temporary tables are the session's own and go at COMMIT or ROLLBACK.
 */
export function tempTable(table: TableName, what: string): string {
  return `pg_temp.${q(`migrate_${what}_${table}`)}`;
}

/**
 * Matches SQLite's columns with the target's and checks every rule that
 * needs no data: the types, the key, the columns PostgreSQL must fill.
 * Returns the plan, or the problems, each with its fix.
 */
function planTable(
  spec: TableSpec,
  source: SourceTable,
  target: TargetTable,
  options: Options,
): { plan?: TablePlan; problems: string[] } {
  const problems: string[] = [];
  const where = `${options.schema}.${spec.name}`;
  const byName = new Map(target.columns.map((c) => [c.name, c]));
  const ignored: string[] = [];
  const rowIds: string[] = [];
  const supplied = new Set<string>();
  for (const name of source.columns) {
    const column = byName.get(name);
    if (column && !column.generated) {
      supplied.add(name);
    } else if (isIgnored(options, spec.name, name)) {
      ignored.push(name);
    } else if (!column && name === source.rowIdAlias && !spec.key.includes(name)) {
      // A number SQLite handed out to each row; the rows are matched by their
      // natural key (checked below), so nothing is lost without it.
      rowIds.push(name);
    } else {
      problems.push(
        `SQLite column ${spec.name}.${name} has no ${
          column ? "writable column (it is generated)" : "column"
        } in PostgreSQL ${where}: its values would be lost. Add the column to the target, or pass --ignore-columns ${spec.name}.${name} to migrate without it`,
      );
    }
  }
  const columns: PlannedColumn[] = [];
  const filledByPostgres: string[] = [];
  for (const column of target.columns) {
    if (!supplied.has(column.name)) {
      if (column.notNull && !column.filled) {
        problems.push(
          `PostgreSQL column ${where}.${column.name} is NOT NULL without a default, and SQLite has no such column: give it a default (ALTER TABLE … ALTER COLUMN ${column.name} SET DEFAULT …) or allow NULL`,
        );
      }
      filledByPostgres.push(column.name);
      continue;
    }
    const expected = spec.columns.find((c) => c.name === column.name)?.kind;
    const rule = ruleFor(column);
    if (!rule || (expected && rule.kind !== expected)) {
      const accepts = KIND_ACCEPTS[expected ?? "text"];
      problems.push(
        `PostgreSQL column ${where}.${column.name} is ${column.type}, which migrate.ts cannot fill ${
          expected ? `with ${spec.name}.${column.name}` : "from SQLite"
        }: use ${expected ? accepts : Object.values(KIND_ACCEPTS).join("; ")}${
          expected ? "" : `, or pass --ignore-columns ${spec.name}.${column.name}`
        }`,
      );
      continue;
    }
    const canonical = rule.kind === "json" ? jsonbCanonicalizer() : undefined;
    columns.push({
      name: column.name,
      kind: rule.kind,
      target: column,
      validate: validatorFor(column, rule, canonical),
      ...(canonical ? { canonical } : {}),
    });
  }
  const missingKey = spec.key.filter((k) => !supplied.has(k));
  if (missingKey.length > 0) {
    problems.push(
      `PostgreSQL table ${where} lacks the key column ${missingKey.join(", ")}`,
    );
  } else if (!hasKeyConstraint(spec, target)) {
    problems.push(
      `PostgreSQL table ${where} has no PRIMARY KEY or UNIQUE constraint on (${
        spec.key.join(", ")
      }), which reruns need to match rows: ALTER TABLE ${where} ADD PRIMARY KEY (${
        spec.key.join(", ")
      })`,
    );
  }
  if (problems.length > 0) return { problems };
  const touch = spec.touch && !supplied.has(spec.touch) &&
      ["timestamp", "date"].includes(
        ruleFor(byName.get(spec.touch) ?? ({} as TargetColumn))?.kind ?? "",
      )
    ? spec.touch
    : null;
  const keyIndexes = spec.key.map((k) => columns.findIndex((c) => c.name === k));
  return {
    problems,
    plan: {
      spec,
      target,
      columns,
      keyIndexes,
      digestOrder: digestOrder(columns, keyIndexes),
      textChecked: columns.flatMap((c, i) => isTextChecked(c) ? [i] : []),
      touch,
      filledByPostgres,
      ignored,
      rowIds,
      staging: tempTable(spec.name, "stage"),
      keys: tempTable(spec.name, "stage"),
    },
  };
}

function hasKeyConstraint(spec: TableSpec, target: TargetTable): boolean {
  const sameColumns = (columns: string[] | null) =>
    columns !== null && columns.length === spec.key.length &&
    columns.every((c) => spec.key.includes(c));
  return target.indexes.some((index) => index.unique && sameColumns(index.columns));
}

/** Plans every table, or stops with every setup problem before any data is read. */
export async function planTables(tx: Tx, source: Source, options: Options): Promise<TablePlan[]> {
  const plans: TablePlan[] = [];
  const problems: string[] = [];
  for (const spec of TABLES) {
    const target = await readTarget(tx, options.schema, spec.name);
    if (!target) {
      problems.push(
        `PostgreSQL table ${options.schema}.${spec.name} does not exist: create it (see README), or pass --create-schema to create the tutorial's tables`,
      );
      continue;
    }
    const planned = planTable(spec, source.tables[spec.name], target, options);
    problems.push(...planned.problems);
    if (planned.plan) plans.push(planned.plan);
  }
  for (const plan of plans) {
    const ref = plan.spec.references;
    const missing = ref?.columns.filter((c) => !plan.columns.some((p) => p.name === c)) ?? [];
    if (missing.length > 0) {
      problems.push(
        `PostgreSQL table ${options.schema}.${plan.spec.name} lacks ${
          missing.join(", ")
        }, which refers to ${ref!.table}`,
      );
    }
  }
  // A name that matches nothing is a typo that would hide the column it meant.
  for (const entry of options.ignoreColumns) {
    const named = TABLES.some((t) =>
      source.tables[t.name].columns.some((c) => entry === c || entry === `${t.name}.${c}`)
    );
    if (!named) {
      problems.push(
        `--ignore-columns names ${entry}, which no SQLite table has: write table.column or column, as SQLite names it`,
      );
    }
  }
  if (problems.length > 0) {
    throw new MigrationError(
      "config",
      `the PostgreSQL target does not fit the SQLite data; nothing was read or written:\n  ${
        problems.join("\n  ")
      }`,
      "each line above says what to change",
    );
  }
  return plans;
}

/** One line per table saying what was read and how it maps. */
export function describePlan(plan: TablePlan, source: Source): string {
  const parts = [
    `${plan.spec.name}: ${source.tables[plan.spec.name].rows} rows; migrating ${
      plan.columns.map((c) => `${c.name} → ${c.target.type}`).join(", ")
    }`,
  ];
  if (plan.filledByPostgres.length > 0) {
    parts.push(`PostgreSQL fills ${plan.filledByPostgres.join(", ")}`);
  }
  if (plan.ignored.length > 0) {
    parts.push(`not migrated (--ignore-columns): ${plan.ignored.join(", ")}`);
  }
  if (plan.rowIds.length > 0) {
    parts.push(
      `not migrated: ${
        plan.rowIds.join(", ")
      } (SQLite's row id; PostgreSQL keys ${plan.spec.name} by ${plan.spec.key.join(", ")})`,
    );
  }
  return parts.join("; ");
}

export const columnList = (plan: TablePlan, prefix = "") =>
  plan.columns.map((c) => prefix + q(c.name)).join(", ");

/** The key as one text (`track_id/snapshot_date/time_range`), as messages show it. */
export const keyText = (plan: TablePlan, alias: string) =>
  plan.spec.key.map((k) => `${alias}.${q(k)}::text`).join(" || '/' || ");

export const keyMatch = (plan: TablePlan, a: string, b: string) =>
  plan.spec.key.map((k) => `${a}.${q(k)} = ${b}.${q(k)}`).join(" AND ");

export const keyOrder = (plan: TablePlan, alias: string) => `${keyText(plan, alias)} COLLATE "C"`;

/**
 * The digest's column order, which gives each field its seed: the key in key
 * order (its places 0, 1, … also shift its fields in a rerun's bucket), then
 * the other columns in plan order.
 */
function digestOrder(columns: PlannedColumn[], keyIndexes: number[]): number[] {
  return [...keyIndexes, ...columns.map((_, i) => i).filter((i) => !keyIndexes.includes(i))];
}

export function referenceMatch(ref: Reference, parent: string, child: string): string {
  return ref.columns.map((c, i) => `${parent}.${q(ref.targetColumns[i])} = ${child}.${q(c)}`)
    .join(" AND ");
}
