/**
 * Peak memory: full collections where the process holds much garbage. The
 * CLI installs V8's `gc` (see cli_worker.ts); a library caller's isolate is
 * used as it is, and collected only if it exposes `gc` itself.
 *
 * @module
 */

/** Above this resident size, a rerun collects before it stages. */
const BUCKET_COLLECT_RSS = 128 * 2 ** 20;

/** A full garbage collection, where the isolate exposes V8's `gc`; else nothing. */
export function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** A full collection, only where the process holds more than {@link BUCKET_COLLECT_RSS}. */
export function collectIfLarge(): void {
  if (Deno.memoryUsage().rss > BUCKET_COLLECT_RSS) collectGarbage();
}
