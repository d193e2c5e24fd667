/**
 * COPY: rows as COPY text lines, streamed to PostgreSQL, and the next table's
 * lines made ahead while PostgreSQL works.
 *
 * @module
 */

import { deflateRawSync, inflateRawSync } from "node:zlib";
import type { Tx } from "./connect.ts";
import type { CleanValue } from "./values.ts";
import { collectGarbage } from "./memory.ts";

// COPY data is written in pieces of about this many characters: larger
// pieces are no faster and make V8 hold more memory.
const COPY_FLUSH_CHARS = 1 << 15;

const COPY_ESCAPES: Record<string, string> = {
  "\\": "\\\\",
  "\t": "\\t",
  "\n": "\\n",
  "\r": "\\r",
};

const COPY_SPECIAL = /[\\\t\n\r]/;

const COPY_SPECIAL_ALL = /[\\\t\n\r]/g;

/** One value in COPY's text format. */
function copyField(value: CleanValue): string {
  if (value === null) return "\\N";
  if (typeof value !== "string") return String(value);
  return COPY_SPECIAL.test(value) ? value.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c]) : value;
}

/** One row as a line of COPY text. */
export function copyLine(row: CleanValue[]): string {
  let line = copyField(row[0]);
  for (let i = 1; i < row.length; i++) line += "\t" + copyField(row[i]);
  return line + "\n";
}

/** Writes lines to a COPY … FROM STDIN stream in chunks, honouring backpressure. */
export async function copyInto(
  tx: Tx,
  target: string,
  lines: Iterable<string | Uint8Array>,
  onFlush: () => void,
  meanwhile?: Prefetch,
): Promise<void> {
  const stream = await tx.unsafe(`COPY ${target} FROM STDIN`).writable();
  const finished = new Promise<void>((resolve, reject) => {
    stream.on("finish", resolve);
    stream.on("error", reject);
  });
  // Awaited below; until then, a failure (the connection lost mid-COPY) must
  // not count as an unhandled rejection, which would end the process.
  finished.catch(() => {});
  // postgres.js's pipeline() misbehaves under Deno; write/drain/end does not.
  // A stream that fails never drains: stop waiting when it finishes or fails.
  // Waiting for each chunk to reach the socket lets Deno send it now, so
  // PostgreSQL parses one chunk while JavaScript encodes the next; without
  // the wait, the chunks leave only when the buffer is full, and the two
  // sides take turns instead of working at once.
  const send = async (data: string | Uint8Array) => {
    const written = Promise.race([new Promise((resolve) => stream.write(data, resolve)), finished]);
    await (meanwhile ? meanwhile.during(written) : written);
    onFlush();
  };
  let chunk = "";
  try {
    for (const line of lines) {
      if (typeof line !== "string") {
        // Text made ahead, already a chunk of bytes.
        if (chunk !== "") await send(chunk);
        chunk = "";
        await send(line);
        continue;
      }
      chunk += line;
      if (chunk.length >= COPY_FLUSH_CHARS) {
        await send(chunk);
        chunk = "";
      }
    }
    if (chunk !== "") await send(chunk);
  } catch (error) {
    // destroy() sends CopyFail, so the connection can roll back cleanly.
    stream.destroy(error as Error);
    await finished.catch(() => {});
    throw error;
  }
  stream.end();
  // When PostgreSQL refuses the COPY at its end (a foreign key or a trigger
  // checks rows then), postgres.js never settles the stream and drops the
  // error (porsager/postgres#1173). A query queued behind the COPY settles
  // either way, and fails when the COPY did. It must follow CopyDone, which
  // end() sends on the next tick.
  await new Promise((resolve) => setImmediate(resolve));
  const probe = tx.unsafe("SELECT 1");
  probe.catch(() => {});
  try {
    await Promise.race([finished, probe]);
    await finished;
  } catch (error) {
    if ((error as { code?: string }).code !== IN_FAILED_TRANSACTION) throw error;
    throw new CopyRefused(target);
  }
}

const IN_FAILED_TRANSACTION = "25P02";

/** PostgreSQL refused a COPY at its end, for a reason postgres.js does not pass on. */
export class CopyRefused extends Error {
  constructor(readonly target: string) {
    super(`PostgreSQL refused the rows copied into ${target} when the COPY ended`);
  }
}

/** The most COPY text made ahead for the next table: memory stays flat whatever the size. */
const PREFETCH_BYTES = 16 << 20;

/** zlib's level for made-ahead chunks: level 1 packs snapshot lines to 58 %, 2 to 45 %. */
const PREFETCH_DEFLATE_LEVEL = 2;

/**
 * Inflated text sent between two full collections. Each chunk sent is a new
 * buffer outside V8's heap, copied again by postgres.js; V8 collects such
 * garbage only after tens of MB of it, and a first run sends twice its
 * made-ahead buffer in a burst (measured: 160-180 MiB peak without, see
 * collectGarbage).
 */
const PREFETCH_COLLECT_BYTES = 8 << 20;

/** Lines made between two looks at what PostgreSQL is doing. */
const PREFETCH_STEP = 64;

/**
 * The next table's COPY text, made while PostgreSQL is busy with this one's
 * (parsing its payloads, building its keys): JavaScript would otherwise
 * wait, and PostgreSQL wait for it later. Kept as UTF-8 bytes in one buffer,
 * allocated once and used round and round: a chunk's room is free again once
 * it is sent (postgres.js copies what it is given). A step's few dozen lines
 * go in as one string that dies young: text kept as strings until a chunk
 * was full outlived V8's young generation, and cost as much memory again.
 * Each full chunk is deflated in place where that makes it smaller (level 2:
 * snapshot lines to 45 %, 0.35 s of otherwise idle JavaScript per 16 MB
 * kept), so that twice the lines wait in the same memory; inflating one to
 * send it costs a tenth of making it.
 */
export class Prefetch {
  #lines: Iterator<string>;
  #encoder = new TextEncoder();
  #ring: Uint8Array | null = null;
  /** Chunks ready to send (views of the ring), oldest first. */
  #chunks: { bytes: Uint8Array; packed: boolean }[] = [];
  /** The chunk being filled: [#open, #head). */
  #open = 0;
  #head = 0;
  /** Bytes held: the chunks and the one being filled. */
  #used = 0;
  /** Text made but not yet in the ring (it had no room). */
  #pending = "";
  #done = false;
  /** Bytes inflated since the last collection. */
  #inflated = 0;

  constructor(lines: Iterable<string>) {
    this.#lines = lines[Symbol.iterator]();
  }

  /** Makes a few dozen lines; false when all are made or the buffer is full. */
  step(): boolean {
    if (this.#done) return false;
    if (this.#pending === "") {
      let text = "";
      for (let k = 0; k < PREFETCH_STEP; k++) {
        const next = this.#lines.next();
        if (next.done) {
          this.#done = true;
          break;
        }
        text += next.value;
      }
      this.#pending = text;
    }
    if (this.#pending !== "" && !this.#store(this.#pending)) return false;
    this.#pending = "";
    return !this.#done;
  }

  /** Writes text at the head of the ring; false when there is no room for it yet. */
  #store(text: string): boolean {
    const ring = this.#ring ??= new Uint8Array(PREFETCH_BYTES);
    const need = text.length * 3; // UTF-8 bytes, at most
    if (this.#used === 0) this.#open = this.#head = 0;
    const tail = this.#chunks.length > 0 ? this.#chunks[0].bytes.byteOffset : this.#open;
    if (tail < this.#head || this.#used === 0) {
      // Held bytes lie in [tail, head): room after head, else from the start.
      if (ring.length - this.#head < need) {
        if (tail <= need) return false;
        this.#close();
        this.#open = this.#head = 0;
      }
    } else if (tail - this.#head <= need) return false; // wrapped: room is [head, tail)
    const { written } = this.#encoder.encodeInto(
      text,
      ring.subarray(this.#head, this.#head + need),
    );
    this.#head += written;
    this.#used += written;
    if (this.#head - this.#open >= COPY_FLUSH_CHARS) this.#close();
    return true;
  }

  /** Ends the chunk being filled: it is ready to send. */
  #close(): void {
    if (this.#head === this.#open) return;
    const ring = this.#ring!;
    const text = ring.subarray(this.#open, this.#head);
    const packed = deflateRawSync(text, { level: PREFETCH_DEFLATE_LEVEL });
    if (packed.length < text.length) {
      ring.set(packed, this.#open);
      this.#used -= text.length - packed.length;
      this.#head = this.#open + packed.length;
    }
    this.#chunks.push({
      bytes: ring.subarray(this.#open, this.#head),
      packed: packed.length < text.length,
    });
    this.#open = this.#head;
  }

  /** True once every line is made (before {@link lines} is called). */
  get allMade(): boolean {
    return this.#done;
  }

  /** Waits for `work`, making lines in between its turns of the event loop. */
  async during<T>(work: Promise<T>): Promise<T> {
    let settled = false;
    work.then(() => (settled = true), () => (settled = true));
    while (!settled && this.step()) await new Promise((resolve) => setImmediate(resolve));
    return await work;
  }

  /** Hands out the oldest chunk; its room is free once the caller comes back. */
  *#send(): Generator<Uint8Array> {
    const { bytes, packed } = this.#chunks[0];
    if (packed) {
      const text = inflateRawSync(bytes);
      yield text;
      this.#inflated += text.length;
      if (this.#inflated >= PREFETCH_COLLECT_BYTES) {
        this.#inflated = 0;
        collectGarbage();
      }
    } else yield bytes;
    this.#chunks.shift(); // sent, and so copied
    this.#used -= bytes.length;
  }

  /**
   * The lines made so far, as bytes; making more goes on meanwhile, in the
   * room they leave, for {@link lines}.
   */
  *made(): Generator<Uint8Array> {
    for (let n = this.#chunks.length; n > 0; n--) yield* this.#send();
  }

  /** Every line: those made ahead (as bytes), then the rest. */
  *lines(): Generator<string | Uint8Array> {
    this.#done = true; // no more making ahead
    this.#close();
    while (this.#chunks.length > 0) yield* this.#send();
    this.#ring = null;
    if (this.#pending !== "") yield this.#pending;
    this.#pending = "";
    for (let next = this.#lines.next(); !next.done; next = this.#lines.next()) yield next.value;
  }
}
