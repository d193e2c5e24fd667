/**
 * The SQLite source, opened read-only in one read transaction, and its tables described.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { Options, TableName } from "./types.ts";
import { errorMessage, MigrationError } from "./errors.ts";
import { TABLES, type TableSpec } from "./tables.ts";
import { q } from "./quote.ts";

/**
 * The app's write transactions are short (a rollback journal's commit locks
 * readers out for a moment): a read waits for one this long when no
 * --lock-timeout is given, in slices, saying so after the first.
 */
const SQLITE_BUSY_LIMIT_SECONDS = 10;

const SQLITE_BUSY_SLICE_MS = 1_000;

/** SQLite's result code when another connection holds the lock (SQLITE_BUSY). */
const SQLITE_BUSY = 5;

/** One SQLite table as found: its columns and rows. */
export interface SourceTable {
  /** Column names in SQLite's order. */
  columns: string[];
  rows: number;
  /** Whether SQLite itself guarantees the table's key is unique. */
  uniqueKey: boolean;
  /** Whether rows can be paged by rowid (not a WITHOUT ROWID table, no column named rowid). */
  pageable: boolean;
  /**
   * The column that is another name for SQLite's rowid (`id INTEGER PRIMARY
   * KEY`, with or without AUTOINCREMENT), if the table has one.
   */
  rowIdAlias?: string;
}

/** SQLite source opened read-only inside one read transaction. */
export interface Source {
  path: string;
  db: DatabaseSync;
  tables: Record<TableName, SourceTable>;
  /** The file stores text as UTF-16 (PRAGMA encoding): its sizes count 2 bytes a unit. */
  utf16: boolean;
  /** Per table, the statement that reads one row's text as SQLite holds it (see {@link textFaults}). */
  rawText: Map<TableName, ArrayStatement>;
}

export function openSource(
  path: string,
  { lockTimeout, onStep }: Pick<Options, "lockTimeout" | "onStep"> = {},
): Source {
  // Opening a missing path read-only fails, but check first so the message
  // names the path and nothing is ever created.
  try {
    if (!Deno.statSync(path).isFile) {
      throw new MigrationError(
        "config",
        `SQLite path ${path} is not a file`,
        "set SQLITE_PATH or --sqlite",
      );
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new MigrationError(
        "config",
        `SQLite database not found: ${path}`,
        "set SQLITE_PATH or pass --sqlite PATH to the app's database file",
      );
    }
    throw error;
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { readOnly: true });
    db.exec(`PRAGMA busy_timeout = ${SQLITE_BUSY_SLICE_MS}`);
  } catch (error) {
    throw notReadable(path, error);
  }
  try {
    beginReading(db, path, lockTimeout ?? SQLITE_BUSY_LIMIT_SECONDS, onStep ?? (() => {}));
  } catch (error) {
    db.close();
    if (error instanceof MigrationError) throw error;
    throw notReadable(path, error);
  }
  try {
    const tables = {} as Record<TableName, SourceTable>;
    for (const table of TABLES) tables[table.name] = describeSourceTable(db, table);
    const [{ encoding }] = db.prepare("PRAGMA encoding").all() as { encoding: string }[];
    return { path, db, tables, utf16: encoding !== "UTF-8", rawText: new Map() };
  } catch (error) {
    db.close();
    throw asSqliteError(error, path);
  }
}

const notReadable = (path: string, error: unknown) =>
  new MigrationError(
    "config",
    `${path} is not a readable SQLite database (${errorMessage(error)})`,
    "check SQLITE_PATH points at the app's .db file",
  );

/**
 * BEGIN + a first read pins one snapshot of the whole file: both tables are
 * read as of the same moment while the app keeps writing. The app may be
 * committing right now: that is waited out, a slice at a time, up to
 * `limitSeconds`.
 */
function beginReading(
  db: DatabaseSync,
  path: string,
  limitSeconds: number,
  step: (line: string) => void,
): void {
  const started = performance.now();
  while (true) {
    db.exec("BEGIN");
    try {
      db.prepare("SELECT count(*) FROM sqlite_master").get();
      return;
    } catch (error) {
      db.exec("ROLLBACK");
      if ((error as { errcode?: number }).errcode !== SQLITE_BUSY) throw error;
    }
    const waited = Math.round((performance.now() - started) / 1000);
    if (waited >= limitSeconds) {
      throw new MigrationError(
        "lock",
        `gave up after waiting ${limitSeconds} s for SQLite ${path}: another process (the app?) holds a write lock on it; nothing was read`,
        "let the app finish its write (a long transaction, or BEGIN EXCLUSIVE, holds the lock), or stop it for the run; or raise --lock-timeout",
      );
    }
    step(
      `waiting for SQLite ${path}: another process (the app?) is writing to it and holds its lock (${waited} s; giving up after ${limitSeconds} s)`,
    );
  }
}

/** SQLite's own errors (locked, corrupt, I/O) as one line that names the file. */
export function asSqliteError(error: unknown, path: string): MigrationError {
  if (error instanceof MigrationError) return error;
  return new MigrationError(
    "config",
    `SQLite ${path}: ${errorMessage(error)}`,
    "check the file is the app's database and readable; run PRAGMA integrity_check on it",
  );
}

function describeSourceTable(db: DatabaseSync, table: TableSpec): SourceTable {
  const info = db.prepare(`PRAGMA table_info(${q(table.name)})`).all();
  const columns = info.map((row) => String(row.name));
  if (columns.length === 0) {
    throw new MigrationError(
      "config",
      `SQLite database has no table ${table.name}`,
      "check SQLITE_PATH points at the Music Time Machine database",
    );
  }
  const missingKey = table.key.filter((name) => !columns.includes(name));
  if (missingKey.length > 0) {
    throw new MigrationError(
      "config",
      `SQLite table ${table.name} lacks its key column ${missingKey.join(", ")}`,
      `the app's ${table.name} table has ${table.key.join(", ")}; check SQLITE_PATH`,
    );
  }
  const [list] = db.prepare(`PRAGMA table_list(${q(table.name)})`).all();
  const withRowId = Number(list?.wr) === 0;
  // SQLite makes a sole primary key column declared exactly INTEGER the rowid itself.
  const primaryKey = info.filter((row) => Number(row.pk) > 0);
  const rowIdAlias = withRowId && primaryKey.length === 1 &&
      String(primaryKey[0].type).toUpperCase() === "INTEGER"
    ? String(primaryKey[0].name)
    : undefined;
  const rows = Number(
    (db.prepare(`SELECT count(*) AS n FROM ${q(table.name)}`).get() as { n: number }).n,
  );
  return {
    columns,
    rows,
    uniqueKey: hasUniqueIndexOn(db, table),
    pageable: withRowId && !columns.includes("rowid"),
    ...(rowIdAlias === undefined ? {} : { rowIdAlias }),
  };
}

/** node:sqlite can return rows as arrays (faster); its type declarations lag behind. */
export interface ArrayStatement {
  iterate(): IterableIterator<unknown[]>;
  all(...params: unknown[]): unknown[][];
}

/**
 * Prepares a statement that yields arrays and reads integers as BigInt:
 * node:sqlite's iterate() otherwise stops silently at an integer beyond 2^53.
 * With `bigInts` false they are numbers (no allocation per integer), and
 * all() throws a RangeError at an integer beyond 2^53.
 */
export function prepareArrays(db: DatabaseSync, text: string, bigInts = true): ArrayStatement {
  const statement = db.prepare(text) as StatementSync & { setReturnArrays(on: boolean): void };
  statement.setReturnArrays(true);
  statement.setReadBigInts(bigInts);
  return statement as unknown as ArrayStatement;
}

/** True if some UNIQUE index or primary key uses only key columns. */
function hasUniqueIndexOn(db: DatabaseSync, table: TableSpec): boolean {
  const indexes = db.prepare(`PRAGMA index_list(${q(table.name)})`).all();
  return indexes.some((index) => {
    if (Number(index.unique) !== 1 || Number(index.partial) === 1) return false;
    const columns = db.prepare(`PRAGMA index_info(${q(String(index.name))})`).all()
      .map((row) => String(row.name));
    return columns.length > 0 && columns.every((name) => table.key.includes(name));
  });
}
