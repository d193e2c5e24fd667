// The end-to-end suite of what users run: the CLI as `deno run -A migrate.ts`,
// --help and --version, .env, progress on a terminal, exit codes, the compiled
// binary and the bundled single file. Behaviour by stage is tested in test/*_test.ts.
import assert from "node:assert/strict";
import { migrate, parseDotenv, type Report, resolveOptions } from "./migrate.ts";
import {
  bulkRows,
  counts,
  DENO_JSON,
  MIGRATE_TS,
  rejectsWith,
  runCli,
  runCliWith,
  runTaskWith,
  snapshot,
  TEST_DATABASE_URL,
  TEST_PASSWORD,
  track,
  withTarget,
  writeSqlite,
} from "./test/support.ts";

Deno.test("CLI migrates, prints counts and verification, never the password", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a")]);
    const result = await runCli(env.flags, { cwd: env.dir });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /tracks\s+2\s+2\s+0\s+0/);
    assert.match(result.stdout, /snapshots: SQLite=1, PostgreSQL=1 ok/);
    assert.match(result.stdout, /every row in PostgreSQL equals its SQLite source/);
    assert.match(result.stdout, /2 tracks have queryable raw_json objects/);
    const url = new URL(TEST_DATABASE_URL);
    assert.ok(
      result.stdout.includes(`${url.username}@${url.hostname}:${url.port || 5432}${url.pathname}`),
      result.stdout,
    );
    assert.ok(!`${result.stdout}${result.stderr}`.includes(TEST_PASSWORD), "password printed");

    const json = await runCli([...env.flags, "--json"], { cwd: env.dir });
    assert.equal(json.code, 0, json.stderr);
    const report: Report = JSON.parse(json.stdout);
    assert.equal(report.ok, true);
    assert.deepEqual(report.tables.map((t) => t.unchanged), [2, 1]);
    assert.ok(!json.stdout.includes(TEST_PASSWORD));

    const quiet = await runCli([...env.flags, "--quiet"], { cwd: env.dir });
    assert.equal(quiet.code, 0);
    assert.equal(quiet.stdout, "");
  });
});

Deno.test("CLI --help documents every flag with examples", async () => {
  const result = await runCli(["--help"]);
  assert.equal(result.code, 0);
  for (
    const flag of [
      "--sqlite",
      "--database-url",
      "--schema",
      "--create-schema",
      "--dry-run",
      "--verify-only",
      "--prune",
      "--invalid-json",
      "--orphans",
      "--batch-size",
      "--connect-timeout",
      "--quiet",
      "--json",
      "--help",
    ]
  ) {
    assert.ok(result.stdout.includes(flag), `--help mentions ${flag}`);
  }
  assert.match(result.stdout, /Examples:\n\s+deno task migrate/);
  assert.match(result.stdout, /Exit codes: 0 success, 1 .*\n.*2 usage/);
  const bad = await runCli(["--orphans=maybe"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--orphans must be one of fail, skip/);
});

Deno.test(".env is read, and variables already set win over it", async (t) => {
  await t.step("parseDotenv understands quotes, export and comments", () => {
    assert.deepEqual(
      parseDotenv(
        "# comment\nexport A=1\nB=\"two # not a comment\\n\"\nC='x y' # c\nD=p#w\nE=\n  F = spaced  \n",
      ),
      { A: "1", B: "two # not a comment\n", C: "x y", D: "p#w", E: "", F: "spaced" },
    );
  });
  await t.step("resolveOptions: flags > environment > defaults", () => {
    const { options } = resolveOptions(["--sqlite", "flag.db"], {
      SQLITE_PATH: "env.db",
      DATABASE_URL: "postgresql://env/db",
    });
    assert.equal(options.sqlitePath, "flag.db");
    assert.equal(options.databaseUrl, "postgresql://env/db");
    assert.equal(resolveOptions([], {}).options.sqlitePath, "music_time_machine.db");
    assert.equal(
      resolveOptions([], {}).options.databaseUrl,
      "postgresql://localhost/music_time_machine_pg",
    );
  });
  await t.step("the CLI loads .env from the working directory", async () => {
    await withTarget(async (env) => {
      writeSqlite(env.sqlitePath, [track("a")], []);
      await Deno.writeTextFile(
        `${env.dir}/.env`,
        `SQLITE_PATH=${env.sqlitePath}\nDATABASE_URL=postgresql://nobody:wrong@127.0.0.1:1/x\n`,
      );
      const result = await runCli(["--schema", env.schema], {
        cwd: env.dir,
        env: { DATABASE_URL: TEST_DATABASE_URL },
      });
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(await counts(env), [1, 0]);
    });
  });
});

Deno.test("progress is a live line on a terminal and absent on a pipe", async () => {
  await withTarget(async (env) => {
    const [tracks, snapshots] = bulkRows(500, 10);
    writeSqlite(env.sqlitePath, tracks, snapshots);
    const piped = await runCli(env.flags);
    assert.equal(piped.code, 0, piped.stderr);
    assert.ok(!piped.stderr.includes("rows/s"), "no progress on a pipe");

    await env.sql.unsafe(`TRUNCATE ${env.schema}.snapshots, ${env.schema}.tracks`);
    // script(1) gives the CLI a terminal and records what it shows there.
    const command = [Deno.execPath(), "run", "-A", "--config", DENO_JSON, MIGRATE_TS, ...env.flags]
      .map((arg) => `'${arg}'`).join(" ");
    const tty = await new Deno.Command("script", {
      args: ["-qec", command, "/dev/null"],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const screen = new TextDecoder().decode(tty.stdout);
    assert.equal(tty.code, 0, screen);
    assert.match(screen, /tracks 500\/500 {2}snapshots 5000\/5000 {2}\d+ rows\/s {2}ETA 0s/);
  });
});

// --- the standalone binary ----------------------------------------------------

/**
 * Compiles once. Only a failed download of the denort runtime (our machines
 * cannot reach Deno's download host) makes the test ignored; any other
 * compile error fails it.
 */
async function compileBinary(): Promise<{ path: string; error?: string; ignored?: string }> {
  const dir = await Deno.makeTempDir({ prefix: "migrate_bin_" });
  const path = `${dir}/migrate`;
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["compile", "-A", "--config", DENO_JSON, "--output", path, MIGRATE_TS],
    env: { NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code === 0) return { path };
  // Nothing of a failed compile is worth keeping.
  await Deno.remove(dir, { recursive: true });
  const text = new TextDecoder().decode(stderr);
  const cause = [...text.split("Stack backtrace")[0].matchAll(/^\s*\d+: (.+)$/gm)].at(-1)?.[1] ??
    text.trim();
  return /denort/.test(text) && /error sending request|dns error|Connect/.test(text)
    ? { path, ignored: `deno compile cannot download its denort runtime here (${cause})` }
    : { path, error: text };
}

const binary = await compileBinary();
const ROOT = new URL(".", import.meta.url).pathname;

Deno.test({
  name: `the compiled binary runs a real migration${
    binary.ignored ? ` (ignored: ${binary.ignored})` : ""
  }`,
  ignore: binary.ignored !== undefined,
  fn: async () => {
    assert.equal(binary.error, undefined, binary.error);
    await withTarget(async (env) => {
      writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
      // The binary reads .env from its working directory, like `deno run`.
      await Deno.writeTextFile(`${env.dir}/.env`, `DATABASE_URL=${TEST_DATABASE_URL}\n`);
      const { code, stdout, stderr } = await new Deno.Command(binary.path, {
        args: ["--sqlite", env.sqlitePath, "--schema", env.schema],
        cwd: env.dir,
        env: { INIT_CWD: env.dir },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(code, 0, new TextDecoder().decode(stderr));
      assert.match(new TextDecoder().decode(stdout), /Migration committed/);
      assert.deepEqual(await counts(env), [1, 1]);
    }).finally(() => Deno.remove(binary.path.replace(/\/migrate$/, ""), { recursive: true }));
  },
});

Deno.test("deno task bundle writes one file that migrates from any folder, with no deno.json and nothing to download", async () => {
  const task = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "bundle"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(task.code, 0, new TextDecoder().decode(task.stderr));
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a"), track("b")], [snapshot("a"), snapshot("b")]);
    const dir = await Deno.makeTempDir({ prefix: "migrate_bundle_" });
    try {
      await Deno.copyFile(`${ROOT}dist/migrate.js`, `${dir}/migrate.js`);
      await Deno.writeTextFile(`${dir}/.env`, `DATABASE_URL=${TEST_DATABASE_URL}\n`);
      // An empty Deno cache: anything the file needed from npm would have to be downloaded.
      const run = (args: string[]) =>
        new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            "migrate.js",
            "--sqlite",
            env.sqlitePath,
            "--schema",
            env.schema,
            ...args,
          ],
          cwd: dir,
          env: { DENO_DIR: `${dir}/deno_dir`, NO_COLOR: "1" },
          clearEnv: true,
          stdout: "piped",
          stderr: "piped",
        }).output();
      const first = await run([]);
      assert.equal(first.code, 0, new TextDecoder().decode(first.stderr));
      assert.match(new TextDecoder().decode(first.stdout), /Migration committed/);
      assert.deepEqual(await counts(env), [2, 2]);
      const check = await run(["--verify-only"]);
      assert.equal(check.code, 0, new TextDecoder().decode(check.stderr));
      assert.match(new TextDecoder().decode(check.stdout), /Verified: PostgreSQL matches SQLite/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("CLI: --json makes even a flag's error JSON; an unreadable .env is named, not blamed on PostgreSQL", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bad = await runCliWith(["--json", "--database-url", "postgresql://h:port/db"], {}, dir);
    assert.equal(bad.code, 2);
    const json = JSON.parse(bad.stdout);
    assert.deepEqual([json.ok, json.error.kind], [false, "config"]);
    assert.match(json.error.message, /port port .* is not a port number/);

    await Deno.mkdir(`${dir}/.env`);
    const dotenv = await runCliWith(["--sqlite", `${dir}/none.db`], {}, dir);
    assert.equal(dotenv.code, 2);
    assert.match(dotenv.stderr, /^error: the \.env file in the current directory cannot be read/);
    assert.match(dotenv.stderr, /fix: fix or remove \.env/);
    assert.doesNotMatch(dotenv.stderr, /PostgreSQL/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--version, the usage line, exit codes in --help, and exit 70 for our own bugs", async () => {
  const version = await runCli(["--version"]);
  assert.equal(version.code, 0);
  const { version: expected } = JSON.parse(await Deno.readTextFile(DENO_JSON));
  assert.equal(version.stdout, `migrate.ts ${expected}\n`);
  const help = await runCli(["--help"]);
  assert.match(help.stdout, /^Usage: deno task migrate \[options\]$/m);
  for (const flag of ["--verbose", "--lock-timeout SEC", "--version"]) {
    assert.ok(help.stdout.includes(flag), flag);
  }
  assert.match(help.stdout, /70 internal error/);
  assert.match(help.stdout, /129 SIGHUP, 130 SIGINT \(Ctrl-C\), 143 SIGTERM/);
  assert.match(help.stdout, /require\s+\(TLS, server NOT verified\)/);

  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], []);
    const error = await rejectsWith(
      migrate({
        ...env.options,
        onStep: () => {
          throw new TypeError("a bug");
        },
      }),
      "internal",
    );
    assert.equal(error.exitCode, 70);
    assert.match(error.message, /unexpected: a bug; nothing was committed/);
    assert.match(error.hint, /please report it/);
    assert.deepEqual(await counts(env), [0, 0]);
  });
});

Deno.test({
  name: `the compiled binary calls itself migrate in --help${
    binary.ignored ? ` (ignored: ${binary.ignored})` : ""
  }`,
  ignore: binary.ignored !== undefined,
  fn: async () => {
    const { code, stdout } = await new Deno.Command(binary.path, {
      args: ["--help"],
      stdout: "piped",
    }).output();
    assert.equal(code, 0);
    const text = new TextDecoder().decode(stdout);
    assert.match(text, /^Usage: migrate \[options\]$/m);
    assert.match(text, /^ {2}migrate --verify-only --json$/m);
  },
});

Deno.test("deno task migrate from another folder: paths and .env mean that folder; an empty DATABASE_URL does not hide .env's", async () => {
  await withTarget(async (env) => {
    const sub = `${env.dir}/app/sub`;
    await Deno.mkdir(sub, { recursive: true });
    writeSqlite(`${env.dir}/app/music.db`, [track("a")], [snapshot("a")]);
    // The user's .env, in the folder they run the command from.
    await Deno.writeTextFile(`${sub}/.env`, `DATABASE_URL=${TEST_DATABASE_URL}\n`);
    const task = (args: string[], vars: Record<string, string> = {}) =>
      runTaskWith(["--config", DENO_JSON, "migrate", "--schema", env.schema, ...args], vars, sub);

    const missing = await task(["--sqlite", "../nothere.db"]);
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(
      missing.stderr,
      new RegExp(`SQLite database not found: ${env.dir}/app/nothere\\.db`),
    );

    const result = await task(["--sqlite", "../music.db", "--verbose"], { DATABASE_URL: "" });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`sqlite ${env.dir}/app/music\\.db  \\(flag\\)`));
    assert.match(
      result.stdout,
      new RegExp(`database\\s+\\S+\\s+\\(DATABASE_URL in ${sub}/\\.env\\)`),
    );
    assert.ok(!`${result.stdout}${result.stderr}`.includes(TEST_PASSWORD), "password printed");
    assert.deepEqual(await counts(env), [1, 1]);

    await Deno.writeTextFile(
      `${sub}/.env`,
      `SQLITE_PATH=~/music.db\nDATABASE_URL=${TEST_DATABASE_URL}\n`,
    );
    const home = await task(["--verify-only"], { HOME: `${env.dir}/app` });
    assert.equal(home.code, 0, home.stderr);
    assert.ok(home.stdout.includes(`Migrating ${env.dir}/app/music.db →`), home.stdout);
  });
});
