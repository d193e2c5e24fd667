/**
 * Rows read from SQLite as the plan asks, streamed a page at a time.
 *
 * @module
 */

import type { ProblemKind } from "./types.ts";
import { MigrationError } from "./errors.ts";
import { q } from "./quote.ts";
import { type ArrayStatement, asSqliteError, prepareArrays, type Source } from "./sqlite_source.ts";
import type { TablePlan } from "./plan.ts";

/**
 * What a row read from SQLite holds: the planned columns in plan order, then
 * the size SQLite gives their text (see {@link textFaults}), then the rowid
 * where the table has one (to page by, and to ask SQLite about a row again).
 */
export function sourceColumns(source: Source, plan: TablePlan): string {
  const sizes = plan.textChecked.map((i) =>
    `coalesce(octet_length(${q(plan.columns[i].name)}), 0)`
  );
  return [
    ...plan.columns.map((c) => q(c.name)),
    sizes.join(" + ") || "0",
    ...(source.tables[plan.spec.name].pageable ? ["rowid"] : []),
  ].join(", ");
}

/**
 * node:sqlite cuts text at its first NUL and replaces bytes that are not
 * UTF-8 with U+FFFD, silently: JavaScript alone cannot tell such text from
 * what SQLite holds, and PostgreSQL would store the damage. So each row
 * carries the size SQLite gives its text columns (octet_length reads no
 * value), and JavaScript's text must come to the same size and hold no
 * U+FFFD. Where it does not, or where a value is not text (SQLite's text of a
 * number is not JavaScript's), SQLite is asked for that row's bytes (rare: a
 * U+FFFD may also be genuine). Returns the columns whose text is damaged, by
 * position, or null for the common row with none.
 */
export function textFaults(
  source: Source,
  plan: TablePlan,
  row: unknown[],
): (ProblemKind | null)[] | null {
  const checked = plan.textChecked;
  if (checked.length === 0) return null;
  const size = Number(row[plan.columns.length]);
  let units = 0;
  let suspect = false;
  for (const i of checked) {
    const value = row[i];
    if (typeof value === "string") {
      units += value.length;
      if (value.indexOf("\uFFFD") >= 0) suspect = true;
    } else if (value instanceof Uint8Array) units += value.length;
    else if (value !== null) suspect = true;
  }
  if (!suspect) {
    // A unit of JavaScript text comes from at least one byte of SQLite's, so
    // equal sizes mean every character came whole, none cut off.
    if ((source.utf16 ? 2 * units : units) === size) return null;
    if (!source.utf16) {
      let bytes = 0;
      for (const i of checked) {
        const value = row[i];
        if (typeof value === "string") bytes += utf8Length(value);
        else if (value instanceof Uint8Array) bytes += value.length;
      }
      if (bytes === size) return null;
    }
  }
  return askSqlite(source, plan, row);
}

/** The damaged text columns of one row, from SQLite's bytes: see {@link textFaults}. */
function askSqlite(source: Source, plan: TablePlan, row: unknown[]): (ProblemKind | null)[] {
  const name = plan.spec.name;
  const pageable = source.tables[name].pageable;
  let statement = source.rawText.get(name);
  if (!statement) {
    const columns = plan.textChecked.map((i) => q(plan.columns[i].name)).flatMap((c) => [
      `iif(typeof(${c}) = 'text', instr(${c}, char(0)) > 0, 0)`,
      `CAST(${c} AS BLOB)`,
    ]);
    const where = pageable
      ? "rowid = ?"
      : plan.spec.key.map((k) => `${q(k)} = ?`).join(" AND ") + " LIMIT 1";
    statement = prepareArrays(
      source.db,
      `SELECT ${columns.join(", ")} FROM ${q(name)} WHERE ${where}`,
    );
    source.rawText.set(name, statement);
  }
  let found: unknown[] | undefined;
  try {
    [found] = statement.all(...(pageable ? [row.at(-1)] : plan.keyIndexes.map((i) => row[i])));
  } catch (error) {
    throw asSqliteError(error, source.path);
  }
  const encoder = new TextEncoder();
  const faults: (ProblemKind | null)[] = new Array(plan.columns.length).fill(null);
  plan.textChecked.forEach((i, k) => {
    const value = row[i];
    if (value instanceof Uint8Array) {
      if (value.includes(0)) faults[i] = "nul-character";
      return;
    }
    if (typeof value !== "string") return;
    if (!found) {
      // No rowid, and the key itself is damaged: judge by size alone.
      faults[i] = value.indexOf("\uFFFD") >= 0 ? "invalid-utf8" : "nul-character";
      return;
    }
    if (found[2 * k] === 1n) faults[i] = "nul-character";
    else if (!source.utf16 && !sameBytes(encoder.encode(value), found[2 * k + 1] as Uint8Array)) {
      faults[i] = "invalid-utf8";
    }
  });
  return faults;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/**
 * Streams the planned columns of a table's rows as arrays, in plan order,
 * followed by the NUL bit masks.
 */
export function* readRows(source: Source, plan: TablePlan, pageRows: number): Generator<unknown[]> {
  for (const page of readPages(source, plan, pageRows)) yield* page;
}

/**
 * The same rows a page at a time: a loop over a page costs less than a
 * generator's turn per row (a rerun's digests of 1.5 M snapshots: 7 %).
 */
export function* readPages(
  source: Source,
  plan: TablePlan,
  pageRows: number,
): Generator<unknown[][]> {
  const name = plan.spec.name;
  const columns = sourceColumns(source, plan);
  let read = 0;
  if (source.tables[name].pageable) {
    // A page per all() call is ~2.5× faster than iterate(); small pages keep
    // the payloads young, so V8 frees them without growing the heap.
    // Integers as numbers; a page that holds one beyond 2^53 is read again
    // with BigInts, so no digit is lost.
    const text = `SELECT ${columns} FROM ${
      q(name)
    } WHERE rowid > ? ORDER BY rowid LIMIT ${pageRows}`;
    const page = prepareArrays(source.db, text, false);
    let exact: ArrayStatement | undefined;
    const fetch = (after: unknown) => {
      try {
        try {
          return page.all(after);
        } catch (error) {
          if (!(error instanceof RangeError)) throw error;
          exact ??= prepareArrays(source.db, text);
          return exact.all(after);
        }
      } catch (error) {
        throw asSqliteError(error, source.path);
      }
    };
    for (let rows = fetch(-1); rows.length > 0; rows = fetch(rows[rows.length - 1].at(-1))) {
      read += rows.length;
      yield rows;
    }
  } else {
    try {
      for (const row of prepareArrays(source.db, `SELECT ${columns} FROM ${q(name)}`).iterate()) {
        read++;
        yield [row];
      }
    } catch (error) {
      throw asSqliteError(error, source.path);
    }
  }
  if (read !== source.tables[name].rows) {
    throw new MigrationError(
      "data",
      `SQLite returned ${read} of ${source.tables[name].rows} rows of ${name}`,
      "run PRAGMA integrity_check on the SQLite file",
    );
  }
}

/**
 * Keys that occur more than once, as the target compares them: a char(n)
 * key ignores trailing spaces, a citext one case (ASCII case here; PostgreSQL
 * refuses the rest when it writes). Asked of SQLite only where no UNIQUE
 * index of its own rules them out, which it cannot for such keys.
 */
export function duplicateSourceKeys(
  source: Source,
  plan: TablePlan,
): { key: string; count: number; folded: boolean }[] {
  const table = plan.spec;
  const asTarget = table.key.map((k) => {
    const base = plan.columns.find((c) => c.name === k)?.target.baseName;
    return base === "bpchar" ? `rtrim(${q(k)}, ' ')` : base === "citext" ? `lower(${q(k)})` : q(k);
  });
  const folded = asTarget.some((expression, i) => expression !== q(table.key[i]));
  if (source.tables[table.name].uniqueKey && !folded) return [];
  const keys = asTarget.join(", ");
  const statement = prepareArrays(
    source.db,
    `SELECT ${keys}, count(*) FROM ${q(table.name)} GROUP BY ${keys} HAVING count(*) > 1`,
  );
  try {
    return statement.all().map((row) => ({
      key: row.slice(0, -1).map(String).join("/"),
      count: Number(row.at(-1)),
      folded,
    }));
  } catch (error) {
    throw asSqliteError(error, source.path);
  }
}

/** Bytes of `text` in UTF-8, as PostgreSQL's octet_length counts them. */
function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) continue;
    // Each half of a surrogate pair adds 1 (4 bytes per pair); other BMP code
    // units add 1 below U+0800 and 2 above.
    bytes += code < 0x800 || (code >= 0xd800 && code <= 0xdfff) ? 1 : 2;
  }
  return bytes;
}

/** Reads one source row by its key, as {@link readRows} reads rows. */
export function sourceLookup(source: Source, plan: TablePlan): ArrayStatement {
  return prepareArrays(
    source.db,
    `SELECT ${sourceColumns(source, plan)} FROM ${q(plan.spec.name)} WHERE ${
      plan.spec.key.map((k) => `${q(k)} = ?`).join(" AND ")
    }`,
  );
}
