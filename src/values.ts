/**
 * Validation of single values against the target column's type: integers,
 * dates, timestamps, booleans, text limits and JSON.
 *
 * @module
 */

import type { ProblemKind } from "./types.ts";
import { PROBLEM_KINDS } from "./errors.ts";
import type { TypeRule } from "./tables.ts";
import { explainJsonb, isJsonb } from "./jsonb.ts";
import type { TargetColumn } from "./catalog.ts";

// Date, hour, minute, second, fraction, offset.
export const ISO_TIMESTAMP =
  /^(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/;

const VALUE_PREVIEW_CHARS = 60;

/** A value ready for COPY, already PostgreSQL-safe. */
export type CleanValue = string | number | bigint | boolean | null;

export function preview(value: unknown): string {
  const text = value instanceof Uint8Array
    ? `BLOB(${value.length} bytes)`
    : typeof value === "string"
    ? JSON.stringify(value)
    : String(value);
  return text.length > VALUE_PREVIEW_CHARS ? `${text.slice(0, VALUE_PREVIEW_CHARS)}…` : text;
}

/** A value that cannot go to PostgreSQL, and why; one shared instance per kind. */
export class Invalid {
  constructor(readonly kind: ProblemKind) {}
}

export const INVALID = Object.fromEntries(
  Object.keys(PROBLEM_KINDS).map((kind) => [kind, new Invalid(kind as ProblemKind)]),
) as Record<ProblemKind, Invalid>;

/** Checks one value and returns it in the form PostgreSQL will store, or why it cannot go there. */
export type Validator = (value: unknown) => CleanValue | Invalid;

/**
 * The validator for one target column, built once from its type rule: every
 * value of every row goes through it, so it allocates nothing.
 */
export function validatorFor(
  column: TargetColumn,
  rule: TypeRule,
  canonical?: (text: string) => Uint8Array,
): Validator {
  const check = valueCheck(column, rule, canonical);
  const nullable = !column.notNull;
  // A verdict depends on the value alone: the last one is kept, since rows
  // in a row repeat values (a snapshot's date and time range, mostly).
  let lastValue: unknown = undefined;
  let lastVerdict: CleanValue | Invalid = null;
  return (value) => {
    if (value === null || (rule.kind === "json" && value === "")) {
      // The seed stores empty raw_json as SQL NULL; keep that.
      return nullable ? null : INVALID["null-value"];
    }
    if (value === lastValue) return lastVerdict;
    lastVerdict = check(value);
    lastValue = typeof value === "string" || typeof value === "number" ? value : undefined;
    return lastVerdict;
  };
}

function valueCheck(
  column: TargetColumn,
  rule: TypeRule,
  canonical?: (text: string) => Uint8Array,
): (value: unknown) => CleanValue | Invalid {
  switch (rule.kind) {
    case "integer": {
      const [min, max] = rule.range!;
      const [low, high] = [Number(min), Number(max)];
      return (value) =>
        // A safe integer compares exactly with the bounds as doubles.
        typeof value === "number" && Number.isSafeInteger(value)
          ? value >= low && value <= high ? value : INVALID["out-of-range"]
          : checkInteger(value, min, max);
    }
    case "text": {
      const labels = column.labels ? new Set(column.labels) : null;
      const length = column.length;
      return (value) => {
        if (typeof value !== "string") return INVALID["not-text"];
        // PostgreSQL would cut trailing spaces beyond the limit without a word.
        if (length !== null && value.length > length && codePoints(value) > length) {
          return INVALID["too-long"];
        }
        if (labels && !labels.has(value)) return INVALID["not-allowed"];
        return value;
      };
    }
    case "date":
      return (value) =>
        typeof value !== "string"
          ? INVALID["not-text"]
          : isCalendarDate(value)
          ? value
          : INVALID["invalid-date"];
    case "timestamp": {
      // PostgreSQL would round the digits beyond the column's precision
      // without a word, as it would cut a too-long char(n)'s spaces.
      const digits = column.precision;
      return (value) =>
        typeof value !== "string"
          ? INVALID["not-text"]
          : !isTimestamp(value)
          ? INVALID["invalid-timestamp"]
          : digits !== null && fractionDigits(value) > digits
          ? INVALID["too-precise"]
          : value;
    }
    case "boolean":
      return checkBoolean;
    case "json": {
      // A jsonb payload is parsed once, here, for validation and its digest
      // (the canonicalizer remembers its last result).
      const parse = canonical!;
      return (value) =>
        typeof value !== "string"
          ? INVALID["not-text"]
          : isJsonb(parse, value)
          ? value
          : INVALID["invalid-json"];
    }
  }
}

/** Integers beyond 2^53 arrive as BigInt; a REAL such as 3.0 is the integer 3. */
function checkInteger(value: unknown, min: bigint, max: bigint): bigint | Invalid {
  let integer: bigint;
  if (typeof value === "bigint") integer = value;
  else if (typeof value === "number" && Number.isInteger(value)) integer = BigInt(value);
  else return INVALID["not-integer"];
  return integer >= min && integer <= max ? integer : INVALID["out-of-range"];
}

function checkBoolean(value: unknown): boolean | Invalid {
  if (value === 0n || value === 0) return false;
  if (value === 1n || value === 1) return true;
  if (typeof value === "string") {
    const word = value.toLowerCase();
    if (word === "true") return true;
    if (word === "false") return false;
  }
  return INVALID["invalid-boolean"];
}

/** Characters as PostgreSQL counts them: code points, not UTF-16 units. */
function codePoints(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0xd800 || code > 0xdbff) count++;
  }
  return count;
}

/** Why a value was refused, in words, for the report. */
export function describeInvalid(kind: ProblemKind, column: TargetColumn, value: unknown): string {
  const shown = preview(value);
  if (kind === "too-long") {
    return `${shown} (${
      codePoints(value as string)
    } characters; ${column.type} holds ${column.length})`;
  }
  if (kind === "out-of-range") return `${shown} (does not fit ${column.type})`;
  if (kind === "invalid-json" && typeof value === "string") {
    return `${shown} (${explainJsonb(value)})`;
  }
  if (kind === "invalid-date" && typeof value === "string") {
    const why = dateProblem(value);
    return why ? `${shown} (${why})` : shown;
  }
  if (kind === "too-precise") {
    const digits = column.precision!;
    return `${shown} (${column.type} keeps ${digits} fractional digit${digits === 1 ? "" : "s"})`;
  }
  if (kind === "not-allowed") {
    return `${shown} (${column.type} allows ${column.labels!.join(", ")})`;
  }
  return shown;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * `YYYY-MM-DD` naming a day of the proleptic Gregorian calendar, read digit by
 * digit: snapshots hold one date a row, and a regular expression and a Date
 * for each cost a quarter of a microsecond.
 */
function isCalendarDate(text: string): boolean {
  if (text.length !== 10 || text.charCodeAt(4) !== 0x2d || text.charCodeAt(7) !== 0x2d) {
    return false;
  }
  const year = digitsAt(text, 0, 4);
  const month = digitsAt(text, 5, 2);
  const day = digitsAt(text, 8, 2);
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return day <= (month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]);
}

const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

/** Why a text is not a calendar date, when it is written like one: for messages only. */
function dateProblem(text: string): string | undefined {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) return undefined;
  const [year, month, day] = text.split("-").map(Number);
  if (year < 1) return "there is no year 0";
  if (month < 1 || month > 12) return `there is no month ${month}`;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1];
  return day < 1 || day > days ? `${MONTHS[month - 1]} ${year} has ${days} days` : undefined;
}

/** The decimal number of `count` ASCII digits from `at`, or -1 if one is not a digit. */
function digitsAt(text: string, at: number, count: number): number {
  let value = 0;
  for (let i = at; i < at + count; i++) {
    const digit = text.charCodeAt(i) - 0x30;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
}

/** ISO 8601 as SQLite writes it (CURRENT_TIMESTAMP, datetime()), with an optional offset. */
/** Significant fractional-second digits of a valid timestamp: `00.50` has one. */
function fractionDigits(text: string): number {
  return (ISO_TIMESTAMP.exec(text)![5] ?? "").replace(/0+$/, "").length;
}

function isTimestamp(text: string): boolean {
  const match = ISO_TIMESTAMP.exec(text);
  if (!match || !isCalendarDate(match[1])) return false;
  const [hour, minute, second] = match.slice(2, 5).map((part) => Number(part ?? 0));
  return hour < 24 && minute < 60 && second < 60;
}
