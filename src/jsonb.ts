/**
 * JSON as PostgreSQL's JSONB reads it: one scanner that validates with JSONB's
 * rules and limits and makes the canonical text jsonb::text prints, without
 * building objects.
 *
 * @module
 */

// JSON.parse is never used: it loses number digits, and would allocate about
// three times the payload in throwaway objects, most of this tool's garbage.
// The text itself is sent as written, so numbers such as
// 12345678901234567890 keep their digits.

/**
 * What `jsonb_out` prints for a JSON text, as UTF-8 bytes, without JSON.parse
 * (which loses number digits). Rules, each checked against PostgreSQL by the
 * differential test in migrate_test.ts: duplicate keys keep the last value;
 * keys sort by UTF-8 length, then bytewise; `{"a": 1, "b": [1, 2]}` spacing;
 * escapes decoded, then written as escape_json does; numbers as numeric_out
 * prints them (no exponent, display scale max(0, fraction digits − exponent),
 * no negative zero). It throws for any text that JSONB refuses (the
 * differential tests hold it to PostgreSQL's verdicts), so it also serves as
 * the validator of JSON payloads: the one JSON grammar of this tool, with
 * JSONB's limits. Each call of this function makes a canonicalizer that owns
 * its buffers (a run makes one per JSON column); the result of a call is a
 * view of one of them, valid until that canonicalizer's next call.
 */
export function jsonbCanonicalizer(): (text: string) => Uint8Array {
  const encoder = new TextEncoder();

  let b: Uint8Array = new Uint8Array(0); // input bytes
  let n = 0; // input length
  let i = 0; // input cursor
  let out = new Uint8Array(1 << 16); // output bytes
  let o = 0; // output length
  let inBuf = new Uint8Array(1 << 16); // UTF-8 of jsonbText's argument

  // Decoded bytes of keys that contained escapes (plain keys are read from b).
  let ks = new Uint8Array(1 << 10);
  let kso = 0;

  // Stack of object members: key bytes [kA, kE) in b (or in ks if kIn[x] === 1),
  // member output range [mS, mE) in out, and the sort permutation.
  let kA = new Int32Array(256);
  let kE = new Int32Array(256);
  let mS = new Int32Array(256);
  let mE = new Int32Array(256);
  let ord = new Int32Array(256);
  let kIn = new Uint8Array(256);
  let top = 0;

  // Set by str(): where the last key's decoded bytes are.
  let keyA = 0;
  let keyE = 0;
  let keyInKs = 0;

  function encodeInput(text: string): Uint8Array {
    if (inBuf.length < text.length * 3) {
      inBuf = new Uint8Array(text.length * 3 + 1024);
    }
    const { written } = encoder.encodeInto(text, inBuf);
    return inBuf.subarray(0, written);
  }

  /**
   * UTF-8 JSON in, UTF-8 jsonb text out. The result is a view of an internal
   * buffer, valid only until the next call of any function of this module.
   */
  function jsonbBytes(input: Uint8Array): Uint8Array {
    b = input;
    n = input.length;
    i = 0;
    o = 0;
    kso = 0;
    top = 0;
    ensure(2 * n + 64); // output <= 2 * input, except numbers with exponents (they ensure())
    try {
      skipWs();
      value();
      skipWs();
      if (i !== n) fail("trailing characters");
      return out.subarray(0, o);
    } finally {
      b = EMPTY;
    }
  }
  const EMPTY = new Uint8Array(0);

  function fail(msg: string): never {
    throw new SyntaxError(`jsonb: ${msg} at byte ${i}`);
  }

  function ensure(size: number): void {
    if (out.length >= size) return;
    const bigger = new Uint8Array(Math.max(size, out.length * 2));
    bigger.set(out.subarray(0, o));
    out = bigger;
  }

  // The loops below call this only where the next byte may be whitespace
  // (at most a space): in compact JSON it never is, and the call itself
  // cost a tenth of the parse (the medium set's payloads: 310 → 280 ms).
  function skipWs(): void {
    const src = b;
    let ii = i;
    let c = src[ii];
    if (c > 32) return; // fast path: no whitespace (c is never undefined here in practice)
    while (c === 32 || c === 10 || c === 13 || c === 9) c = src[++ii];
    i = ii;
  }

  function value(): void {
    const c = b[i];
    switch (c) {
      case 0x7b: // {
        object();
        return;
      case 0x5b: // [
        array();
        return;
      case 0x22: // "
        str(false);
        return;
      case 0x74: // t
        literal(0x72, 0x75, 0x65, -1); // rue
        return;
      case 0x66: // f
        literal(0x61, 0x6c, 0x73, 0x65); // alse
        return;
      case 0x6e: // n
        literal(0x75, 0x6c, 0x6c, -1); // ull
        return;
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) number();
        else fail("unexpected character");
    }
  }

  function literal(c1: number, c2: number, c3: number, c4: number): void {
    const len = c4 < 0 ? 4 : 5;
    if (
      b[i + 1] !== c1 || b[i + 2] !== c2 || b[i + 3] !== c3 ||
      (c4 >= 0 && b[i + 4] !== c4)
    ) {
      fail("bad literal");
    }
    for (let k = 0; k < len; k++) out[o++] = b[i++];
  }

  // ---------------------------------------------------------------- strings

  /** Copies the string at i (b[i] === '"') to out in jsonb form. */
  function str(isKey: boolean): void {
    const src = b;
    const dst = out;
    let ii = i + 1;
    let oo = o;
    const start = ii;
    dst[oo++] = 0x22;
    for (;;) {
      const c = src[ii];
      if (c === 0x22) break;
      if (c === 0x5c || c === undefined || c < 0x20) {
        i = ii;
        o = oo;
        if (c === undefined) fail("unterminated string");
        if (c < 0x20) fail("control character in a string");
        escaped(isKey, start);
        return;
      }
      dst[oo++] = c;
      ii++;
    }
    dst[oo++] = 0x22;
    i = ii;
    o = oo;
    if (isKey) {
      keyA = start;
      keyE = i;
      keyInKs = 0;
    }
    i++;
  }

  function ensureKs(size: number): void {
    if (ks.length >= size) return;
    const bigger = new Uint8Array(Math.max(size, ks.length * 2));
    bigger.set(ks.subarray(0, kso));
    ks = bigger;
  }

  /** Rest of a string with escapes: decode, re-escape as escape_json does. */
  function escaped(isKey: boolean, start: number): void {
    if (isKey) {
      // the decoded key goes to ks: plain prefix first; decoding never grows
      ensureKs(kso + (n - start) + 16);
      keyA = kso;
      keyInKs = 1;
      for (let k = start; k < i; k++) ks[kso++] = b[k];
    }
    for (;;) {
      const c = b[i];
      if (c === 0x22) break;
      if (i >= n) fail("unterminated string");
      if (c < 0x20) fail("control character in a string");
      if (c !== 0x5c) {
        out[o++] = c;
        if (isKey) ks[kso++] = c;
        i++;
        continue;
      }
      const e = b[i + 1];
      i += 2;
      let d: number; // decoded character (code point)
      switch (e) {
        case 0x22:
        case 0x5c:
        case 0x2f:
          d = e;
          break;
        case 0x62:
          d = 8;
          break;
        case 0x66:
          d = 12;
          break;
        case 0x6e:
          d = 10;
          break;
        case 0x72:
          d = 13;
          break;
        case 0x74:
          d = 9;
          break;
        case 0x75: {
          d = hex4(i);
          i += 4;
          if (d === 0) fail("\\u0000 cannot be converted to text");
          if (d >= 0xd800 && d <= 0xdbff) {
            if (b[i] !== 0x5c || b[i + 1] !== 0x75) {
              fail("Unicode low surrogate must follow a high surrogate");
            }
            const lo = hex4(i + 2);
            if (lo < 0xdc00 || lo > 0xdfff) {
              fail("Unicode low surrogate must follow a high surrogate");
            }
            i += 6;
            d = 0x10000 + ((d - 0xd800) << 10) + (lo - 0xdc00);
          } else if (d >= 0xdc00 && d <= 0xdfff) {
            fail("Unicode low surrogate must follow a high surrogate");
          }
          break;
        }
        default:
          return fail("bad escape");
      }
      if (d < 0x80) {
        if (isKey) ks[kso++] = d;
        writeEscapedAscii(d);
      } else {
        const at = o;
        writeUtf8(d);
        if (isKey) { for (let k = at; k < o; k++) ks[kso++] = out[k]; }
      }
    }
    out[o++] = 0x22;
    if (isKey) keyE = kso;
    i++;
  }

  const HEX = [
    0x30,
    0x31,
    0x32,
    0x33,
    0x34,
    0x35,
    0x36,
    0x37,
    0x38,
    0x39,
    0x61,
    0x62,
    0x63,
    0x64,
    0x65,
    0x66,
  ];

  /** escape_json for one ASCII character. */
  function writeEscapedAscii(d: number): void {
    if (d >= 0x20) {
      if (d === 0x22 || d === 0x5c) out[o++] = 0x5c;
      out[o++] = d;
      return;
    }
    out[o++] = 0x5c;
    switch (d) {
      case 8:
        out[o++] = 0x62;
        return;
      case 12:
        out[o++] = 0x66;
        return;
      case 10:
        out[o++] = 0x6e;
        return;
      case 13:
        out[o++] = 0x72;
        return;
      case 9:
        out[o++] = 0x74;
        return;
      default:
        out[o++] = 0x75; // u00xx, lowercase hex
        out[o++] = 0x30;
        out[o++] = 0x30;
        out[o++] = HEX[d >> 4];
        out[o++] = HEX[d & 15];
    }
  }

  function writeUtf8(cp: number): void {
    if (cp < 0x800) {
      out[o++] = 0xc0 | (cp >> 6);
    } else if (cp < 0x10000) {
      out[o++] = 0xe0 | (cp >> 12);
      out[o++] = 0x80 | ((cp >> 6) & 0x3f);
    } else {
      out[o++] = 0xf0 | (cp >> 18);
      out[o++] = 0x80 | ((cp >> 12) & 0x3f);
      out[o++] = 0x80 | ((cp >> 6) & 0x3f);
    }
    out[o++] = 0x80 | (cp & 0x3f);
  }

  function hex4(at: number): number {
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = b[at + k];
      let d: number;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else return fail("bad \\u escape");
      v = (v << 4) | d;
    }
    return v;
  }

  // ---------------------------------------------------------------- numbers

  function number(): void {
    const src = b;
    let ii = i;
    const start = ii;
    let c = src[ii];
    const neg = c === 0x2d;
    if (neg) c = src[++ii];
    const intStart = ii;
    while (c >= 0x30 && c <= 0x39) c = src[++ii];
    const intEnd = ii;
    let fracStart = ii;
    let fracEnd = ii;
    let zeroFrac = true;
    let badFrac = false;
    if (c === 0x2e) {
      fracStart = ++ii;
      c = src[ii];
      while (c >= 0x30 && c <= 0x39) {
        if (c !== 0x30) zeroFrac = false;
        c = src[++ii];
      }
      fracEnd = ii;
      badFrac = fracEnd === fracStart;
    }
    i = ii;
    if (intEnd === intStart || badFrac) fail("bad number");
    if (src[intStart] === 0x30 && intEnd - intStart > 1) fail("leading zero");
    if (c !== 0x65 && c !== 0x45) {
      if (fracEnd - fracStart > NUMERIC_DSCALE_MAX || intEnd - intStart > NUMERIC_MAX_INT_DIGITS) {
        fail("value overflows numeric format");
      }
      // No exponent: JSON has no leading zeros, so the text already is
      // numeric_out's, except that numeric has no negative zero.
      const from = neg && src[intStart] === 0x30 && zeroFrac ? intStart : start;
      const dst = out;
      let oo = o;
      for (let k = from; k < ii; k++) dst[oo++] = src[k];
      o = oo;
      return;
    }
    c = b[++i];
    let expNeg = false;
    if (c === 0x2b || c === 0x2d) {
      expNeg = c === 0x2d;
      c = b[++i];
    }
    const expStart = i;
    while (c >= 0x30 && c <= 0x39) c = b[++i];
    if (i === expStart) fail("bad number");
    let exp = Number(ascii(expStart, i));
    if (expNeg) exp = -exp;
    const text = scaled(
      neg,
      ascii(intStart, intEnd),
      ascii(fracStart, fracEnd),
      exp,
    );
    ensure(o + text.length + 2 * (n - i) + 64);
    for (let k = 0; k < text.length; k++) out[o++] = text.charCodeAt(k);
  }

  function ascii(from: number, to: number): string {
    let s = "";
    for (let k = from; k < to; k++) s += String.fromCharCode(b[k]);
    return s;
  }

  const NUMERIC_DSCALE_MAX = 16383;
  const NUMERIC_MAX_INT_DIGITS = 131072; // (NUMERIC_WEIGHT_MAX + 1) * DEC_DIGITS

  /** numeric_out(numeric_in("<int>.<frac>e<exp>")). */
  function scaled(neg: boolean, int: string, frac: string, exp: number): string {
    // PG 15 set_var_from_str rejects |exponent| >= INT_MAX / 2.
    if (!(Math.abs(exp) < 1073741823)) fail("value overflows numeric format");
    const dscale = Math.max(0, frac.length - exp);
    if (dscale > NUMERIC_DSCALE_MAX) fail("value overflows numeric format");
    const digits = int + frac;
    let first = 0; // first non-zero digit
    while (first < digits.length && digits.charCodeAt(first) === 0x30) first++;
    if (first === digits.length) {
      // zero: no sign, dscale zeros
      return dscale > 0 ? "0." + "0".repeat(dscale) : "0";
    }
    const point = int.length + exp; // decimal point position within digits
    if (point - first > NUMERIC_MAX_INT_DIGITS) {
      fail("value overflows numeric format");
    }
    let intPart: string;
    if (point <= first) intPart = "0";
    else if (point >= digits.length) {
      intPart = digits.slice(first) + "0".repeat(point - digits.length);
    } else intPart = digits.slice(first, point);
    let res = neg ? "-" + intPart : intPart;
    if (dscale > 0) {
      // digits after the point == dscale exactly here (frac.length - exp > 0)
      res += "." +
        (point < 0 ? "0".repeat(-point) + digits : digits.slice(point));
    }
    return res;
  }

  // ---------------------------------------------------------------- containers

  function array(): void {
    out[o++] = 0x5b;
    i++;
    if (b[i] <= 32) skipWs();
    if (b[i] === 0x5d) {
      out[o++] = 0x5d;
      i++;
      return;
    }
    for (;;) {
      if (b[i] === 0x22) str(false);
      else value();
      if (b[i] <= 32) skipWs();
      const c = b[i++];
      if (c === 0x2c) {
        out[o++] = 0x2c;
        out[o++] = 0x20;
        if (b[i] <= 32) skipWs();
      } else if (c === 0x5d) {
        out[o++] = 0x5d;
        return;
      } else {
        i--;
        fail("expected , or ]");
      }
    }
  }

  function growStack(): void {
    const size = kA.length * 2;
    const g32 = (a: Int32Array) => {
      const x = new Int32Array(size);
      x.set(a);
      return x;
    };
    kA = g32(kA);
    kE = g32(kE);
    mS = g32(mS);
    mE = g32(mE);
    ord = g32(ord);
    const x = new Uint8Array(size);
    x.set(kIn);
    kIn = x;
  }

  /** jsonb key order: UTF-8 length, then bytes. 0 means equal keys. */
  function compareKeys(x: number, y: number): number {
    const ax = kA[x];
    const ay = kA[y];
    const len = kE[x] - ax;
    const d = len - (kE[y] - ay);
    if (d !== 0) return d;
    const bx = kIn[x] === 0 ? b : ks;
    const by = kIn[y] === 0 ? b : ks;
    for (let k = 0; k < len; k++) {
      const diff = bx[ax + k] - by[ay + k];
      if (diff !== 0) return diff;
    }
    return 0;
  }

  function object(): void {
    out[o++] = 0x7b;
    i++;
    if (b[i] <= 32) skipWs();
    if (b[i] === 0x7d) {
      out[o++] = 0x7d;
      i++;
      return;
    }
    const base = top;
    const bodyStart = o;
    for (;;) {
      if (b[i] !== 0x22) fail("expected key");
      const ms = o;
      str(true);
      const ka = keyA;
      const ke = keyE;
      const kin = keyInKs;
      if (b[i] <= 32) skipWs();
      if (b[i] !== 0x3a) fail("expected :");
      i++;
      out[o++] = 0x3a;
      out[o++] = 0x20;
      if (b[i] <= 32) skipWs();
      if (b[i] === 0x22) str(false);
      else value();
      if (top >= kA.length) growStack();
      kA[top] = ka;
      kE[top] = ke;
      kIn[top] = kin;
      mS[top] = ms;
      mE[top] = o;
      top++;
      if (b[i] <= 32) skipWs();
      const c = b[i++];
      if (c === 0x2c) {
        out[o++] = 0x2c;
        out[o++] = 0x20;
        if (b[i] <= 32) skipWs();
      } else if (c === 0x7d) break;
      else {
        i--;
        fail("expected , or }");
      }
    }
    const cnt = top - base;
    if (cnt > 1) {
      // Stable insertion sort of member indices; equal keys keep input order.
      let reorder = false;
      ord[base] = base;
      for (let a = base + 1; a < top; a++) {
        let p = a - 1;
        for (; p >= base; p--) {
          const cmp = compareKeys(ord[p], a);
          if (cmp < 0) break;
          if (cmp === 0) {
            reorder = true; // duplicate: must drop one
            break;
          }
          ord[p + 1] = ord[p];
        }
        if (p !== a - 1) reorder = true;
        ord[p + 1] = a;
      }
      if (reorder) {
        // Copy the body past the end of out, then copy members back in order,
        // keeping only the last of each run of equal keys.
        const len = o - bodyStart;
        ensure(o + len + 16);
        const shift = o - bodyStart;
        out.copyWithin(o, bodyStart, o);
        o = bodyStart;
        for (let a = base; a < top; a++) {
          const x = ord[a];
          if (a + 1 < top && compareKeys(x, ord[a + 1]) === 0) continue;
          if (o !== bodyStart) {
            out[o++] = 0x2c;
            out[o++] = 0x20;
          }
          const s0 = mS[x] + shift;
          const s1 = mE[x] + shift;
          out.copyWithin(o, s0, s1);
          o += s1 - s0;
        }
      }
    }
    top = base;
    out[o++] = 0x7d;
  }

  // Validation parses a row's payload, and its digest needs the result right
  // after: one text remembered makes that one parse. Every call comes here,
  // so the buffer behind the remembered result changes only with it.
  let lastText: string | null = null;
  let lastResult: Uint8Array = EMPTY;
  return (text: string): Uint8Array => {
    if (text === lastText) return lastResult;
    lastText = null;
    lastResult = jsonbBytes(encodeInput(text));
    lastText = text;
    return lastResult;
  };
}

/** True if JSONB accepts the text, as `canonical` (a {@link jsonbCanonicalizer}) parses it. */
export function isJsonb(canonical: (text: string) => Uint8Array, text: string): boolean {
  try {
    canonical(text);
    return true;
  } catch {
    return false;
  }
}

/** An escape JSONB refuses though JSON allows it: `\u0000`, or a surrogate without its pair. */
const REFUSED_ESCAPE =
  /\\u0000|\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}/;

/**
 * Why JSONB refuses a text that the canonical scanner refused, with where:
 * for messages only, so the validator itself stays a yes or no.
 */
export function explainJsonb(text: string): string {
  try {
    JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    if (text.trim() === "") return "empty";
    const at = /^(.*?) (?:in JSON )?at position (\d+)/.exec(message);
    const atEnd = at !== null && Number(at[2]) >= text.trimEnd().length;
    if (atEnd || /Unterminated string|Unexpected end of JSON input/.test(message)) {
      const inside = message.startsWith("Unterminated") ? "inside a string" : "before it is closed";
      return `ends early: the text stops after ${text.length} characters, ${inside} (cut off?)`;
    }
    if (at) {
      const what = at[1][0].toLowerCase() + at[1].slice(1);
      return `${what} at character ${Number(at[2]) + 1}`;
    }
    const token = /^Unexpected token '(.)'/.exec(message);
    if (token) return `unexpected character '${token[1]}' where a JSON value should be`;
    return "not JSON";
  }
  const escape = REFUSED_ESCAPE.exec(text);
  if (escape) {
    return `${escape[0]} at character ${escape.index + 1} is valid JSON, but JSONB cannot store it`;
  }
  return "valid JSON, but a number is beyond the range of PostgreSQL's numeric";
}
