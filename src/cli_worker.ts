/**
 * The CLI's process: a worker thread with a small young generation, V8's gc
 * exposed, and signals that cancel the running statement before exiting.
 *
 * @module
 */

import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { CancelKey } from "./types.ts";
import { EXIT_CODE, EXIT_INTERNAL, STOP_SIGNALS } from "./errors.ts";
import { CONNECTION_HINTS, REPORT_A_BUG } from "./pg_errors.ts";
import { main } from "./cli.ts";

/**
 * V8 grows its young generation to 64 MiB under this workload whatever the
 * data size, and no program can change that once it runs; a worker thread
 * gets its own limit. 12 MiB (3 semi-spaces of 4 MiB) costs no time.
 */
const CLI_YOUNG_GENERATION_MIB = 12;

const CLI_WORKER = "migrate.ts CLI";

/** What an uncaught error, a bug of ours, prints: one line and a fix, never a trace. */
const unexpectedError = (message: string) =>
  `error: unexpected: ${message}; nothing was committed\nfix: ${REPORT_A_BUG}`;

/**
 * Cancels the statement running on the run's connection. Closing the
 * connection alone is not enough: PostgreSQL notices it only between
 * statements, and a statement waiting for a lock (or a long one) would hold
 * the transaction, and every lock it took, until it ends. Never waits more
 * than a second: the run is ending.
 */
async function sendCancel(key: CancelKey): Promise<void> {
  const request = new DataView(new ArrayBuffer(16));
  request.setInt32(0, 16);
  request.setInt32(4, 80877102); // CancelRequest
  request.setInt32(8, key.pid);
  request.setInt32(12, key.secret);
  const send = async () => {
    const conn = key.path
      ? await Deno.connect({ transport: "unix", path: key.path })
      : await Deno.connect({ hostname: key.host!, port: key.port! });
    try {
      await conn.write(new Uint8Array(request.buffer));
      // The server closes the connection once it has read the request.
      await conn.read(new Uint8Array(1)).catch(() => null);
    } finally {
      conn.close();
    }
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    send().catch(() => {}),
    new Promise((resolve) => timer = setTimeout(resolve, 1000)),
  ]);
  clearTimeout(timer);
}

/** The CLI runs in a worker thread of `entry`, so that its heap has the limit above. */
function runCliInWorker(entry: URL, args: string[]): void {
  let cancelKey: CancelKey | undefined;
  for (const [signal, code, what] of STOP_SIGNALS) {
    try {
      Deno.addSignalListener(signal, async () => {
        if (cancelKey) await sendCancel(cancelKey);
        console.error(`\n${what}: the transaction was rolled back, nothing was written`);
        Deno.exit(code);
      });
    } catch (error) {
      // Windows knows SIGINT but not SIGTERM or SIGHUP.
      if (!(error instanceof TypeError)) throw error;
    }
  }
  const worker = new Worker(entry, {
    workerData: { role: CLI_WORKER, args },
    resourceLimits: { maxYoungGenerationSizeMb: CLI_YOUNG_GENERATION_MIB },
  });
  worker.on("message", (message: number | { cancelKey: CancelKey }) => {
    if (typeof message === "number") Deno.exit(message);
    else cancelKey = message.cancelKey;
  });
  worker.on("error", (error: Error) => {
    console.error(unexpectedError(error.message));
    Deno.exit(EXIT_INTERNAL);
  });
  worker.on("exit", () => Deno.exit(EXIT_INTERNAL));
}

/**
 * Installs V8's `gc` as `globalThis.gc`, as `--expose-gc` on the command line
 * would (memory.ts calls it): it comes from a context made after the flag is set.
 */
function exposeGarbageCollection(): void {
  try {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc");
    if (typeof gc === "function") (globalThis as { gc?: () => void }).gc = gc;
  } catch {
    // Without it memory peaks higher; nothing else changes.
  }
}

async function cliWorker(args: string[]): Promise<void> {
  exposeGarbageCollection();
  // postgres.js 3.4.9 can throw from a timer after the server ends the
  // connection (porsager/postgres#1154, #1208), out of reach of any await.
  // The transaction ended with the connection, so say that and stop.
  // Anything else uncaught is a bug of ours: still one line, never a trace.
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    const fromPostgres = /postgres\/src\/connection\.js/.test(String(event.error?.stack));
    console.error(
      fromPostgres
        ? `error: the connection to PostgreSQL was lost (${event.message}); the transaction was rolled back, nothing was written\nfix: ${CONNECTION_HINTS.CONNECTION_CLOSED}`
        : unexpectedError(event.message),
    );
    parentPort!.postMessage(fromPostgres ? EXIT_CODE.connection : EXIT_INTERNAL);
  });
  parentPort!.postMessage(
    await main(args, (cancelKey) => parentPort!.postMessage({ cancelKey })),
  );
}

/**
 * The CLI, from the entry module `entry` (migrate.ts, or the bundle made from
 * it), which calls this whenever it loads: on the main thread, where `entry`
 * is the program (`import.meta.main`), it starts a worker that loads `entry`
 * again; in that worker it runs the CLI. A library import does nothing here.
 */
export async function runCli(entry: URL, isProgram: boolean, args: string[]): Promise<void> {
  if (isMainThread) {
    if (isProgram) runCliInWorker(entry, args);
  } else if (workerData?.role === CLI_WORKER) await cliWorker(workerData.args);
}
