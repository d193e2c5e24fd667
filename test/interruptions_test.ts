// Interruptions and concurrency: kill -9, signals, lost connections, two runs at
// once, --lock-timeout, and SQLite read consistently while the app writes.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { migrate, type Report } from "../migrate.ts";
import {
  bulkRows,
  cliCommand,
  counts,
  type Env,
  holdSnapshotInserts,
  insertRows,
  runCli,
  snapshot,
  spawnUntil,
  track,
  withTarget,
  writeSqlite,
} from "./support.ts";

Deno.test("SQLite is read read-only, as one consistent snapshot while the app writes", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a"), snapshot("b")], {
      wal: true,
    });
    const app = new DatabaseSync(env.sqlitePath);
    let wrote = false;
    const report = await migrate({
      ...env.options,
      onProgress: ({ table }) => {
        if (table !== "tracks" || wrote) return;
        wrote = true;
        // The app commits a new day of snapshots while tracks are being read.
        insertRows(app, [track("c")], [
          snapshot("c"),
          snapshot("a", { snapshot_date: "2024-03-02" }),
        ]);
      },
    });
    app.close();
    assert.ok(wrote);
    assert.equal(report.ok, true);
    assert.deepEqual(await counts(env), [2, 2], "the copy is the moment the run started");
  });
});

Deno.test("kill -9 in the middle leaves the target as it was; a rerun completes it", async () => {
  await withTarget(async (env) => {
    const [tracks, snapshots] = bulkRows(3000, 40);
    writeSqlite(env.sqlitePath, tracks, snapshots);
    const gate = await holdSnapshotInserts(env);
    const run = cliCommand(env.flags).spawn();
    await gate.waitingPid(); // tracks are written, snapshots are being written
    run.kill("SIGKILL");
    await run.status;
    await gate.release();
    await run.stdout.cancel();
    await run.stderr.cancel();
    assert.deepEqual(await counts(env), [0, 0]);

    const rerun = await runCli(env.flags);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.deepEqual(await counts(env), [3000, 120000]);
    // The bulk load re-created the constraints it suspended, under their names.
    const constraints = await env.sql`
      SELECT conname, contype FROM pg_constraint
      WHERE conrelid = ${`${env.schema}.snapshots`}::regclass
        AND contype <> 'n' -- PostgreSQL 18 lists NOT NULL constraints too
      ORDER BY conname`;
    assert.deepEqual(constraints.map((c) => [c.conname, c.contype]), [
      ["snapshots_pkey", "p"],
      ["snapshots_track_id_fkey", "f"],
    ]);
  });
});

/**
 * Sends `signal` to a CLI run while it writes snapshots (tracks are written;
 * a gate holds the snapshots' INSERT), and asserts that the backend ends with
 * the gate still shut: the running statement was cancelled, so the server
 * ended the transaction and let go of the tables (closing the connection
 * alone left the backend waiting, holding its locks, until the gate opened).
 */
async function signalWhileWritingSnapshots(env: Env, signal: Deno.Signal) {
  const gate = await holdSnapshotInserts(env);
  const run = cliCommand(env.flags).spawn();
  const pid = await gate.waitingPid();
  run.kill(signal);
  const status = await run.status;
  let gone = false;
  try {
    gone = await backendEnds(env, pid);
  } finally {
    await gate.release();
  }
  assert.ok(gone, `backend ${pid} still there with the gate shut`);
  await run.stdout.cancel();
  return { status, stderr: await new Response(run.stderr).text() };
}

Deno.test("Ctrl-C in the middle rolls back and says so", async () => {
  await withTarget(async (env) => {
    const [tracks, snapshots] = bulkRows(2000, 30);
    writeSqlite(env.sqlitePath, tracks, snapshots);
    const { status, stderr } = await signalWhileWritingSnapshots(env, "SIGINT");
    assert.equal(status.code, 130);
    assert.match(stderr, /interrupted: the transaction was rolled back/);
    assert.deepEqual(await counts(env), [0, 0]);
  });
});

Deno.test("two runs at the same time: the second waits, then is a no-op rerun", async () => {
  await withTarget(async (env) => {
    const [tracks, snapshots] = bulkRows(2000, 30);
    writeSqlite(env.sqlitePath, tracks, snapshots);
    const gate = await holdSnapshotInserts(env);
    const first = cliCommand(env.flags).spawn();
    await gate.waitingPid(); // the first run holds the target
    const second = cliCommand([...env.flags, "--json"]).spawn();
    // Steps go to stderr under --json: the second says whom it waits for after a moment.
    const steps = second.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let stderr = "";
    try {
      while (!/\nwaiting for the lock/.test(stderr)) {
        const { value, done } = await steps.read();
        if (done) break;
        stderr += value;
      }
    } finally {
      await gate.release();
    }
    for (let part = await steps.read(); !part.done; part = await steps.read()) stderr += part.value;
    const [firstResult, secondStatus, secondStdout] = await Promise.all([
      first.output(),
      second.status,
      new Response(second.stdout).text(),
    ]);
    assert.equal(firstResult.code, 0, new TextDecoder().decode(firstResult.stderr));
    assert.equal(secondStatus.code, 0, stderr);
    assert.match(
      stderr,
      /\nwaiting for the lock of migrations into schema \S+, held by another migration, pid \d+ \(application_name migrate\.ts, .*\), which itself waits for session pid \d+ \(application_name postgres\.js, /,
    );
    const report: Report = JSON.parse(secondStdout);
    assert.deepEqual(report.tables.map((t) => t.inserted + t.updated), [0, 0]);
    assert.deepEqual(await counts(env), [2000, 60000]);
  });
});

Deno.test("a connection lost mid-run rolls back, exits 2 and says so", async () => {
  await withTarget(async (env) => {
    const [tracks, snapshots] = bulkRows(2000, 30);
    writeSqlite(env.sqlitePath, tracks, snapshots);
    // A trigger makes the run wait inside its INSERT into snapshots, after tracks were written, on
    // an advisory lock this test holds: the connection is cut at that exact point, not by timing.
    const gate = await holdSnapshotInserts(env);
    const run = cliCommand(env.flags).spawn();
    const pid = await gate.waitingPid();
    await env.sql`SELECT pg_terminate_backend(${pid})`;
    await gate.release();
    const status = await run.status;
    const stderr = await new Response(run.stderr).text();
    await run.stdout.cancel();
    assert.equal(status.code, 2, stderr);
    assert.match(stderr, /connection was lost; the transaction was rolled back/);
    assert.ok(!stderr.includes("    at "), "no stack trace");
    assert.deepEqual(await counts(env), [0, 0]);
  });
});

/** The backends that hold a lock on a table of this test's schema: its run, not another suite's. */
const runOn = (env: Env) =>
  env.sql`SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ${env.schema}`;

/** Whether a backend ends within 10 s (false if not: the caller fails, nothing hangs). */
async function backendEnds(env: Env, pid: number): Promise<boolean> {
  const deadline = performance.now() + 10_000;
  while (performance.now() < deadline) {
    const [{ n }] = await env
      .sql`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ${pid}`;
    if (n === 0) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

Deno.test("a connection lost while COPY streams rolls back, exits 2 and says so", async () => {
  await withTarget(async (env) => {
    const [tracks, snapshots] = bulkRows(4000, 40);
    writeSqlite(env.sqlitePath, tracks, snapshots);
    // A first run COPYs straight into the target; the careful path into staging.
    const run = await spawnUntil(env.flags, (line) => /^(reading|writing)/.test(line));
    let terminated = 0;
    for (let tries = 0; tries < 250 && terminated === 0; tries++) {
      terminated = (await env.sql`
        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE pid <> pg_backend_pid() AND datname = current_database()
          AND application_name = 'migrate.ts' AND state = 'active'
          AND query LIKE 'COPY %' AND pid IN (${runOn(env)})`).length;
      if (terminated === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(terminated, 1, "the COPY was caught in flight");
    const cut = performance.now();
    await run.lines.cancel();
    const status = await run.child.status;
    // It used to wait out postgres.js's 5 s close timeout for the query cut off.
    const seconds = (performance.now() - cut) / 1000;
    assert.ok(seconds < 3, `exited ${seconds.toFixed(1)} s after the connection was lost`);
    const stderr = await new Response(run.child.stderr).text();
    assert.equal(status.code, 2, stderr);
    assert.match(stderr, /connection was lost; the transaction was rolled back/);
    assert.ok(!stderr.includes("    at "), "no stack trace");
    assert.deepEqual(await counts(env), [0, 0]);
  });
});

for (const [signal, code] of [["SIGTERM", 143], ["SIGHUP", 129]] as const) {
  Deno.test(`${signal} in the middle rolls back, says so in one line, exits ${code}; a rerun completes`, async () => {
    await withTarget(async (env) => {
      const [tracks, snapshots] = bulkRows(1000, 10);
      writeSqlite(env.sqlitePath, tracks, snapshots);
      const { status, stderr } = await signalWhileWritingSnapshots(env, signal);
      assert.equal(status.code, code, stderr);
      assert.match(
        stderr.trim(),
        new RegExp(`^\\S.*\\(${signal}\\): the transaction was rolled back`),
      );
      assert.equal(stderr.trim().split("\n").length, 1, stderr);
      assert.deepEqual(await counts(env), [0, 0]);
      await env.sql.unsafe(`DROP TRIGGER gate ON ${env.schema}.snapshots`);
      const rerun = await runCli(env.flags);
      assert.equal(rerun.code, 0, rerun.stderr);
      assert.deepEqual(await counts(env), [1000, 10000]);
    });
  });
}

Deno.test("--lock-timeout gives up waiting for another run: one error, exit 3, nothing written", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
    // What a running migration into this schema holds.
    const other = await env.sql.reserve();
    await other`BEGIN`;
    await other`SELECT pg_advisory_xact_lock(hashtext(${`migrate.ts:${env.schema}`}))`;
    const [{ pid }] = await other`SELECT pg_backend_pid() AS pid`;
    try {
      // 7 s: long enough to see the waiting line after a second, and again 5 s later.
      const result = await runCli([...env.flags, "--lock-timeout", "7"]);
      assert.equal(result.code, 3, result.stderr);
      assert.match(
        result.stdout,
        new RegExp(
          `\\nwaiting for the lock of migrations into schema \\S+, held by another migration, pid ${pid} .*; fix: let the other migration finish, or end it: SELECT pg_terminate_backend\\(${pid}\\)\\nstill waiting \\(6 s\\) for the lock of migrations into schema \\S+, held by another migration, pid ${pid} .*\\n$`,
        ),
      );
      assert.match(
        result.stderr,
        /^error: gave up after waiting 7 s for the lock of migrations into schema \S+, held by another migration, pid \d+ .*; nothing was written\nfix: .*--lock-timeout/,
      );
      assert.deepEqual(await counts(env), [0, 0]);
    } finally {
      await other`ROLLBACK`;
      other.release();
    }
    const bad = await runCli([...env.flags, "--lock-timeout", "soon"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--lock-timeout must be a positive integer/);
  });
});
