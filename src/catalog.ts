/**
 * The target's catalog: each table's columns, types, constraints, indexes and triggers.
 *
 * @module
 */

import { TABLES } from "./tables.ts";
import { q } from "./quote.ts";
import type { Tx } from "./connect.ts";

/** What validation needs to know about a PostgreSQL column, read from its catalog. */
export interface TargetColumn {
  name: string;
  /** The type as PostgreSQL prints it: `character varying(64)`. */
  type: string;
  /** The base type (after domains) with its modifier: what staging uses. */
  stageType: string;
  /** `pg_type.typname` of the base type, or `enum`. */
  baseName: string;
  /** varchar(n), char(n): n. */
  length: number | null;
  /** timestamp(p), timestamptz(p): p, the fractional-second digits it keeps (null: all six). */
  precision: number | null;
  /** The labels of an enum type. */
  labels: string[] | null;
  notNull: boolean;
  /** PostgreSQL fills it when no value is given: a default, identity or generated column. */
  filled: boolean;
  generated: boolean;
  identityAlways: boolean;
}

/** A constraint of the target table, as pg_constraint has it. */
export interface TargetConstraint {
  name: string;
  /** `p` primary key, `u` unique, `f` foreign key, `c` check, `x` exclusion. */
  type: string;
  definition: string;
  /** For CHECK: the expression alone. */
  expression: string | null;
  columns: string[];
  /** Another table's foreign key depends on it (its index). */
  referenced: boolean;
  comment: string | null;
}

/** An index of the target table. */
interface TargetIndex {
  name: string;
  definition: string;
  /** Backs a constraint (primary key, unique, exclusion): it comes and goes with it. */
  constraint: boolean;
  unique: boolean;
  /** Another table's foreign key depends on it (a unique index, not a constraint). */
  referenced: boolean;
  /** Plain columns only, or null for expression and partial indexes. */
  columns: string[] | null;
  tablespace: string | null;
  comment: string | null;
  /** Marked for CLUSTER, or the table's replica identity: set again after a rebuild. */
  clustered: boolean;
  replicaIdentity: boolean;
}

/** One target table as PostgreSQL's catalog describes it. */
export interface TargetTable {
  oid: string;
  /** `"schema"`, quoted for any name. */
  schema: string;
  /** `"schema"."table"`, quoted for any schema name. */
  qualified: string;
  columns: TargetColumn[];
  constraints: TargetConstraint[];
  indexes: TargetIndex[];
  triggers: string[];
}

export const TARGET_TABLE = `
  SELECT c.oid::text AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`;

const TARGET_COLUMNS = `
  SELECT a.attname AS name,
         format_type(a.atttypid, a.atttypmod) AS type,
         format_type(b.oid, CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END)
           AS stage_type,
         CASE WHEN b.typtype = 'e' THEN 'enum' ELSE b.typname::text END AS base_name,
         CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod,
         a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) AS not_null,
         a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' AS filled,
         a.attgenerated <> '' AS generated,
         a.attidentity = 'a' AS identity_always,
         CASE WHEN b.typtype = 'e' THEN ARRAY(
           SELECT enumlabel::text FROM pg_enum WHERE enumtypid = b.oid ORDER BY enumsortorder)
         END AS labels
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
  WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
  ORDER BY a.attnum`;

const TARGET_CONSTRAINTS = `
  SELECT c.conname AS name, c.contype::text AS type, pg_get_constraintdef(c.oid) AS definition,
         CASE WHEN c.contype = 'c' THEN pg_get_expr(c.conbin, c.conrelid) END AS expression,
         ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(attnum, i)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
               ORDER BY k.i) AS columns,
         EXISTS (SELECT FROM pg_constraint r
                 WHERE r.contype = 'f' AND r.confrelid = c.conrelid AND r.conindid = c.conindid
                   AND c.contype IN ('p', 'u')) AS referenced,
         obj_description(c.oid, 'pg_constraint') AS comment
  FROM pg_constraint c WHERE c.conrelid = $1::oid
  ORDER BY c.contype = 'f', c.conname`;

const TARGET_INDEXES = `
  SELECT ci.relname AS name, pg_get_indexdef(i.indexrelid) AS definition,
         EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid
                 AND c.conrelid = i.indrelid) AS constraint,
         i.indisunique AS unique,
         EXISTS (SELECT FROM pg_constraint r WHERE r.contype = 'f' AND r.conindid = i.indexrelid)
           AS referenced,
         CASE WHEN i.indpred IS NULL AND i.indexprs IS NULL THEN ARRAY(
           SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE k.n <= i.indnkeyatts ORDER BY k.n) END AS columns,
         (SELECT spcname FROM pg_tablespace WHERE oid = ci.reltablespace) AS tablespace,
         obj_description(i.indexrelid, 'pg_class') AS comment,
         i.indisclustered AS clustered, i.indisreplident AS "replicaIdentity"
  FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid
  WHERE i.indrelid = $1::oid ORDER BY ci.relname`;

// Whatever can write rows no statement of ours names: triggers, rules (also
// those of a partitioned table's partitions, where our rows land; a trigger
// defined on the parent has a clone of the same name on each), and foreign
// keys of other tables or columns whose ON DELETE writes referencing rows
// when a rerun prunes (not the tables' own reference, $2 on columns $3: the
// orphan checks leave it nothing to delete).
const TARGET_TRIGGERS = `
  WITH tree AS (SELECT $1::oid AS relid UNION SELECT relid FROM pg_partition_tree($1::oid)),
       own AS (SELECT to_regclass($2)::oid AS relid
               UNION SELECT relid FROM pg_partition_tree(to_regclass($2)))
  SELECT tgname AS name FROM pg_trigger WHERE tgrelid IN (SELECT relid FROM tree) AND NOT tgisinternal
  UNION
  SELECT 'rule ' || rulename FROM pg_rewrite
  WHERE ev_class IN (SELECT relid FROM tree) AND rulename <> '_RETURN'
  UNION
  SELECT 'foreign key ' || c.conname || ' (ON DELETE '
         || CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' ELSE 'SET DEFAULT' END
         || ')'
  FROM pg_constraint c
  WHERE c.contype = 'f' AND c.confrelid IN (SELECT relid FROM tree) AND c.confdeltype NOT IN ('a', 'r')
    AND NOT coalesce(c.conrelid IN (SELECT relid FROM own) AND ARRAY(
      SELECT a.attname::text FROM pg_attribute a
      WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
      ORDER BY a.attname::text COLLATE "C") = $3::text[], false)
  ORDER BY 1`;

/** The target table's shape from PostgreSQL's catalog, or null when there is no such table. */
export async function readTarget(
  tx: Tx,
  schema: string,
  name: string,
): Promise<TargetTable | null> {
  const [table] = await tx.unsafe(TARGET_TABLE, [schema, name]);
  if (!table) return null;
  const oid = table.oid as string;
  const columns = (await tx.unsafe(TARGET_COLUMNS, [oid])).map((row): TargetColumn => ({
    name: row.name,
    type: row.type,
    stageType: row.stage_type,
    baseName: row.base_name,
    // varchar(n) and char(n) store n + 4 in the type modifier.
    length: ["varchar", "bpchar"].includes(row.base_name) && row.typmod >= 4
      ? row.typmod - 4
      : null,
    precision: ["timestamp", "timestamptz"].includes(row.base_name) && row.typmod >= 0
      ? row.typmod
      : null,
    labels: row.labels,
    notNull: row.not_null,
    filled: row.filled,
    generated: row.generated,
    identityAlways: row.identity_always,
  }));
  const constraints = (await tx.unsafe(TARGET_CONSTRAINTS, [oid])) as unknown as TargetConstraint[];
  const indexes = (await tx.unsafe(TARGET_INDEXES, [oid])) as unknown as TargetIndex[];
  const own = TABLES.find((t) => t.references?.table === name);
  const triggers = (await tx.unsafe(TARGET_TRIGGERS, [
    oid,
    own ? `${q(schema)}.${q(own.name)}` : null,
    [...own?.references?.columns ?? []].sort(),
  ])).map((row) => row.name as string);
  return {
    oid,
    schema: q(schema),
    qualified: `${q(schema)}.${q(name)}`,
    columns,
    constraints: [...constraints],
    indexes: [...indexes],
    triggers,
  };
}
