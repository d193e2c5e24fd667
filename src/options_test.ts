import assert from "node:assert/strict";
import { MigrationError } from "./errors.ts";
import {
  describeOrigin,
  FLAGS,
  loadEnvironment,
  nearestFlag,
  resolveOptions,
  USAGE,
  userFolder,
} from "./options.ts";

/** The MigrationError that resolving these arguments throws. */
function refusal(args: string[], env: Record<string, string> = {}): MigrationError {
  try {
    resolveOptions(args, env);
  } catch (error) {
    assert.ok(error instanceof MigrationError, String(error));
    return error;
  }
  assert.fail(`${args.join(" ")} was accepted`);
}

Deno.test("options: every flag in FLAGS is in --help, with its variable and default", () => {
  for (const flag of FLAGS) {
    assert.match(USAGE, new RegExp(`--${flag.name}\\b`));
    if (flag.env) assert.ok(USAGE.includes(`env ${flag.env}`), flag.name);
  }
  assert.match(
    USAGE,
    /--sqlite PATH\s+SQLite database to read \(env SQLITE_PATH; default music_time_machine\.db\)/,
  );
});

Deno.test("options: -V, -q, -v and -h are --version, --quiet, --verbose and --help", () => {
  const { output } = resolveOptions(["-V", "-q", "-v", "-h"], {});
  assert.deepEqual(output, { help: true, version: true, quiet: true, verbose: true, json: false });
});

Deno.test("options: a mistyped flag gets the nearest known one", () => {
  const typo = refusal(["--ignor-columns", "snapshots.id"]);
  assert.equal(typo.kind, "usage");
  assert.match(typo.message, /Unknown option '--ignor-columns'/);
  assert.match(typo.hint, /^did you mean --ignore-columns\?/);
  assert.match(refusal(["--dryrun"]).hint, /^did you mean --dry-run\?/);
  assert.match(refusal(["--verbos=1"]).hint, /^did you mean --verbose\?/);
  assert.equal(nearestFlag("--frobnicate"), undefined, "nothing near: no guess");
  assert.match(refusal(["--frobnicate"]).hint, /--help lists every option/);
});

Deno.test("options: a bad value names the flag and gets a fix line", () => {
  const policy = refusal(["--invalid-json=skip"]);
  assert.match(policy.message, /--invalid-json must be one of fail, null, got 'skip'/);
  assert.match(policy.hint, /^write --invalid-json=fail or --invalid-json=null: /);
  const batch = refusal(["--batch-size", "0"]);
  assert.match(batch.message, /--batch-size must be a positive integer, got '0'/);
  assert.equal(batch.hint, "give a whole number of 1 or more, e.g. --batch-size 100");
  assert.match(refusal(["--dry-run", "--verify-only"]).hint, /pick one/);
});

Deno.test("options: relative paths and ~ mean the user's folder when one is given", () => {
  const env = { HOME: "/home/me", SQLITE_PATH: "~/app/music_time_machine.db" };
  assert.equal(
    resolveOptions([], env, "/work/sub").options.sqlitePath,
    "/home/me/app/music_time_machine.db",
  );
  const flagged = resolveOptions(
    ["--sqlite", "../data/app.db", "--reject-file", "r.csv"],
    env,
    "/work/sub",
  );
  assert.equal(flagged.options.sqlitePath, "/work/data/app.db");
  assert.equal(flagged.options.rejectFile, "/work/sub/r.csv");
  assert.equal(
    resolveOptions(["--sqlite", "/abs/app.db"], env, "/work").options.sqlitePath,
    "/abs/app.db",
  );
  assert.equal(resolveOptions([], {}, "/w").options.sqlitePath, "/w/music_time_machine.db");
  assert.equal(
    resolveOptions(["--sqlite", "x.db"], {}).options.sqlitePath,
    "x.db",
    "no folder: as given",
  );
});

Deno.test("options: the user's folder is INIT_CWD under deno task, else the working directory", () => {
  assert.equal(userFolder({ INIT_CWD: "/home/me/app" }), "/home/me/app");
  assert.equal(userFolder({}), Deno.cwd());
});

Deno.test("options: .env is read from the user's folder; set variables win, empty ones do not", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/.env`,
      "DATABASE_URL=postgresql://app@db/mtm\nSQLITE_PATH=app.db\nPGUSER=fromfile\n",
    );
    const { env, dotenv } = loadEnvironment(dir, { DATABASE_URL: "", PGUSER: "shell" });
    assert.equal(env.DATABASE_URL, "postgresql://app@db/mtm", "an empty variable is unset");
    assert.equal(env.PGUSER, "shell", "a variable already set wins");
    assert.equal(dotenv.path, `${dir}/.env`);
    assert.deepEqual([...dotenv.names].sort(), ["DATABASE_URL", "SQLITE_PATH"]);
    assert.equal(describeOrigin("DATABASE_URL", dotenv), `DATABASE_URL in ${dir}/.env`);
    assert.equal(describeOrigin("PGUSER", dotenv), "PGUSER");
    const resolved = resolveOptions([], env, dir);
    assert.equal(resolved.options.sqlitePath, `${dir}/app.db`);
    assert.equal(resolved.settings.sqlite.source, "SQLITE_PATH");
    assert.equal(resolved.options.connection!.host, "db");

    assert.deepEqual(loadEnvironment(`${dir}/none`, { A: "1" }).env, { A: "1" }, "no .env: fine");
    await Deno.remove(`${dir}/.env`);
    await Deno.mkdir(`${dir}/.env`);
    assert.throws(() => loadEnvironment(dir, {}), (error: MigrationError) => {
      assert.match(error.message, new RegExp(`cannot be read \\(${dir}/\\.env\\)`));
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
