/**
 * Row digests: each field's canonical text hashed the same way on both sides,
 * in JavaScript here and in SQL for PostgreSQL (hashtextextended).
 *
 * Verification compares every target row with its SQLite source: JavaScript
 * hashes a canonical text of each field of each source row while it reads
 * SQLite, and PostgreSQL hashes the same text of each stored field
 * (`col::text`, under the run's DateStyle and TimeZone). A field's hash is
 * PostgreSQL's own `hashtextextended(text, place)` (Bob Jenkins' lookup3, 64
 * bits, no extension needed), seeded with the field's place in digestOrder()
 * (key first), so that equal values in two columns, or two columns' values
 * swapped, do not cancel; a row's digest is the hash of no text seeded with
 * its fields' hashes XORed (a NULL adds 0): through that hash, the same
 * change in two rows of a rerun's bucket cannot cancel in the bucket's sum.
 * Hashing fields apart costs PostgreSQL less than building one text of the
 * row (no lengths to print and concatenate: half the time for a snapshot),
 * and the key's hashes, shifted by place, give a rerun its bucket with no
 * extra work. A row whose digests differ is not condemned on that
 * alone: it is read again from SQLite and compared by value in PostgreSQL
 * (so `1.0` stored as `1.00` still counts as equal JSONB), over bind
 * parameters rather than COPY, so the second look does not share the first
 * one's path.
 *
 * @module
 */

import { q } from "./quote.ts";
import { jsonbCanonicalizer } from "./jsonb.ts";
import { type CleanValue, ISO_TIMESTAMP } from "./values.ts";
import { keyMatch, type PlannedColumn, type TablePlan } from "./plan.ts";

export const DIGEST = "migrate_digest";

/**
 * PostgreSQL's hash_bytes_extended with seed 0: what `hashtextextended(text, 0)`
 * returns, as its high and low 32 bits (unsigned), into `into`: no BigInt
 * per row.
 */
function hashBytesExtended(
  k: Uint8Array,
  length: number,
  into: Halves,
  words: Int32Array | null = null,
  seedLow = 0,
  seedHigh = 0,
): void {
  let a = (0x9e3779b9 + length + 3923095) | 0;
  let b = a;
  let c = a;
  if (seedLow !== 0 || seedHigh !== 0) {
    // A seed perturbs the state: its high half into a, its low half into b,
    // then mix(a, b, c) as below (inline, like the loop's: a function would
    // have to allocate to return three numbers).
    a = (a + seedHigh) | 0;
    b = (b + seedLow) | 0;
    a = (a - c) | 0, a ^= (c << 4) | (c >>> 28), c = (c + b) | 0;
    b = (b - a) | 0, b ^= (a << 6) | (a >>> 26), a = (a + c) | 0;
    c = (c - b) | 0, c ^= (b << 8) | (b >>> 24), b = (b + a) | 0;
    a = (a - c) | 0, a ^= (c << 16) | (c >>> 16), c = (c + b) | 0;
    b = (b - a) | 0, b ^= (a << 19) | (a >>> 13), a = (a + c) | 0;
    c = (c - b) | 0, c ^= (b << 4) | (b >>> 28), b = (b + a) | 0;
  }
  let i = 0;
  let rest = length;
  while (rest >= 12) {
    if (words !== null) {
      const w = i >> 2;
      a = (a + words[w]) | 0;
      b = (b + words[w + 1]) | 0;
      c = (c + words[w + 2]) | 0;
    } else {
      a = (a + (k[i] | (k[i + 1] << 8) | (k[i + 2] << 16) | (k[i + 3] << 24))) | 0;
      b = (b + (k[i + 4] | (k[i + 5] << 8) | (k[i + 6] << 16) | (k[i + 7] << 24))) | 0;
      c = (c + (k[i + 8] | (k[i + 9] << 8) | (k[i + 10] << 16) | (k[i + 11] << 24))) | 0;
    }
    // mix(a, b, c)
    a = (a - c) | 0, a ^= (c << 4) | (c >>> 28), c = (c + b) | 0;
    b = (b - a) | 0, b ^= (a << 6) | (a >>> 26), a = (a + c) | 0;
    c = (c - b) | 0, c ^= (b << 8) | (b >>> 24), b = (b + a) | 0;
    a = (a - c) | 0, a ^= (c << 16) | (c >>> 16), c = (c + b) | 0;
    b = (b - a) | 0, b ^= (a << 19) | (a >>> 13), a = (a + c) | 0;
    c = (c - b) | 0, c ^= (b << 4) | (b >>> 28), b = (b + a) | 0;
    i += 12;
    rest -= 12;
  }
  // The last 11 bytes, little-endian; the lowest byte of c is left to the length.
  for (let j = 0; j < rest; j++) {
    const byte = k[i + j];
    if (j < 4) a = (a + (byte << (8 * j))) | 0;
    else if (j < 8) b = (b + (byte << (8 * (j - 4)))) | 0;
    else c = (c + (byte << (8 * (j - 7)))) | 0;
  }
  // final(a, b, c)
  c ^= b, c = (c - ((b << 14) | (b >>> 18))) | 0;
  a ^= c, a = (a - ((c << 11) | (c >>> 21))) | 0;
  b ^= a, b = (b - ((a << 25) | (a >>> 7))) | 0;
  c ^= b, c = (c - ((b << 16) | (b >>> 16))) | 0;
  a ^= c, a = (a - ((c << 4) | (c >>> 28))) | 0;
  b ^= a, b = (b - ((a << 14) | (a >>> 18))) | 0;
  c ^= b, c = (c - ((b << 24) | (b >>> 8))) | 0;
  into.high = b >>> 0;
  into.low = c >>> 0;
}

/**
 * True where an Int32Array reads memory little-endian (x86, ARM): the hash
 * then loads its input a word at a time, as PostgreSQL's does on aligned
 * input, instead of a byte at a time.
 */
export const LITTLE_ENDIAN = new Uint8Array(new Int32Array([1]).buffer)[0] === 1;

/** A 64-bit value as two unsigned 32-bit halves. */
interface Halves {
  high: number;
  low: number;
}

const TWO_32 = 2 ** 32;

/** The signed 64-bit value of two halves, as PostgreSQL's bigint holds it. */
const int64 = (high: number, low: number) => BigInt.asIntN(64, (BigInt(high) << 32n) + BigInt(low));

/**
 * A sum of digests modulo 2^64, what PostgreSQL's `sum(digest)` is modulo
 * 2^64. The halves are summed apart as doubles, carried before they could
 * lose a bit.
 */
export class DigestSum {
  /** Source rows read so far (for progress); `rows` counts the rows summed. */
  read = 0;
  rows = 0;
  #high = 0;
  #low = 0;

  add(digest: Halves): void {
    this.rows++;
    this.#high += digest.high;
    this.#low += digest.low;
    if (this.#low >= 2 ** 52) {
      const carry = Math.floor(this.#low / TWO_32);
      this.#high = (this.#high + carry) % TWO_32;
      this.#low -= carry * TWO_32;
    }
  }

  /** The sum as a signed 64-bit value. */
  get value(): bigint {
    const carry = Math.floor(this.#low / TWO_32);
    return int64((this.#high + carry) % TWO_32, this.#low - carry * TWO_32);
  }
}

/**
 * The hash that PostgreSQL computes for `text` with `hashtextextended(text, 0)`.
 *
 * @example
 * ```ts
 * import { hashTextExtended } from "./migrate.ts";
 * hashTextExtended("abc"); // equals SELECT hashtextextended('abc', 0)
 * ```
 */
export function hashTextExtended(text: string): bigint {
  const bytes = new TextEncoder().encode(text);
  const halves = { high: 0, low: 0 };
  hashBytesExtended(bytes, bytes.length, halves);
  return int64(halves.high, halves.low);
}

/**
 * The canonical text of `jsonb_out` for a JSON text that JSONB accepts.
 *
 * @example
 * ```ts
 * import { jsonbText } from "./migrate.ts";
 * jsonbText('{"b": 1e2, "a": -0}'); // '{"a": 0, "b": 100}'
 * ```
 */
export function jsonbText(text: string): string {
  return new TextDecoder().decode(jsonbCanonicalizer()(text));
}

const SHORT_TEXT = 64;

/** Builds one row's canonical text as UTF-8 in a reused buffer, then hashes it. */
export class RowDigest {
  #buffer = new Uint8Array(1 << 16);
  /** The buffer as 32-bit words, for the hash (null where memory is big-endian). */
  #words: Int32Array | null = LITTLE_ENDIAN ? new Int32Array(this.#buffer.buffer) : null;
  #length = 0;
  #encoder = new TextEncoder();

  #reserve(bytes: number): void {
    if (this.#length + bytes <= this.#buffer.length) return;
    const bigger = new Uint8Array(Math.max(this.#buffer.length * 2, this.#length + bytes));
    bigger.set(this.#buffer.subarray(0, this.#length));
    this.#buffer = bigger;
    this.#words = LITTLE_ENDIAN ? new Int32Array(bigger.buffer, 0, bigger.length >> 2) : null;
  }

  /**
   * The last value at each place, and its field hash: a value equal to the
   * last row's (a snapshot's date and time range, mostly) is hashed once.
   */
  #last: unknown[] = [];
  #lastHigh: number[] = [];
  #lastLow: number[] = [];
  #again = false;

  /** Whether the field is the same value as at this place in the last row. */
  #same(value: string | number): boolean {
    if (this.#last[this.#place] === value) return this.#again = true;
    this.#last[this.#place] = value;
    return false;
  }

  /** A field's text, as UTF-8. */
  raw(text: string): void {
    if (this.#same(text)) return;
    this.#reserve(text.length * 3);
    // Short ASCII text (keys, dates, numbers) is copied by hand: cheaper than
    // a call into the encoder for every field of every row.
    if (text.length <= SHORT_TEXT) {
      const start = this.#length;
      let i = 0;
      for (; i < text.length; i++) {
        const code = text.charCodeAt(i);
        if (code >= 0x80) break;
        this.#buffer[start + i] = code;
      }
      if (i === text.length) {
        this.#length += i;
        return;
      }
    }
    this.#length += this.#encoder.encodeInto(text, this.#buffer.subarray(this.#length)).written;
  }

  /** A NULL field: it adds nothing to the digest. */
  null(): void {
    this.#null = true;
  }

  /**
   * An integer field, as int2/4/8out print it. A number's digits are written
   * one by one: String() of each row's integer cost more than its hash.
   */
  integer(value: number | bigint): void {
    if (typeof value === "bigint") return this.raw(String(value));
    if (this.#same(value)) return;
    this.#reserve(18);
    const buffer = this.#buffer;
    let at = this.#length;
    if (value < 0) {
      buffer[at++] = 0x2d; // -
      value = -value;
    }
    let digits = 1;
    for (let power = 10; power <= value; power *= 10) digits++;
    for (let d = at + digits - 1; d >= at; d--) {
      buffer[d] = 0x30 + (value % 10);
      value = Math.floor(value / 10);
    }
    this.#length = at + digits;
  }

  /** A field's text, already UTF-8. */
  bytes(bytes: Uint8Array): void {
    this.#last[this.#place] = undefined;
    this.#reserve(bytes.length);
    this.#buffer.set(bytes, this.#length);
    this.#length += bytes.length;
  }

  /** The last row's digest, as halves; see {@link value}. */
  high = 0;
  low = 0;
  /** The last row's key hash: see {@link bucketSql}. */
  keyHash = 0;
  #high = 0;
  #low = 0;
  #keyHash = 0;
  #place = 0;
  #null = false;
  #field = { high: 0, low: 0 };

  /**
   * Ends a field: its text is hashed with its place in the row as the seed
   * and XORed into the row's digest (a NULL adds 0), and for a key field,
   * its low half shifted left by its place, into the key hash.
   */
  endField(key: boolean): void {
    if (!this.#null) {
      const field = this.#field;
      const place = this.#place;
      if (this.#again) {
        field.high = this.#lastHigh[place];
        field.low = this.#lastLow[place];
      } else {
        hashBytesExtended(this.#buffer, this.#length, field, this.#words, place);
        this.#lastHigh[place] = field.high;
        this.#lastLow[place] = field.low;
      }
      this.#high ^= field.high;
      this.#low ^= field.low;
      if (key) this.#keyHash ^= field.low << this.#place;
    }
    this.#place++;
    this.#length = 0;
    this.#null = false;
    this.#again = false;
  }

  /**
   * Ends a row: its digest, the hash of no text seeded with its fields'
   * hashes XORed, is in high and low; its key hash in keyHash. The XOR alone
   * would be linear: the same change in two rows of a bucket (ranks swapped)
   * flips both digests by the same bits, and their sum could stay the same
   * with odds of one in 2^20 to 2^27; through a hash, one in 2^64.
   */
  finish(): this {
    hashBytesExtended(this.#buffer, 0, this, null, this.#low, this.#high);
    this.keyHash = this.#keyHash;
    this.#high =
      this.#low =
      this.#keyHash =
      this.#place =
        0;
    return this;
  }

  /** The last digest as PostgreSQL's bigint. */
  get value(): bigint {
    return int64(this.high, this.low);
  }
}

/** Adds one clean value, as PostgreSQL's `::text` of the stored value prints it. */
export function addCanonical(digest: RowDigest, column: PlannedColumn, value: CleanValue): void {
  if (value === null) return digest.null();
  switch (column.kind) {
    case "json":
      return column.target.baseName === "jsonb"
        ? digest.bytes(column.canonical!(value as string))
        : digest.raw(value as string);
    case "text":
      // char(n)::text drops the padding, and with it any trailing spaces.
      return digest.raw(
        column.target.baseName === "bpchar"
          ? (value as string).replace(/ +$/, "")
          : value as string,
      );
    case "timestamp":
      return digest.raw(timestampText(value as string, column.target.baseName === "timestamptz"));
    case "integer":
      return digest.integer(value as number | bigint);
    default:
      return digest.raw(String(value));
  }
}

/**
 * A clean value as the target's `::text` prints it where it holds that
 * value: the text {@link addCanonical} hashes. JSON is the source's own
 * text, which a JSONB column's value is compared with as JSONB (1.0 equals
 * 1.00) and a json column's text as it is (json keeps its input).
 */
export function comparableText(column: PlannedColumn, value: CleanValue): string | null {
  if (value === null) return null;
  switch (column.kind) {
    case "json":
      return value as string;
    case "text":
      return column.target.baseName === "bpchar"
        ? (value as string).replace(/ +$/, "")
        : value as string;
    case "timestamp":
      return timestampText(value as string, column.target.baseName === "timestamptz");
    default:
      return String(value);
  }
}

/**
 * A timestamp as PostgreSQL prints it with DateStyle ISO and TimeZone UTC:
 * `2024-01-31 09:05:00.5+00` for timestamptz (an offset in the input is
 * applied), `2024-01-31 09:05:00.5` for timestamp (an offset is ignored, as
 * PostgreSQL ignores it).
 */
function timestampText(text: string, withZone: boolean): string {
  // `YYYY-MM-DD HH:MM:SS` (CURRENT_TIMESTAMP's form, valid: see isTimestamp)
  // is printed as it is written.
  if (text.length === 19 && text.charCodeAt(10) === 0x20 && text.charCodeAt(16) === 0x3a) {
    return withZone ? `${text}+00` : text;
  }
  const match = ISO_TIMESTAMP.exec(text)!;
  const [, date, hour = "00", minute = "00", second = "00", fraction = "", offset] = match;
  const [year, month, day] = date.split("-").map(Number);
  const time = new Date(0);
  time.setUTCFullYear(year, month - 1, day);
  time.setUTCHours(Number(hour), Number(minute), Number(second));
  if (withZone && offset && offset !== "Z") {
    const digits = offset.replace(":", "");
    const minutes = Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5) || 0);
    time.setUTCMinutes(time.getUTCMinutes() - (digits[0] === "-" ? -minutes : minutes));
  }
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  const fractionText = fraction.replace(/0+$/, "");
  return `${pad(time.getUTCFullYear(), 4)}-${pad(time.getUTCMonth() + 1)}-${
    pad(time.getUTCDate())
  } ${pad(time.getUTCHours())}:${pad(time.getUTCMinutes())}:${pad(time.getUTCSeconds())}${
    fractionText ? `.${fractionText}` : ""
  }${withZone ? "+00" : ""}`;
}

/**
 * Each target row's digest, computed by PostgreSQL from the stored values:
 * the same canonical text as {@link rowDigest} builds from SQLite's. Small
 * values are printed twice (length and text): a lateral subquery that
 * printed each once made the whole expression five times slower.
 */
export function targetDigests(plan: TablePlan, onlyIn?: string): string {
  return `SELECT ${plan.spec.key.map((k) => `t.${q(k)}`).join(", ")}, ${
    digestSql(plan)
  } AS ${DIGEST}
    FROM ${plan.target.qualified} t${
    onlyIn ? ` WHERE EXISTS (SELECT FROM ${onlyIn} o WHERE ${keyMatch(plan, "o", "t")})` : ""
  }`;
}

/** A row's digest in SQL, over the target row `t`: see {@link RowDigest.finish}. */
export function digestSql(plan: TablePlan): string {
  return rowDigestSql(fieldHashes(plan));
}

/** A row's digest in SQL from its fields' hashes. */
export function rowDigestSql(hashes: string[]): string {
  return `hashtextextended('' COLLATE "C", ${hashes.join(" # ")})`;
}

/**
 * Each field's hash in SQL, in digest order: its text (`::text`, see
 * {@link addCanonical}) hashed with its place as the seed, 0 for NULL.
 */
export function fieldHashes(plan: TablePlan): string[] {
  return plan.digestOrder.map((i, place) => {
    const column = plan.columns[i];
    const hash = `hashtextextended(t.${q(column.name)}::text COLLATE "C", ${place})`;
    return column.target.notNull ? hash : `coalesce(${hash}, 0)`;
  });
}
