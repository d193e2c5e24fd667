// Beside a live app, on a hosted server: the locks a run waits for and who
// holds them, the settings a role carries, read-only checks and servers, and
// sessions the server ends.
import assert from "node:assert/strict";
import postgres from "postgres";
import {
  bulkRows,
  counts,
  type Env,
  runCli,
  snapshot,
  spawnUntil,
  TEST_DATABASE_URL,
  track,
  waitForTableLockWait,
  withRole,
  withTarget,
  writeSqlite,
} from "./support.ts";

const APP = "music-app";

/** The app mid-request: an open transaction that has updated one track. */
async function appWriting(env: Env) {
  const app = postgres(TEST_DATABASE_URL, {
    max: 1,
    onnotice: () => {},
    connection: { application_name: APP },
  });
  const session = await app.reserve();
  await session`BEGIN`;
  await session.unsafe(`UPDATE ${env.schema}.tracks SET name = name WHERE track_id = 'a'`);
  const [{ pid }] = await session`SELECT pg_backend_pid() AS pid`;
  let open = true;
  return {
    pid: pid as number,
    /** Ends the app's transaction (idempotent), and its connection. */
    async end() {
      if (open) {
        open = false;
        await session`ROLLBACK`;
        session.release();
        await app.end();
      }
    },
  };
}

/** Two tracks migrated, so that a run finds rows and locks the tables. */
async function migrated(env: Env) {
  writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a"), snapshot("b")]);
  const first = await runCli(env.flags);
  assert.equal(first.code, 0, first.stderr);
}

Deno.test("a run waiting for the app's lock says who holds it and the fix, then goes on", async () => {
  await withTarget(async (env) => {
    await migrated(env);
    const app = await appWriting(env);
    try {
      const run = await spawnUntil(env.flags, (line) => line.startsWith("waiting for tables"));
      const line = run.seen().split("\n").find((l) => l.startsWith("waiting for tables"))!;
      assert.match(line, new RegExp(`held by session pid ${app.pid} \\(application_name ${APP}, `));
      assert.match(line, /client 127\.0\.0\.1, idle in transaction, in its transaction since /);
      assert.match(line, new RegExp(`fix: .*SELECT pg_terminate_backend\\(${app.pid}\\)`));
      assert.doesNotMatch(line, /another migration/);
      await app.end();
      const { code, stderr } = await run.finish();
      assert.equal(code, 0, stderr);
    } finally {
      await app.end();
    }
  });
});

Deno.test("--lock-timeout ends a wait for the app's lock: exit 3, the holder named, nothing written", async () => {
  await withTarget(async (env) => {
    await migrated(env);
    await Deno.remove(env.sqlitePath);
    writeSqlite(env.sqlitePath, [track("a"), track("b"), track("c")], [snapshot("a")]);
    const app = await appWriting(env);
    try {
      const result = await runCli([...env.flags, "--lock-timeout", "2", "--prune"]);
      assert.equal(result.code, 3, result.stderr);
      assert.match(
        result.stderr,
        new RegExp(
          `^error: gave up after waiting 2 s for tables tracks, snapshots \\(LOCK TABLE … IN SHARE ROW EXCLUSIVE MODE\\), held by session pid ${app.pid} \\(application_name ${APP}, .*; nothing was written\\nfix: finish that session's transaction \\(COMMIT or ROLLBACK\\), or end it: SELECT pg_terminate_backend\\(${app.pid}\\), then rerun; or raise --lock-timeout`,
        ),
      );
    } finally {
      await app.end();
    }
    assert.deepEqual(await counts(env), [2, 2]);
  });
});

Deno.test("a second migration names the first, and the app session the first waits for", async () => {
  await withTarget(async (env) => {
    await migrated(env);
    const app = await appWriting(env);
    try {
      const first = await spawnUntil(env.flags, (line) => line.startsWith("waiting for tables"));
      const firstPid = await waitForTableLockWait(env);
      const second = await runCli([...env.flags, "--lock-timeout", "2"]);
      assert.equal(second.code, 3, second.stderr);
      assert.match(
        second.stderr,
        new RegExp(
          `^error: gave up after waiting 2 s for the lock of migrations into schema \\S+, held by another migration, pid ${firstPid} \\(application_name migrate\\.ts, .*\\), which itself waits for session pid ${app.pid} \\(application_name ${APP}, `,
        ),
      );
      assert.match(second.stderr, new RegExp(`SELECT pg_terminate_backend\\(${app.pid}\\)`));
      await app.end();
      const done = await first.finish();
      assert.equal(done.code, 0, done.stderr);
    } finally {
      await app.end();
    }
  });
});

Deno.test("the server ending a run's session while it waits for a lock: exit 2, nothing written, a rerun completes", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
    await env.sql.unsafe(`INSERT INTO ${env.schema}.tracks (track_id, name, artist_name)
      VALUES ('a', 'old', 'old')`);
    const app = await appWriting(env);
    try {
      const run = await spawnUntil(env.flags, (line) => line.startsWith("waiting for tables"));
      const pid = await waitForTableLockWait(env);
      await env.sql`SELECT pg_terminate_backend(${pid})`;
      const { code, stderr } = await run.finish();
      assert.equal(code, 2, stderr);
      assert.match(stderr, /the transaction was rolled back, rerun to complete/);
      assert.ok(!stderr.includes("    at "), "no stack trace");
    } finally {
      await app.end();
    }
    assert.deepEqual(await counts(env), [1, 0]);
    const rerun = await runCli(env.flags);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.deepEqual(await counts(env), [1, 1]);
  });
});

Deno.test("a role's statement, idle-in-transaction and transaction timeouts do not end a run; --verbose shows what it set", async () => {
  await withTarget(async (env) => {
    const tracks = Array.from({ length: 2000 }, (_, i) => track(`t${i}`));
    writeSqlite(env.sqlitePath, tracks, tracks.map((t) => snapshot(String(t.track_id))));
    // PostgreSQL 17 added transaction_timeout.
    const [{ version }] = await env
      .sql`SELECT current_setting('server_version_num')::int AS version`;
    const withTransactionTimeout = version >= 170000;
    await withRole(
      env,
      (role) =>
        `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${env.schema} TO ${role};
         ALTER ROLE ${role} SET statement_timeout = '20ms';
         ALTER ROLE ${role} SET idle_in_transaction_session_timeout = '20ms';
         ${withTransactionTimeout ? `ALTER ROLE ${role} SET transaction_timeout = '50ms'` : ""}`,
      async (role) => {
        const first = await runCli([...env.flags, "--database-url", role.url, "--verbose"]);
        assert.equal(first.code, 0, first.stderr);
        if (withTransactionTimeout) {
          assert.match(first.stdout, /^ {2}transaction_timeout = 0 \(was 50ms, from user\): /m);
        } else assert.doesNotMatch(first.stdout, /transaction_timeout/);
        assert.match(first.stdout, /^ {2}statement_timeout = 0 \(was 20ms, from user\): /m);
        assert.match(
          first.stdout,
          /^ {2}idle_in_transaction_session_timeout = 0 \(was 20ms, from user\): /m,
        );
        assert.deepEqual(await counts(env), [2000, 2000]);
        await env.sql.unsafe(`UPDATE ${env.schema}.tracks SET name = 'changed'
          WHERE track_id IN ('t1', 't1000')`);
        const rerun = await runCli([...env.flags, "--database-url", role.url]);
        assert.equal(rerun.code, 0, rerun.stderr);
        const [{ n }] = await env.sql.unsafe(
          `SELECT count(*)::int AS n FROM ${env.schema}.tracks WHERE name = 'changed'`,
        );
        assert.equal(n, 0);
      },
    );
  });
});

Deno.test("--verify-only needs only SELECT, waits for no app lock, and names a missing GRANT", async () => {
  await withTarget(async (env) => {
    await migrated(env);
    await withRole(
      env,
      (role) => `GRANT SELECT ON ALL TABLES IN SCHEMA ${env.schema} TO ${role}`,
      async (role) => {
        const app = await appWriting(env);
        try {
          // Under the app's open write: a table lock would wait, and give up after 2 s.
          const check = await runCli([
            ...env.flags,
            "--database-url",
            role.url,
            "--verify-only",
            "--lock-timeout",
            "2",
          ]);
          assert.equal(check.code, 0, check.stderr);
          assert.match(check.stdout, /Verified: PostgreSQL matches SQLite/);
        } finally {
          await app.end();
        }
        await env.sql.unsafe(`REVOKE SELECT ON ${env.schema}.snapshots FROM ${role.name}`);
        const refused = await runCli([
          ...env.flags,
          "--database-url",
          role.url,
          "--verify-only",
          "--json",
        ]);
        assert.equal(refused.code, 2, refused.stderr);
        const { error } = JSON.parse(refused.stdout);
        assert.equal(error.kind, "config");
        assert.match(error.message, new RegExp(`user ${role.name} lacks privileges .*SELECT ON`));
        assert.equal(error.hint, `GRANT SELECT ON "${env.schema}"."snapshots" TO "${role.name}"`);
        await env.sql.unsafe(`REVOKE USAGE ON SCHEMA ${env.schema} FROM ${role.name}`);
        const noUsage = await runCli([...env.flags, "--database-url", role.url, "--verify-only"]);
        assert.equal(noUsage.code, 2, noUsage.stderr);
        assert.match(
          noUsage.stderr,
          new RegExp(
            `\nfix: GRANT USAGE ON SCHEMA "${env.schema}" TO "${role.name}"; GRANT SELECT ON "${env.schema}"."snapshots" TO "${role.name}"`,
          ),
        );
      },
    );
  });
});

Deno.test("a role whose transactions are read-only: a migration is refused before anything is read; --verify-only compares", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a"), snapshot("b")]);
    await withRole(
      env,
      (role) =>
        `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${env.schema} TO ${role};
         ALTER ROLE ${role} SET default_transaction_read_only = on`,
      async (role) => {
        const flags = [...env.flags, "--database-url", role.url];
        for (const mode of [[], ["--dry-run"]]) {
          const result = await runCli([...flags, ...mode]);
          assert.equal(result.code, 2, result.stderr);
          assert.match(
            result.stderr,
            /^error: the server is read-only for this user: default_transaction_read_only is on \(set by user\), .*; nothing was read\nfix: point DATABASE_URL at the primary/,
          );
          assert.doesNotMatch(result.stdout, /reading|staging|comparing/);
        }
        assert.deepEqual(await counts(env), [0, 0]);

        const migrated = await runCli(env.flags);
        assert.equal(migrated.code, 0, migrated.stderr);
        const check = await runCli([...flags, "--verify-only"]);
        assert.equal(check.code, 0, check.stderr);
        assert.match(check.stdout, /reading only/);
        assert.match(check.stdout, /Verified: PostgreSQL matches SQLite/);
        await env.sql.unsafe(`UPDATE ${env.schema}.tracks SET name = 'changed' WHERE track_id = 'b';
          DELETE FROM ${env.schema}.snapshots WHERE track_id = 'a'`);
        const differs = await runCli([...flags, "--verify-only", "--json"]);
        assert.equal(differs.code, 1, differs.stderr);
        const report = JSON.parse(differs.stdout);
        assert.deepEqual(
          report.verification.mismatches.flatMap((g: { examples: unknown[] }) => g.examples),
          [
            { kind: "content-mismatch", table: "tracks", key: "b", value: "values differ" },
            {
              kind: "content-mismatch",
              table: "snapshots",
              key: "a/2024-03-01/short_term",
              value: "missing in PostgreSQL",
            },
          ],
        );
      },
    );
  });
});

/** Debian's PostgreSQL binaries, for a throwaway primary and its standby. */
const PG_BIN = "/usr/lib/postgresql/15/bin";

const NO_CLUSTER_TOOLS = ["initdb", "pg_ctl", "pg_basebackup"]
    .some((tool) => !existsSync(`${PG_BIN}/${tool}`))
  ? `no ${PG_BIN}/{initdb,pg_ctl,pg_basebackup} (Debian's postgresql-15)`
  : undefined;

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A port nobody listens on right now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Runs a PostgreSQL tool, as the postgres OS user when this is root (initdb refuses root). */
async function pgTool(tool: string, args: string[]): Promise<void> {
  const asPostgres = Deno.uid() === 0;
  const { code, stderr } = await new Deno.Command(
    asPostgres ? "runuser" : `${PG_BIN}/${tool}`,
    {
      args: asPostgres ? ["-u", "postgres", "--", `${PG_BIN}/${tool}`, ...args] : args,
      stdout: "null",
      stderr: "piped",
    },
  ).output();
  if (code !== 0) throw new Error(`${tool} failed: ${new TextDecoder().decode(stderr)}`);
}

/**
 * A tiny primary and a hot standby made from its base backup (pg_basebackup
 * -R writes standby.signal and primary_conninfo), each on a free port,
 * trusting local logins; both stopped and deleted afterwards.
 */
async function withStandby(
  fn: (urls: { primary: string; standby: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "migrate_standby_" });
  if (Deno.uid() === 0) await Deno.chown(dir, uidOf("postgres"), null);
  const [primary, standby] = [`${dir}/primary`, `${dir}/standby`];
  const [primaryPort, standbyPort] = [freePort(), freePort()];
  const start = (data: string, port: number) =>
    pgTool("pg_ctl", [
      "-D",
      data,
      "-l",
      `${data}.log`,
      "-w",
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB`,
      "start",
    ]);
  const started: string[] = [];
  try {
    await pgTool("initdb", ["-D", primary, "-U", "postgres", "--auth=trust", "-E", "UTF8", "-N"]);
    await start(primary, primaryPort);
    started.push(primary);
    await pgTool("pg_basebackup", [
      "-D",
      standby,
      "-R",
      "-c",
      "fast",
      "-h",
      "127.0.0.1",
      "-p",
      String(primaryPort),
      "-U",
      "postgres",
      "-N",
    ]);
    await start(standby, standbyPort);
    started.push(standby);
    const url = (port: number) => `postgresql://postgres:unused@127.0.0.1:${port}/postgres`;
    await fn({ primary: url(primaryPort), standby: url(standbyPort) });
  } finally {
    for (const data of started.reverse()) {
      await pgTool("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]).catch(() => {});
    }
    await Deno.remove(dir, { recursive: true });
  }
}

function uidOf(user: string): number {
  const line = Deno.readTextFileSync("/etc/passwd").split("\n")
    .find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`no OS user ${user}`);
  return Number(line.split(":")[2]);
}

/** Waits until the standby has replayed everything the primary has written so far. */
async function caughtUp(primary: postgres.Sql, standby: postgres.Sql): Promise<void> {
  const [{ lsn }] = await primary`SELECT pg_current_wal_lsn()::text AS lsn`;
  for (let tries = 0; tries < 1500; tries++) {
    const [{ done }] = await standby`SELECT pg_last_wal_replay_lsn() >= ${lsn}::pg_lsn AS done`;
    if (done) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`the standby never replayed up to ${lsn}`);
}

Deno.test({
  name:
    `against a hot standby: --verify-only compares with a SELECT-only role; a migration is refused${
      NO_CLUSTER_TOOLS ? ` (ignored: ${NO_CLUSTER_TOOLS})` : ""
    }`,
  ignore: !!NO_CLUSTER_TOOLS,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "migrate_test_" });
    const sqlitePath = `${dir}/music_time_machine.db`;
    writeSqlite(sqlitePath, [track("a"), track("b")], [snapshot("a"), snapshot("b")]);
    try {
      await withStandby(async (urls) => {
        const primary = postgres(urls.primary, { max: 1, onnotice: () => {} });
        const standby = postgres(urls.standby, { max: 1, onnotice: () => {} });
        try {
          const flags = ["--sqlite", sqlitePath, "--schema", "music"];
          const created = await runCli([
            ...flags,
            "--database-url",
            urls.primary,
            "--create-schema",
          ]);
          assert.equal(created.code, 0, created.stderr);
          await primary.unsafe(`CREATE ROLE reader LOGIN;
            GRANT USAGE ON SCHEMA music TO reader; GRANT SELECT ON ALL TABLES IN SCHEMA music TO reader`);
          await caughtUp(primary, standby);
          const reader = urls.standby.replace("postgres:unused@", "reader:unused@");

          const check = await runCli([...flags, "--database-url", reader, "--verify-only"]);
          assert.equal(check.code, 0, check.stderr);
          assert.match(check.stdout, /reading only/);
          assert.match(check.stdout, /Verified: PostgreSQL matches SQLite/);

          const refused = await runCli([...flags, "--database-url", urls.standby]);
          assert.equal(refused.code, 2, refused.stderr);
          assert.match(
            refused.stderr,
            /^error: the server is read-only: it is a standby \(a read replica, in recovery\) and cannot take a migration; nothing was read\nfix: point DATABASE_URL at the primary/,
          );
        } finally {
          await primary.end();
          await standby.end();
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * The app in the middle of a write on the SQLite file (rollback journal):
 * another process holds its exclusive lock until its stdin closes.
 */
async function sqliteWriter(path: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { DatabaseSync } from "node:sqlite";
       const db = new DatabaseSync(${JSON.stringify(path)});
       db.exec("BEGIN EXCLUSIVE");
       db.exec("UPDATE tracks SET name = 'being written'");
       console.log("locked");
       for await (const _ of Deno.stdin.readable);
       db.exec("ROLLBACK");`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  for (let seen = ""; !seen.includes("locked");) {
    const { value, done } = await lines.read();
    if (done) throw new Error("the SQLite writer ended before it locked the file");
    seen += value;
  }
  lines.releaseLock();
  return {
    async release() {
      await child.stdin.close().catch(() => {});
      await child.status;
      await child.stdout.cancel().catch(() => {});
    },
  };
}

Deno.test("the app's write on the SQLite file is waited out, said after a moment, and bounded by --lock-timeout", async (t) => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
    await t.step("waited out", async () => {
      const writer = await sqliteWriter(env.sqlitePath);
      try {
        const run = await spawnUntil(env.flags, (line) => line.startsWith("waiting for SQLite"));
        assert.match(
          run.seen(),
          /\nwaiting for SQLite \S+: another process \(the app\?\) is writing to it and holds its lock \(1 s; giving up after 10 s\)\n/,
        );
        await writer.release();
        const result = await run.finish();
        assert.equal(result.code, 0, result.stderr);
        assert.deepEqual(await counts(env), [1, 1]);
      } finally {
        await writer.release();
      }
    });
    await t.step("given up after --lock-timeout", async () => {
      const writer = await sqliteWriter(env.sqlitePath);
      try {
        const result = await runCli([...env.flags, "--lock-timeout", "2"]);
        assert.equal(result.code, 3, result.stderr);
        assert.match(
          result.stderr,
          /^error: gave up after waiting 2 s for SQLite \S+: another process \(the app\?\) holds a write lock on it; nothing was read\nfix: let the app finish its write/,
        );
      } finally {
        await writer.release();
      }
    });
  });
});

Deno.test("--lock-timeout bounds a later lock wait too: a first run's ALTER TABLE behind the app's open read", async () => {
  await withTarget(async (env) => {
    const [tracks, snapshots] = bulkRows(1000, 12); // 12,000 snapshots: the bulk path
    writeSqlite(env.sqlitePath, tracks, snapshots);
    const app = postgres(TEST_DATABASE_URL, {
      max: 1,
      onnotice: () => {},
      connection: { application_name: APP },
    });
    const reading = await app.reserve();
    try {
      // A reader's ACCESS SHARE lets LOCK TABLE through, not the bulk load's ALTER TABLE.
      await reading`BEGIN`;
      await reading.unsafe(`SELECT count(*) FROM ${env.schema}.snapshots`);
      const result = await runCli([...env.flags, "--lock-timeout", "2", "--json"]);
      assert.equal(result.code, 3, result.stderr);
      const { error } = JSON.parse(result.stdout);
      assert.equal(error.kind, "lock");
      assert.match(error.message, /canceling statement due to lock timeout/);
      assert.match(error.hint, /longer than --lock-timeout/);
    } finally {
      await reading`ROLLBACK`;
      reading.release();
      await app.end();
    }
    assert.deepEqual(await counts(env), [0, 0]);
  });
});

Deno.test("--prune needs DELETE: a role without it is told the GRANT before anything is read; without --prune it is not asked", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a"), snapshot("b")]);
    assert.equal((await runCli(env.flags)).code, 0);
    // A row only PostgreSQL has: what --prune would delete.
    await env.sql.unsafe(`INSERT INTO ${env.schema}.tracks (track_id, name, artist_name)
      VALUES ('extra', 'Extra', 'Nobody')`);
    await withRole(
      env,
      (role) => `GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA ${env.schema} TO ${role}`,
      async (role) => {
        const pruning = await runCli([
          ...env.flags,
          "--database-url",
          role.url,
          "--prune",
          "--json",
        ]);
        assert.equal(pruning.code, 2, pruning.stderr);
        const { error } = JSON.parse(pruning.stdout);
        assert.equal(error.kind, "config");
        assert.match(error.message, new RegExp(`user ${role.name} lacks privileges .*DELETE ON`));
        assert.match(
          error.hint,
          new RegExp(`GRANT DELETE ON "${env.schema}"."tracks" TO "${role.name}"`),
        );
        assert.deepEqual(await counts(env), [3, 2], "nothing pruned");
        // Without --prune DELETE is not needed: the run refuses the extra row as data instead.
        const plain = await runCli([...env.flags, "--database-url", role.url]);
        assert.equal(plain.code, 1, plain.stderr);
        assert.doesNotMatch(plain.stderr, /DELETE/);
        assert.match(plain.stderr, /PostgreSQL holds rows that SQLite does not have/);
      },
    );
  });
});
