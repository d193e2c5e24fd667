/**
 * The app's two tables, declared once: keys, columns, the reference between
 * them and the tutorial's DDL. The types each kind of value may go to.
 *
 * @module
 */

import type { TableName } from "./types.ts";
import { q as quote } from "./quote.ts";

/**
 * The kinds of value the tool moves. Each PostgreSQL type it can fill maps
 * to one kind in {@link TYPE_RULES}, which decides how values are validated.
 */
export type Kind = "text" | "integer" | "date" | "json" | "timestamp" | "boolean";

/** One of the app's columns: its name and the kind of value it holds. */
interface ColumnSpec {
  name: string;
  kind: Kind;
  /** Its type in the tutorial's schema, for `--create-schema`. */
  create: string;
}

/** A foreign key, as data: the orphan check and the load order come from it. */
export interface Reference {
  columns: string[];
  table: TableName;
  /** The referenced table's columns, in the same order. */
  targetColumns: string[];
}

/**
 * One of the app's tables, declared once. Its key, its reference and its
 * columns drive the SQLite SELECT, validation, staging, the upsert, the
 * verification and `--create-schema`; everything else about the target
 * (types and their limits, constraints, indexes, extra columns) is read from
 * PostgreSQL's catalog at run time.
 */
export interface TableSpec {
  name: TableName;
  key: string[];
  columns: ColumnSpec[];
  references?: Reference;
  /** Column set to NOW() when a row changes, if the target has it and SQLite does not. */
  touch?: string;
  /** The tutorial's schema beyond the columns: timestamps, checks, indexes. */
  create: { columns: string[]; constraints: string[]; indexes: string[] };
}

export const TRACKS: TableSpec = {
  name: "tracks",
  key: ["track_id"],
  columns: [
    { name: "track_id", kind: "text", create: "VARCHAR(64)" },
    { name: "name", kind: "text", create: "TEXT NOT NULL" },
    { name: "artist_name", kind: "text", create: "TEXT NOT NULL" },
    { name: "album_name", kind: "text", create: "TEXT" },
    { name: "duration_ms", kind: "integer", create: "INTEGER" },
    { name: "spotify_url", kind: "text", create: "TEXT" },
    { name: "raw_json", kind: "json", create: "JSONB" },
  ],
  touch: "updated_at",
  create: {
    columns: [
      "created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()",
      "updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()",
    ],
    constraints: [],
    indexes: ["tracks_raw_json_idx ON tracks USING GIN (raw_json)"],
  },
};

const SNAPSHOTS: TableSpec = {
  name: "snapshots",
  key: ["track_id", "snapshot_date", "time_range"],
  columns: [
    { name: "track_id", kind: "text", create: "VARCHAR(64)" },
    { name: "snapshot_date", kind: "date", create: "DATE" },
    { name: "time_range", kind: "text", create: "VARCHAR(32)" },
    { name: "rank", kind: "integer", create: "INTEGER NOT NULL" },
  ],
  references: { columns: ["track_id"], table: "tracks", targetColumns: ["track_id"] },
  create: {
    columns: [],
    constraints: ["CHECK (rank > 0)"],
    indexes: [
      "snapshots_date_idx ON snapshots (snapshot_date)",
      "snapshots_time_range_date_idx ON snapshots (time_range, snapshot_date)",
    ],
  },
};

/** Load order: a table comes after the tables it references. */
export const TABLES: readonly TableSpec[] = loadOrder([TRACKS, SNAPSHOTS]);

function loadOrder(tables: TableSpec[]): TableSpec[] {
  const ordered: TableSpec[] = [];
  const visit = (table: TableSpec) => {
    if (ordered.includes(table)) return;
    const parent = tables.find((t) => t.name === table.references?.table);
    if (parent && parent !== table) visit(parent);
    ordered.push(table);
  };
  tables.forEach(visit);
  return ordered;
}

/** How one PostgreSQL type is filled: the kind of value, and its limits. */
export interface TypeRule {
  /** `pg_type.typname` of the base type (after domains); enums are matched by `typtype`. */
  types: string[];
  kind: Kind;
  /** For integer types: the range. */
  range?: [bigint, bigint];
}

/**
 * The types each kind of value can go to, as pgloader's cast rules make types
 * a table. Anything else is a setup error that names the column and these.
 */
export const TYPE_RULES: TypeRule[] = [
  { types: ["text", "varchar", "bpchar", "citext", "enum"], kind: "text" },
  { types: ["int2"], kind: "integer", range: [-32768n, 32767n] },
  { types: ["int4"], kind: "integer", range: [-2147483648n, 2147483647n] },
  { types: ["int8"], kind: "integer", range: [-9223372036854775808n, 9223372036854775807n] },
  { types: ["date"], kind: "date" },
  { types: ["jsonb", "json"], kind: "json" },
  { types: ["timestamptz", "timestamp"], kind: "timestamp" },
  { types: ["bool"], kind: "boolean" },
];

/** What `--help` and errors say each kind accepts, in SQL spelling. */
export const KIND_ACCEPTS: Record<Kind, string> = {
  text: "text, varchar(n), char(n), citext or an enum type",
  integer: "smallint, integer or bigint",
  date: "date",
  json: "jsonb or json",
  timestamp: "timestamptz or timestamp",
  boolean: "boolean",
};

const PLAIN_NAME = /^[a-z_][a-z0-9_]*$/;

/** The tutorial's table (schema_postgres.sql), derived from the declaration. */
export function createTableDdl(table: TableSpec): string[] {
  // Printed for users: quoted only where a name needs it.
  const q = (name: string) => PLAIN_NAME.test(name) ? name : quote(name);
  const ref = table.references;
  const parts = [
    ...table.columns.map((c) => `${q(c.name)} ${c.create}`),
    ...table.create.columns,
    `PRIMARY KEY (${table.key.map(q).join(", ")})`,
    ...(ref
      ? [
        `FOREIGN KEY (${ref.columns.map(q).join(", ")}) REFERENCES ${q(ref.table)} (${
          ref.targetColumns.map(q).join(", ")
        })`,
      ]
      : []),
    ...table.create.constraints,
  ];
  // One part a line: --create-schema prints these statements as they run.
  return [
    `CREATE TABLE IF NOT EXISTS ${q(table.name)} (\n  ${parts.join(",\n  ")}\n)`,
    ...table.create.indexes.map((index) => `CREATE INDEX ${index}`),
  ];
}
