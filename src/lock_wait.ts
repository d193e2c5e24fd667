/**
 * Waiting for a lock the run needs, out loud: who holds it, since when, how
 * to end the wait, and a limit (--lock-timeout).
 *
 * @module
 */

import type { Options } from "./types.ts";
import { MigrationError } from "./errors.ts";
import type { Tx } from "./connect.ts";

/** Waits shorter than this pass without a word. */
const FIRST_NOTICE_MS = 1_000;

/** While the wait goes on, say so again this often. */
const REPEAT_NOTICE_MS = 5_000;

const LOCK_NOT_AVAILABLE = "55P03";

/** The application_name migrate.ts connects with. */
const MIGRATION_APP = "migrate.ts";

/** A lock the run waits for: what to call it, how to take it, and who can hold it. */
export interface WantedLock {
  /** For messages: "the advisory lock of migrations into schema public". */
  what: string;
  /** Takes the lock, waiting at most the transaction's lock_timeout. */
  take: (sp: Tx) => Promise<unknown>;
  /**
   * SQL over pg_locks `l`: the granted locks that keep this one from being
   * granted. A session cannot ask pg_blocking_pids about itself while it
   * waits, and between two waits it waits for nothing.
   */
  heldBy: string;
  /** Whether only another migration can hold it; otherwise a holder is one if it says so (application_name). */
  onlyMigrations?: boolean;
}

/** A session that holds what the run waits for, from pg_stat_activity. */
interface Holder {
  pid: number;
  application_name: string;
  client: string;
  state: string;
  /** "in its transaction since …", or "connected since …" outside one. */
  since: string;
  seconds: number;
  migration: boolean;
  /** Sessions the holder itself waits for (pg_blocking_pids): the cause when it is a migration. */
  blockers: Holder[];
}

/**
 * Takes a lock, waiting in slices (lock_timeout in a savepoint, the
 * previous value restored once granted): between slices it looks up who
 * holds the lock and says so, after a moment and then every few seconds;
 * after --lock-timeout seconds it gives up with an error naming the holder.
 */
export async function waitForLock(
  tx: Tx,
  lock: WantedLock,
  options: Pick<Options, "lockTimeout">,
  step: (line: string) => void,
): Promise<void> {
  const started = performance.now();
  const limitMs = options.lockTimeout === undefined ? Infinity : options.lockTimeout * 1000;
  let noticeAt = FIRST_NOTICE_MS;
  let notices = 0;
  while (true) {
    const waited = performance.now() - started;
    const slice = Math.max(1, Math.ceil(Math.min(noticeAt, limitMs) - waited));
    if (await tryFor(tx, lock, slice)) return;
    const holders = await holdersOf(tx, lock);
    const waitedMs = performance.now() - started;
    if (waitedMs >= limitMs) {
      throw new MigrationError(
        "lock",
        `gave up after waiting ${options.lockTimeout} s for ${lock.what}, ${
          describeHolders(holders)
        }; nothing was written`,
        `${
          holders.length > 0 ? `${fixFor(holders)}, then rerun` : "rerun"
        }; or raise --lock-timeout (without it the run waits as long as it takes)`,
      );
    }
    const seconds = Math.round(waitedMs / 1000);
    step(
      `${notices++ === 0 ? "waiting" : `still waiting (${seconds} s)`} for ${lock.what}, ${
        describeHolders(holders)
      }; fix: ${fixFor(holders)}`,
    );
    noticeAt += REPEAT_NOTICE_MS;
  }
}

/**
 * One slice of the wait: true if the lock was granted within `ms`. In
 * postgres.js's savepoint(): a failed statement outside one fails the whole
 * transaction, even when caught.
 */
async function tryFor(tx: Tx, lock: WantedLock, ms: number): Promise<boolean> {
  try {
    await tx.savepoint(async (sp) => {
      const [{ previous }] = await sp`
        SELECT current_setting('lock_timeout') AS previous,
               set_config('lock_timeout', ${`${ms}ms`}, true)`;
      await lock.take(sp);
      await sp`SELECT set_config('lock_timeout', ${previous}, true)`;
    });
    return true;
  } catch (error) {
    if ((error as { code?: string })?.code !== LOCK_NOT_AVAILABLE) throw error;
    return false;
  }
}

const ACTIVITY = (pids: string) => `
  SELECT a.pid, coalesce(nullif(a.application_name, ''), '(none)') AS application_name,
         coalesce(host(a.client_addr), 'local socket') AS client,
         coalesce(a.state, 'unknown') AS state,
         CASE WHEN a.xact_start IS NULL THEN 'connected' ELSE 'in its transaction' END
           || ' since ' || to_char(coalesce(a.xact_start, a.backend_start) AT TIME ZONE 'UTC',
                                   'YYYY-MM-DD HH24:MI:SS "UTC"') AS since,
         round(extract(epoch FROM clock_timestamp() - coalesce(a.xact_start, a.backend_start)))::int
           AS seconds,
         a.application_name = '${MIGRATION_APP}' AS migration
  FROM pg_stat_activity a WHERE a.pid IN (${pids}) ORDER BY a.pid`;

/** Who holds the lock now, and, for a holder that waits itself, for whom. */
async function holdersOf(tx: Tx, lock: WantedLock): Promise<Holder[]> {
  const holders = await tx.unsafe(ACTIVITY(
    `SELECT l.pid FROM pg_locks l WHERE l.granted AND l.pid <> pg_backend_pid() AND (${lock.heldBy})`,
  )) as unknown as Holder[];
  for (const holder of holders) {
    if (lock.onlyMigrations) holder.migration = true;
    holder.blockers = await tx.unsafe(
      ACTIVITY(`SELECT unnest(pg_blocking_pids($1::int))`),
      [holder.pid],
    ) as unknown as Holder[];
  }
  return holders;
}

function describeHolder(h: Holder): string {
  return `pid ${h.pid} (application_name ${h.application_name}, client ${h.client}, ${h.state}, ${h.since}, ${h.seconds} s)`;
}

/** Another migration and the app's sessions, told apart; the migration's own wait named. */
function describeHolders(holders: Holder[]): string {
  if (holders.length === 0) return "held by a session that has just let go";
  return holders.map((h) => {
    if (!h.migration) return `held by session ${describeHolder(h)}`;
    const behind = h.blockers.length === 0
      ? ""
      : `, which itself waits for session ${h.blockers.map(describeHolder).join(", ")}`;
    return `held by another migration, ${describeHolder(h)}${behind}`;
  }).join("; ");
}

/** Finish or end the sessions at the root of the wait. */
function fixFor(holders: Holder[]): string {
  const roots = holders.flatMap((h) => h.migration && h.blockers.length > 0 ? h.blockers : [h]);
  if (roots.length === 0) return "none needed: the lock is free now";
  const pids = [...new Set(roots.map((h) => h.pid))];
  const whose = roots.every((h) => h.migration)
    ? "let the other migration finish"
    : "finish that session's transaction (COMMIT or ROLLBACK)";
  return `${whose}, or end it: ${
    pids.map((pid) => `SELECT pg_terminate_backend(${pid})`).join("; ")
  }`;
}

/** The lock modes that conflict with SHARE ROW EXCLUSIVE (PostgreSQL's table-level lock table). */
const CONFLICT_SHARE_ROW_EXCLUSIVE = [
  "RowExclusiveLock",
  "ShareUpdateExclusiveLock",
  "ShareLock",
  "ShareRowExclusiveLock",
  "ExclusiveLock",
  "AccessExclusiveLock",
];

/** The granted table locks that keep LOCK TABLE … IN SHARE ROW EXCLUSIVE MODE waiting. */
export function conflictingTableLocks(qualified: string[]): string {
  const tables = qualified.map((t) => `'${t.replaceAll("'", "''")}'::regclass`).join(", ");
  const modes = CONFLICT_SHARE_ROW_EXCLUSIVE.map((m) => `'${m}'`).join(", ");
  return `l.locktype = 'relation' AND l.database = (SELECT oid FROM pg_database
    WHERE datname = current_database()) AND l.relation IN (${tables}) AND l.mode IN (${modes})`;
}

/** The granted advisory lock on a bigint key: pg_locks shows its high and low 32 bits. */
export function advisoryLockOn(key: bigint): string {
  const high = (key >> 32n) & 0xffffffffn;
  const low = key & 0xffffffffn;
  return `l.locktype = 'advisory' AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database
    WHERE datname = current_database()) AND l.classid = ${high} AND l.objid = ${low}`;
}
