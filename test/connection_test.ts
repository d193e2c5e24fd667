// Connections as libpq makes them: URL and key=value strings, PG* variables,
// the password file, Unix sockets, every sslmode, PgBouncer, and the password
// never shown.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import postgres from "postgres";
import { describeConnection, MigrationError, type Report, resolveOptions } from "../migrate.ts";
import {
  bulkRows,
  cliCommand,
  type CliResult,
  counts,
  type Env,
  holdSnapshotInserts,
  runCli,
  runCliWith,
  snapshot,
  TEST_DATABASE_URL,
  TEST_PASSWORD,
  track,
  withTarget,
  writeSqlite,
} from "./support.ts";

/** Why the test server has no TLS (an embedded one without openssl), if so. */
const NO_TLS = Deno.env.get("TEST_NO_TLS");

Deno.test({
  name: `TLS: a server that requires it refuses plain connections; sslmode=require works${
    NO_TLS ? ` (ignored: ${NO_TLS})` : ""
  }`,
  ignore: NO_TLS !== undefined,
}, async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
    const url = new URL(TEST_DATABASE_URL);
    url.username = "mtm_tls"; // set up by .ci/setup-postgres: hostnossl … reject
    url.searchParams.set("sslmode", "disable"); // libpq's default, prefer, would use TLS
    const plain = await runCli([...env.flags, "--database-url", url.href]);
    assert.equal(plain.code, 2, plain.stderr);
    assert.match(plain.stderr, /no encryption[\s\S]*sslmode=prefer \(the default\) or require/);
    url.searchParams.set("sslmode", "require");
    const tls = await runCli([...env.flags, "--database-url", url.href]);
    assert.equal(tls.code, 0, tls.stderr);
    assert.deepEqual(await counts(env), [1, 1]);
  });
});

const TEST_URL = new URL(TEST_DATABASE_URL);

/** The test database's parts, for PG* variables, key=value strings and password files. */
const PG = {
  host: TEST_URL.hostname,
  port: TEST_URL.port || "5432",
  database: decodeURIComponent(TEST_URL.pathname.slice(1)),
  user: decodeURIComponent(TEST_URL.username),
  password: decodeURIComponent(TEST_URL.password),
};

/** The CA that signed the test server's certificate (see .ci/setup-postgres). */
const TEST_SSLROOTCERT = Deno.env.get("TEST_SSLROOTCERT") ??
  "/var/lib/postgresql/mtm-test-ca.crt";

const SOCKET_DIR = Deno.env.get("TEST_SOCKET_DIR") ?? "/var/run/postgresql";

/** Why a test cannot run on this machine, or undefined when it can. */
async function missing(what: string, check: () => Promise<boolean> | boolean) {
  try {
    return (await check()) ? undefined : what;
  } catch {
    return what;
  }
}

const commandWorks = async (command: string, args: string[]) =>
  (await new Deno.Command(command, { args, stdout: "null", stderr: "null" }).output()).success;

const fileExists = (path: string) => Deno.statSync(path).isFile;

const PGBOUNCER = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].find((p) => {
  try {
    return fileExists(p);
  } catch {
    return false;
  }
}) ?? "pgbouncer";

const NO_TLS_CA = await missing(
  `no test CA certificate at ${TEST_SSLROOTCERT} (run .ci/setup-postgres or set TEST_SSLROOTCERT)`,
  () => fileExists(TEST_SSLROOTCERT),
);

const NO_OPENSSL = await missing(
  "openssl is not installed",
  () => commandWorks("openssl", ["version"]),
);

const NO_SOCKET = await missing(
  `no PostgreSQL socket ${SOCKET_DIR}/.s.PGSQL.${PG.port}`,
  () => Deno.statSync(`${SOCKET_DIR}/.s.PGSQL.${PG.port}`).isSocket === true,
);

// The socket may be there while the server's local authentication (peer,
// say, in pg_hba.conf) refuses the test role's password over it.
const NO_SOCKET_LOGIN = NO_SOCKET ?? await missing(
  `${PG.user} cannot log in over the socket in ${SOCKET_DIR} (the server's local authentication)`,
  async () => {
    const sql = postgres({
      path: `${SOCKET_DIR}/.s.PGSQL.${PG.port}`,
      user: PG.user,
      password: PG.password,
      database: PG.database,
      max: 1,
      connect_timeout: 10,
      onnotice: () => {},
    });
    try {
      await sql`SELECT 1`;
      return true;
    } finally {
      await sql.end();
    }
  },
);

const NO_PGBOUNCER = await missing(
  "pgbouncer is not installed",
  () => commandWorks(PGBOUNCER, ["--version"]),
);

const NO_CREATEROLE = await missing(`role ${PG.user} may not create roles`, async () => {
  const sql = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });
  try {
    const [{ rolcreaterole }] = await sql`
      SELECT rolcreaterole FROM pg_roles WHERE rolname = current_user`;
    return rolcreaterole;
  } finally {
    await sql.end();
  }
});

/** A Deno.test that reports itself ignored, with the reason, when something is missing here. */
function testNeeding(
  name: string,
  reasons: (string | undefined)[],
  fn: (t: Deno.TestContext) => Promise<void>,
) {
  const reason = reasons.filter(Boolean).join("; ");
  Deno.test({ name: reason ? `${name} (ignored: ${reason})` : name, ignore: !!reason, fn });
}

/** CLI flags of `env` without --database-url: the connection comes from elsewhere. */
const flagsWithoutUrl = (env: Env) => ["--sqlite", env.sqlitePath, "--schema", env.schema];

Deno.test("connection settings: URL or key=value first, then PG* variables, password file, defaults", async (t) => {
  const connection = (args: string[], env: Record<string, string>) =>
    resolveOptions(args, env).options.connection!;

  await t.step("nothing set: the tutorial's host and database, libpq's port and sslmode", () => {
    for (const env of [{}, { DATABASE_URL: "" }] as Record<string, string>[]) {
      const c = connection([], { ...env, USER: "me" });
      assert.equal(describeConnection(c), "me@localhost:5432/music_time_machine_pg");
      assert.equal(c.sslmode, "prefer");
      assert.deepEqual(
        [c.sources.host, c.sources.database, c.sources.user],
        ["default", "default", "default"],
      );
    }
  });
  await t.step("DATABASE_URL unset or empty: the PG* variables that are set decide", () => {
    const pg = {
      PGHOST: "db.example",
      PGPORT: "6543",
      PGDATABASE: "mtm",
      PGUSER: "app",
      PGPASSWORD: "pw",
      PGSSLMODE: "verify-full",
      PGSSLROOTCERT: "/ca.crt",
      PGAPPNAME: "nightly",
      PGCONNECT_TIMEOUT: "3",
    };
    for (const env of [pg, { ...pg, DATABASE_URL: "" }]) {
      const c = connection([], env);
      assert.equal(describeConnection(c), "app@db.example:6543/mtm");
      assert.deepEqual(
        [c.password, c.sslmode, c.sslrootcert, c.applicationName, c.connectTimeout],
        ["pw", "verify-full", "/ca.crt", "nightly", 3],
      );
      assert.equal(c.sources.port, "PGPORT");
      assert.equal(c.sources.password, "PGPASSWORD");
    }
    const onlyHost = connection([], { PGHOST: "elsewhere", USER: "me" });
    assert.equal(describeConnection(onlyHost), "me@elsewhere:5432/music_time_machine_pg");
  });
  await t.step("the URL wins over PG* variables, part by part; the flag over DATABASE_URL", () => {
    const c = connection(["--database-url", "postgresql://u@h/db"], {
      DATABASE_URL: "postgresql://other/x",
      PGPORT: "7000",
      PGHOST: "ignored",
      PGPASSWORD: "from-env",
    });
    assert.equal(describeConnection(c), "u@h:7000/db");
    assert.deepEqual(c.sources, {
      host: "flag",
      port: "PGPORT",
      database: "flag",
      user: "flag",
      password: "PGPASSWORD",
      sslmode: "default",
      sslrootcert: "default",
      applicationName: "default",
      connectTimeout: "default",
    });
  });
  await t.step("URLs: unencoded @ and : in the password, ?password=, sockets, IPv6", () => {
    const unencoded = connection([], { DATABASE_URL: "postgresql://at:p@ss@w:rd@h:5/db" });
    assert.deepEqual([unencoded.user, unencoded.password], ["at", "p@ss@w:rd"]);
    assert.equal(describeConnection(unencoded), "at@h:5/db");
    const query = connection([], {
      DATABASE_URL:
        "postgres://u@h/db?password=a%26b+c&sslmode=require&application_name=x%20y&user=me@example",
    });
    // Settings libpq knows whose values ask for nothing more are taken.
    const tolerated = connection([], {
      DATABASE_URL:
        "postgresql://u@h/db?sslmode=verify-full&channel_binding=prefer&target_session_attrs=read-write&gssencmode=disable",
    });
    assert.equal(tolerated.sslmode, "verify-full");
    // As libpq: only %XX is decoded, a + stays a +.
    assert.deepEqual([query.password, query.sslmode, query.applicationName, query.user], [
      "a&b+c",
      "require",
      "x y",
      "me@example",
    ]);
    for (
      const url of [
        "postgresql:///db?host=/var/run/postgresql&user=me",
        "postgresql://me@/db?host=/var/run/postgresql",
        "postgresql://me@%2Fvar%2Frun%2Fpostgresql/db",
      ]
    ) {
      assert.equal(
        describeConnection(connection([], { DATABASE_URL: url })),
        "me@/var/run/postgresql:5432/db",
        url,
      );
    }
    assert.equal(
      describeConnection(connection([], { DATABASE_URL: "postgresql://me@[::1]:6/db" })),
      "me@[::1]:6/db",
    );
  });
  await t.step("key=value strings: quotes, backslash escapes, spaces around =", () => {
    const c = connection([], {
      DATABASE_URL: String
        .raw`host=h port = 6 dbname='my db' user=u password='it\'s \\ a:b@c' sslmode=disable`,
    });
    assert.equal(describeConnection(c), "u@h:6/my db");
    assert.deepEqual([c.password, c.sslmode], ["it's \\ a:b@c", "disable"]);
    assert.equal(
      connection([], { DATABASE_URL: String.raw`password=a\ b user=x` }).password,
      "a b",
    );
  });
  await t.step("bad settings are one clear configuration error", () => {
    for (
      const [url, message] of [
        ["postgresql://h/db?sslmode=sometimes", /sslmode sometimes .* is not one of disable/],
        ["postgresql://h/db?pgbouncer=true", /does not know: pgbouncer/],
        ["postgresql://h:port/db", /port port .* is not a port number/],
        ["postgresql://h/db?connect_timeout=soon", /connect_timeout soon .* not a whole number/],
        ["host=h 'oops", /neither a postgresql:\/\/ URL nor key=value/],
        // A / or ? in the password ends the authority: never read (nor
        // printed) the rest as port, database or setting.
        [
          "postgresql://u:p@ep-x.neon.tech/db?sslmode=require&channel_binding=require",
          /channel_binding=require, but .* cannot bind SCRAM to the TLS channel/,
        ],
        ["postgresql://h/db?target_session_attrs=standby", /target_session_attrs=standby/],
        ["postgresql://h/db?gssencmode=require", /gssencmode=require, but .* GSSAPI/],
        ["postgresql://mtm:Xy@7/Secret9@localhost:5432/db", /holds a \/ or \? that is not/],
        ["postgresql://mtm:Xy@7?Secret9@localhost/db", /holds a \/ or \? that is not/],
        ["postgresql://mtm:Xy7?Sec=ret9@localhost:5432/db", /holds a \/ or \? that is not/],
        ["postgresql://mtm:Xy7/Secret9@localhost:5432/db", /holds a \/ or \? that is not/],
        ["postgresql://mtm:Xy7?Secret9@localhost:5432/db", /holds a \/ or \? that is not/],
        ["postgresql://mtm:5433/Secret9@localhost:5432/db", /holds a \/ or \? that is not/],
      ] as const
    ) {
      assert.throws(
        () => resolveOptions([], { DATABASE_URL: url }),
        (error: unknown) =>
          error instanceof MigrationError && error.exitCode === 2 && message.test(error.message) &&
          !/Secret9|ret9/.test(`${error.message} ${error.hint}`),
        url,
      );
    }
  });
  await t.step(
    "password file: libpq's matching, escapes, wildcards, first match wins",
    async () => {
      const dir = await Deno.makeTempDir();
      const file = `${dir}/pgpass`;
      await Deno.writeTextFile(
        file,
        [
          "# comment",
          "other:5432:*:app:not-this-host",
          String.raw`db\:1:5432:mtm:app:escaped\:colon\\slash`,
          "db2:*:*:app:wild:card:with:colons",
          "db2:5432:mtm:app:second-match",
          "localhost:5432:mtm:app:socket",
          "*:*:*:*:anything",
        ].join("\n") + "\n",
      );
      await Deno.chmod(file, 0o600);
      const passwordFor = (url: string, env: Record<string, string> = {}) =>
        connection([], { DATABASE_URL: url, PGPASSFILE: file, ...env });
      assert.equal(passwordFor("postgresql://app@db%3A1/mtm").password, "escaped:colon\\slash");
      assert.equal(passwordFor("postgresql://app@db2/mtm").password, "wild:card:with:colons");
      assert.equal(passwordFor("postgresql://app@/mtm?host=/tmp").password, "socket");
      assert.equal(passwordFor("postgresql://x@y/z").password, "anything");
      assert.equal(passwordFor("postgresql://x@y/z").sources.password, "passfile");
      assert.equal(passwordFor("postgresql://x:given@y/z").password, "given", "the URL wins");
      assert.equal(passwordFor("postgresql://x@y/z", { PGPASSWORD: "env" }).password, "env");
      // ~/.pgpass when PGPASSFILE is unset.
      await Deno.writeTextFile(`${dir}/.pgpass`, "*:*:*:*:from-home\n", { mode: 0o600 });
      assert.equal(
        connection([], { DATABASE_URL: "postgresql://x@y/z", HOME: dir }).password,
        "from-home",
      );

      await Deno.chmod(file, 0o640);
      const refused = passwordFor("postgresql://x@y/z");
      assert.equal(refused.password, undefined);
      assert.deepEqual(refused.warnings, [
        `warning: password file ${file} has group or world access and is ignored; chmod 0600 ${file}`,
      ]);
      await Deno.remove(dir, { recursive: true });
    },
  );
});

Deno.test("CLI: PG* variables decide when DATABASE_URL is unset or empty; --verbose and --json name the sources", async (t) => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
    const pg = {
      PGHOST: PG.host,
      PGPORT: PG.port,
      PGDATABASE: PG.database,
      PGUSER: PG.user,
      PGPASSWORD: PG.password,
    };
    // sslmode=prefer falls back to a plain connection on a server without TLS.
    const encryption = NO_TLS
      ? /connected to .*: not encrypted \(sslmode=prefer\)/
      : /connected to .*: encrypted \(TLS\), server certificate not verified \(sslmode=prefer\)/;
    const unset = `DATABASE_URL unset${NO_TLS ? ` (TLS not expected: ${NO_TLS})` : ""}`;
    await t.step(unset, async () => {
      // Variables only postgres.js reads (not libpq) have no effect.
      const extra = { PGSSLNEGOTIATION: "direct", PGDEBUG: "1", PGPREPARE: "true" };
      const result = await runCliWith(
        [...flagsWithoutUrl(env), "--verbose"],
        { ...pg, ...extra },
        env.dir,
      );
      assert.equal(result.code, 0, result.stderr);
      assert.ok(
        result.stdout.includes(`→ ${PG.user}@${PG.host}:${PG.port}/${PG.database} (schema`),
        result.stdout,
      );
      assert.match(result.stdout, /host\s+\S+\s+\(PGHOST\)/);
      assert.match(result.stdout, /password\s+\*\*\*\s+\(PGPASSWORD\)/);
      assert.match(result.stdout, /sslmode\s+prefer\s+\(default\)/);
      assert.match(result.stdout, encryption);
      assert.ok(!`${result.stdout}${result.stderr}`.includes(PG.password));
      assert.deepEqual(await counts(env), [1, 1]);
    });
    await t.step("DATABASE_URL empty, with --json", async () => {
      const result = await runCliWith(
        [...flagsWithoutUrl(env), "--json"],
        { ...pg, DATABASE_URL: "", PGSSLMODE: "disable" },
        env.dir,
      );
      assert.equal(result.code, 0, result.stderr);
      const report = JSON.parse(result.stdout);
      assert.equal(report.target, `${PG.user}@${PG.host}:${PG.port}/${PG.database}`);
      assert.deepEqual(report.connection.sources.database, "PGDATABASE");
      assert.deepEqual(report.connection.sources.sslmode, "PGSSLMODE");
      assert.deepEqual([report.connection.encrypted, report.connection.verified], [
        false,
        "nothing",
      ]);
      assert.ok(!result.stdout.includes(PG.password));
    });
  });
});

Deno.test("CLI: the password file is used, and refused (one warning line) when others may read it", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
    const passfile = `${env.dir}/pgpass`;
    const escaped = (text: string) => text.replaceAll("\\", "\\\\").replaceAll(":", "\\:");
    await Deno.writeTextFile(
      passfile,
      `nothere:*:*:*:wrong\n${escaped(PG.host)}:${PG.port}:*:${escaped(PG.user)}:${
        escaped(PG.password)
      }\n`,
      { mode: 0o600 },
    );
    await Deno.chmod(passfile, 0o600);
    const url = `postgresql://${TEST_URL.username}@${TEST_URL.host}${TEST_URL.pathname}`;
    const vars = { DATABASE_URL: url, PGPASSFILE: passfile };
    const used = await runCliWith([...flagsWithoutUrl(env), "--verbose"], vars, env.dir);
    assert.equal(used.code, 0, used.stderr);
    assert.match(used.stdout, /password\s+\*\*\*\s+\(passfile\)/);
    assert.deepEqual(await counts(env), [1, 1]);

    await Deno.chmod(passfile, 0o644);
    const refused = await runCliWith(flagsWithoutUrl(env), vars, env.dir);
    assert.equal(refused.code, 2, refused.stderr);
    const lines = refused.stderr.trim().split("\n");
    assert.equal(
      lines[0],
      `warning: password file ${passfile} has group or world access and is ignored; chmod 0600 ${passfile}`,
    );
    assert.match(refused.stderr, /error: .*password authentication failed|no password/);
    assert.match(refused.stderr, /fix: the server asks for a password and none was given/);
    assert.ok(!`${refused.stdout}${refused.stderr}`.includes(PG.password));
  });
});

testNeeding("CLI connects through the Unix socket: URL with ?host=, empty host, PGHOST", [
  NO_SOCKET_LOGIN,
], async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
    const pw = encodeURIComponent(PG.password);
    const user = encodeURIComponent(PG.user);
    for (
      const vars of [
        {
          DATABASE_URL: `postgresql:///${PG.database}?host=${SOCKET_DIR}&port=${PG.port}` +
            `&user=${user}&password=${pw}`,
        },
        {
          DATABASE_URL: `postgresql://${user}:${pw}@:${PG.port}/${PG.database}?host=${SOCKET_DIR}`,
        },
        {
          PGHOST: SOCKET_DIR,
          PGPORT: PG.port,
          PGUSER: PG.user,
          PGPASSWORD: PG.password,
          PGDATABASE: PG.database,
        },
      ] as Record<string, string>[]
    ) {
      const result = await runCliWith(flagsWithoutUrl(env), vars, env.dir);
      assert.equal(result.code, 0, result.stderr);
      assert.ok(
        result.stdout.includes(`→ ${PG.user}@${SOCKET_DIR}:${PG.port}/${PG.database}`),
        result.stdout,
      );
      assert.match(result.stdout, /connected to .*: Unix socket, not encrypted/);
      assert.ok(!`${result.stdout}${result.stderr}`.includes(PG.password));
    }
    assert.deepEqual(await counts(env), [1, 1]);
  });
});

Deno.test("CLI connects with a libpq key=value string", async () => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
    const quote = (text: string) => `'${text.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
    const conninfo = `host=${PG.host} port=${PG.port} dbname=${quote(PG.database)} user=${
      quote(PG.user)
    } password=${quote(PG.password)}`;
    const result = await runCliWith(flagsWithoutUrl(env), { DATABASE_URL: conninfo }, env.dir);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(result.stdout.includes(`→ ${PG.user}@${PG.host}:${PG.port}/${PG.database}`));
    assert.ok(!`${result.stdout}${result.stderr}`.includes(PG.password));
    assert.deepEqual(await counts(env), [1, 1]);
  });
});

/** A CA certificate that signed nothing the server has, made with openssl. */
async function wrongCa(dir: string): Promise<string> {
  const path = `${dir}/wrong-ca.crt`;
  const { success } = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-nodes",
      "-newkey",
      "rsa:2048",
      "-days",
      "1",
      "-subj",
      "/CN=not the test CA",
      "-keyout",
      `${dir}/wrong-ca.key`,
      "-out",
      path,
    ],
    stdout: "null",
    stderr: "null",
  }).output();
  assert.ok(success, "openssl made a CA");
  return path;
}

testNeeding("TLS: each sslmode against the test server, verified with the test CA", [
  NO_TLS_CA,
  NO_OPENSSL,
], async (t) => {
  await withTarget(async (env) => {
    writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
    const url = (sslmode: string, fields: { host?: string; user?: string; ca?: string } = {}) => {
      const u = new URL(TEST_DATABASE_URL);
      u.hostname = fields.host ?? "localhost";
      if (fields.user) u.username = fields.user;
      u.searchParams.set("sslmode", sslmode);
      if (fields.ca) u.searchParams.set("sslrootcert", fields.ca);
      return u.href;
    };
    const run = (databaseUrl: string) =>
      runCliWith([...flagsWithoutUrl(env), "--database-url", databaseUrl], {}, env.dir);
    const connected = /connected to \S+: (.*)/;

    await t.step("verify-full with the right CA and host localhost", async () => {
      const result = await run(url("verify-full", { ca: TEST_SSLROOTCERT }));
      assert.equal(result.code, 0, result.stderr);
      assert.equal(
        connected.exec(result.stdout)?.[1],
        "encrypted (TLS), server certificate and host name verified (sslmode=verify-full)",
      );
    });
    await t.step(
      "verify-full through PGSSLROOTCERT and PGSSLMODE, as mtm_tls (TLS only)",
      async () => {
        const u = new URL(url("prefer", { user: "mtm_tls" }));
        u.searchParams.delete("sslmode");
        const result = await runCliWith(
          [...flagsWithoutUrl(env), "--database-url", u.href],
          { PGSSLMODE: "verify-full", PGSSLROOTCERT: TEST_SSLROOTCERT },
          env.dir,
        );
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stdout, /host name verified \(sslmode=verify-full\)/);
      },
    );
    await t.step("verify-ca accepts a host name the certificate does not list", async () => {
      // "127.1" is 127.0.0.1 to the resolver, but not a name in the certificate.
      const result = await run(url("verify-ca", { host: "127.1", ca: TEST_SSLROOTCERT }));
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /server certificate verified \(sslmode=verify-ca\)/);
    });
    const dir = await Deno.makeTempDir();
    const failures = [
      {
        name: "verify-full with a wrong CA",
        url: url("verify-full", { ca: await wrongCa(dir) }),
        fix: /fix: the server's certificate is not signed by a CA in sslrootcert/,
      },
      {
        name: "verify-full with a host name not in the certificate",
        url: url("verify-full", { host: "127.1", ca: TEST_SSLROOTCERT }),
        fix: /fix: the server's certificate does not name this host/,
      },
      {
        name: "verify-ca without a CA file",
        url: url("verify-ca", { ca: `${dir}/absent.crt` }),
        fix: /fix: give the CA certificate with sslrootcert=PATH or PGSSLROOTCERT/,
      },
    ];
    for (const failure of failures) {
      await t.step(`${failure.name}: one line, exit 2, a fix, nothing written`, async () => {
        await env.sql.unsafe(`TRUNCATE ${env.schema}.snapshots, ${env.schema}.tracks`);
        const result = await run(failure.url);
        assert.equal(result.code, 2, result.stderr);
        const lines = result.stderr.trim().split("\n");
        assert.equal(lines.length, 2, result.stderr);
        assert.match(lines[0], /^error: /);
        assert.match(lines[1], failure.fix);
        assert.deepEqual(await counts(env), [0, 0]);
      });
    }
    await Deno.remove(dir, { recursive: true });
    await t.step("require works for a TLS-only user, and does not verify", async () => {
      const result = await run(url("require", { user: "mtm_tls" }));
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /encrypted \(TLS\), server certificate not verified/);
    });
    await t.step(
      "require verifies the chain when ~/.postgresql/root.crt exists, as in libpq",
      async () => {
        await Deno.mkdir(`${env.dir}/.postgresql`);
        await Deno.copyFile(TEST_SSLROOTCERT, `${env.dir}/.postgresql/root.crt`);
        try {
          const result = await run(url("require")); // runCliWith's HOME is env.dir
          assert.equal(result.code, 0, result.stderr);
          assert.match(result.stdout, /server certificate verified \(sslmode=require\)/);
        } finally {
          await Deno.remove(`${env.dir}/.postgresql`, { recursive: true });
        }
      },
    );
    await t.step("prefer (the default) connects encrypted", async () => {
      const u = new URL(url("prefer", { user: "mtm_tls" }));
      u.searchParams.delete("sslmode");
      const result = await run(u.href);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /: encrypted \(TLS\), .*\(sslmode=prefer\)/);
    });
    await t.step(
      "allow tries plain text first, then TLS where the server requires it",
      async () => {
        const plain = await run(url("allow"));
        assert.equal(plain.code, 0, plain.stderr);
        assert.match(plain.stdout, /: not encrypted \(sslmode=allow\)/);
        const tls = await run(url("allow", { user: "mtm_tls" }));
        assert.equal(tls.code, 0, tls.stderr);
        assert.match(tls.stdout, /: encrypted \(TLS\), .*\(sslmode=allow\)/);
      },
    );
    await t.step("disable connects in plain text (refused for the TLS-only user)", async () => {
      const plain = await run(url("disable"));
      assert.equal(plain.code, 0, plain.stderr);
      assert.match(plain.stdout, /: not encrypted \(sslmode=disable\)/);
      const refused = await run(url("disable", { user: "mtm_tls" }));
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /no encryption/);
    });
  });
});

testNeeding("a password full of @:/%?# is never printed, whichever way it is written", [
  NO_CREATEROLE,
], async (t) => {
  const role = `mtm_odd_${crypto.randomUUID().slice(0, 8)}`;
  const password = "p@ss@w:rd/%?#x:@";
  const admin = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });
  // PostgreSQL 16+ lets a CREATEROLE user grant its own role only with ADMIN
  // OPTION; the run needs no more than rights on the test's tables.
  await admin.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  try {
    await withTarget(async (env) => {
      await env.sql.unsafe(`GRANT USAGE ON SCHEMA ${env.schema} TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${env.schema} TO ${role}`);
      writeSqlite(env.sqlitePath, [track("a")], [snapshot("a")]);
      const hostPath = `${TEST_URL.host}/${PG.database}`;
      // Everything but @ and : left unencoded where a URL allows it.
      const partly = password.replace(/[/%?#]/g, (c) => encodeURIComponent(c));
      const spellings = {
        "encoded URL": `postgresql://${role}:${encodeURIComponent(password)}@${hostPath}`,
        "unencoded URL": `postgresql://${role}:${partly}@${hostPath}`,
        "?password=": `postgresql://${role}@${hostPath}?password=${encodeURIComponent(password)}`,
        "key=value":
          `host=${PG.host} port=${PG.port} dbname=${PG.database} user=${role} password='${password}'`,
      };
      const leaks = (text: string) =>
        [password, encodeURIComponent(password), partly, "p@ss"].filter((s) => text.includes(s));
      for (const [name, url] of Object.entries(spellings)) {
        await t.step(name, async () => {
          await env.sql.unsafe(`TRUNCATE ${env.schema}.snapshots, ${env.schema}.tracks`);
          const ok = await runCliWith([...flagsWithoutUrl(env), "--verbose"], {
            DATABASE_URL: url,
          }, env.dir);
          assert.equal(ok.code, 0, ok.stderr);
          assert.ok(ok.stdout.includes(`→ ${role}@${TEST_URL.host}`), ok.stdout);
          assert.match(ok.stdout, /Migration committed/, "messages are intact");
          assert.match(ok.stdout, /verifying every row against its source/);
          const json = await runCliWith([...flagsWithoutUrl(env), "--json"], {
            DATABASE_URL: url,
          }, env.dir);
          assert.equal(json.code, 0, json.stderr);
          assert.equal(JSON.parse(json.stdout).connection.sources.password, "DATABASE_URL");
          const wrongDb = url.replace(`/${PG.database}`, "/no_such_db").replace(
            `dbname=${PG.database}`,
            "dbname=no_such_db",
          );
          const failed = await runCliWith(flagsWithoutUrl(env), { DATABASE_URL: wrongDb }, env.dir);
          assert.equal(failed.code, 2, failed.stderr);
          assert.match(failed.stderr, /database "no_such_db" does not exist/);
          const failedJson = await runCliWith([...flagsWithoutUrl(env), "--json"], {
            DATABASE_URL: wrongDb,
          }, env.dir);
          assert.equal(JSON.parse(failedJson.stdout).ok, false);
          for (const result of [ok, json, failed, failedJson]) {
            assert.deepEqual(
              leaks(result.stdout + result.stderr),
              [],
              result.stdout + result.stderr,
            );
          }
        });
      }
      assert.deepEqual(await counts(env), [1, 1]);
    });
  } finally {
    await admin.unsafe(`DROP ROLE ${role}`);
    await admin.end();
  }
});

/** A port nobody listens on right now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Starts PgBouncer in transaction pooling mode in front of the test database. */
async function startPgBouncer() {
  const dir = await Deno.makeTempDir({ prefix: "migrate_pgbouncer_" });
  const port = freePort();
  const quote = (text: string) => `"${text.replaceAll('"', '""')}"`;
  await Deno.writeTextFile(`${dir}/userlist.txt`, `${quote(PG.user)} ${quote(PG.password)}\n`);
  await Deno.writeTextFile(
    `${dir}/pgbouncer.ini`,
    `[databases]
${PG.database} = host=${PG.host} port=${PG.port} dbname=${PG.database}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = plain
auth_file = ${dir}/userlist.txt
pool_mode = transaction
default_pool_size = 2
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
`,
  );
  // PgBouncer refuses to run as root; -u hands it to the postgres user.
  const asRoot = Deno.uid() === 0;
  if (asRoot) {
    await new Deno.Command("chown", { args: ["-R", "postgres", dir] }).output();
  }
  const child = new Deno.Command(PGBOUNCER, {
    args: [...(asRoot ? ["-u", "postgres"] : []), `${dir}/pgbouncer.ini`],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/process up/.test(seen)) {
    const { value, done } = await log.read();
    if (done) throw new Error(`pgbouncer did not start:\n${seen}`);
    seen += value;
  }
  // Keep reading its log so that it never blocks on a full pipe.
  const drained = (async () => {
    while (!(await log.read()).done);
  })();
  return {
    url: `postgresql://${TEST_URL.username}:${TEST_URL.password}@127.0.0.1:${port}/${PG.database}`,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await drained;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

testNeeding("a full migration and a rerun through PgBouncer in transaction pooling mode", [
  NO_PGBOUNCER,
], async () => {
  const bouncer = await startPgBouncer();
  try {
    await withTarget(async (env) => {
      const [tracks, snapshots] = bulkRows(300, 5);
      writeSqlite(env.sqlitePath, tracks, snapshots);
      const flags = [...flagsWithoutUrl(env), "--database-url", bouncer.url];
      const first = await runCliWith(flags, {}, env.dir);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /Migration committed/);
      assert.deepEqual(await counts(env), [300, 1500]);
      const rerun = await runCliWith([...flags, "--json"], {}, env.dir);
      assert.equal(rerun.code, 0, rerun.stderr);
      const report: Report = JSON.parse(rerun.stdout);
      assert.deepEqual(report.tables.map((t) => t.unchanged), [300, 1500]);
      // PgBouncer refuses a wrong password or database with 08P01, not
      // PostgreSQL's codes: the fix must still say what is wrong.
      const url = new URL(bouncer.url);
      url.password = "not-the-password";
      const wrong = await runCliWith(
        [...flagsWithoutUrl(env), "--database-url", url.href],
        {},
        env.dir,
      );
      assert.equal(wrong.code, 2, wrong.stderr);
      assert.match(wrong.stderr, /fix: wrong user name or password/);
      assert.ok(!wrong.stderr.includes("not-the-password"));
      const database = new URL(bouncer.url);
      database.pathname = "/no_such_db";
      const missing = await runCliWith(
        [...flagsWithoutUrl(env), "--database-url", database.href],
        {},
        env.dir,
      );
      assert.equal(missing.code, 2, missing.stderr);
      assert.match(missing.stderr, /fix: create the database first/);
    });
  } finally {
    await bouncer.stop();
  }
});

Deno.test("a one-letter password does not wreck messages", async () => {
  const dir = await Deno.makeTempDir();
  try {
    writeSqlite(`${dir}/app.db`, [track("a")], []);
    const result = await runCliWith(
      ["--sqlite", `${dir}/app.db`, "--json"],
      { DATABASE_URL: "postgresql://u:p@127.0.0.1:1/db" },
      dir,
    );
    assert.equal(result.code, 2, result.stderr);
    assert.match(
      result.stderr,
      /^error: PostgreSQL \(u@127\.0\.0\.1:1\/db, sslmode=prefer\): connect ECONNREFUSED/,
    );
    assert.match(result.stderr, /fix: is PostgreSQL running, and are host and port/);
    assert.equal(JSON.parse(result.stdout).error.kind, "connection");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// Kills: the password printed with a data error (mutation 7d), by --verify-only (7e), or when the
// connection is lost mid-run (7g). Each output path is run once, as text and as --json; the lost
// connection is cut at a known point (the run waits inside its INSERT into snapshots on a lock
// this test holds), as in "a connection lost mid-run rolls back".
Deno.test("the password is absent from every output path: data errors, --verify-only, --json errors, a lost connection", async () => {
  await withTarget(async (env) => {
    const outputs: [string, CliResult][] = [];
    // A data error, as text and as --json.
    writeSqlite(env.sqlitePath, [track("a"), track("bad", { raw_json: "{" })], [snapshot("a")]);
    outputs.push(["data error", await runCli(env.flags)]);
    outputs.push(["data error --json", await runCli([...env.flags, "--json"])]);
    const fixed = new DatabaseSync(env.sqlitePath);
    fixed.exec(`UPDATE tracks SET raw_json = '{}' WHERE track_id = 'bad'`);
    fixed.close();
    outputs.push(["migration", await runCli(env.flags)]);
    // --verify-only that matches, and one that finds a difference.
    outputs.push(["verify-only", await runCli([...env.flags, "--verify-only"])]);
    outputs.push(["verify-only --json", await runCli([...env.flags, "--verify-only", "--json"])]);
    await env.sql.unsafe(`UPDATE ${env.schema}.tracks SET name = 'changed' WHERE track_id = 'a'`);
    outputs.push(["verify-only mismatch", await runCli([...env.flags, "--verify-only"])]);
    outputs.push([
      "verify-only mismatch --json",
      await runCli([...env.flags, "--verify-only", "--json"]),
    ]);
    // A connection lost at a known point: inside the INSERT into snapshots.
    await env.sql.unsafe(`TRUNCATE ${env.schema}.snapshots, ${env.schema}.tracks`);
    for (const json of [false, true]) {
      const gate = await holdSnapshotInserts(env);
      const run = cliCommand(json ? [...env.flags, "--json"] : env.flags).spawn();
      try {
        await env.sql`SELECT pg_terminate_backend(${await gate.waitingPid()})`;
      } finally {
        await gate.release(); // also when waiting failed: the run must not wait forever
      }
      const { code, stdout, stderr } = await run.output();
      const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
      outputs.push([`connection lost${json ? " --json" : ""}`, {
        code,
        stdout: decode(stdout),
        stderr: decode(stderr),
      }]);
      await env.sql.unsafe(`DROP TRIGGER gate ON ${env.schema}.snapshots;
        DROP FUNCTION ${env.schema}.gate()`);
    }
    assert.deepEqual(
      outputs.map(([name, r]) => [name, r.code]),
      [
        ["data error", 1],
        ["data error --json", 1],
        ["migration", 0],
        ["verify-only", 0],
        ["verify-only --json", 0],
        ["verify-only mismatch", 1],
        ["verify-only mismatch --json", 1],
        ["connection lost", 2],
        ["connection lost --json", 2],
      ],
      outputs.map(([name, r]) => `${name}: ${r.stderr}`).join("\n"),
    );
    for (const [name, r] of outputs) {
      assert.ok(r.stdout + r.stderr !== "", `${name}: some output`);
      assert.ok(!(r.stdout + r.stderr).includes(TEST_PASSWORD), `${name}: password printed`);
    }
  });
});
