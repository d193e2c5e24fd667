// Deterministic, realistic Music Time Machine data sets for the benchmark:
// Spotify-like track objects (~4 KB of raw_json each) and daily top-50
// snapshots for the three time ranges, in the app's SQLite schema.
//
//   deno run -A tools/generate.ts medium bench/data/medium.db
import { resolve } from "node:path";
import { DatabaseSync } from "node:sqlite";

/** Data set sizes: tracks and snapshots (demo is the one `deno task demo` loads). */
export const SIZES = {
  demo: { tracks: 300, snapshots: 3_150 }, // three weeks of daily top-50s
  small: { tracks: 2_000, snapshots: 30_000 },
  medium: { tracks: 20_000, snapshots: 300_000 },
  large: { tracks: 100_000, snapshots: 1_500_000 },
} as const;

export type Size = keyof typeof SIZES;

const TIME_RANGES = ["short_term", "medium_term", "long_term"] as const;
const TOP = 50;
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const MARKETS = ("AD AE AG AL AM AO AR AT AU AZ BA BB BD BE BF BG BH BI BJ BN BO BR BS BT BW BY " +
  "BZ CA CD CG CH CI CL CM CO CR CV CW CY CZ DE DJ DK DM DO DZ EC EE EG ES ET FI FJ FM FR GA GB " +
  "GD GE GH GM GN GQ GR GT GW GY HK HN HR HT HU ID IE IL IN IQ IS IT JM JO JP KE KG KH KI KM KN " +
  "KR KW KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MG MH MK ML MN MO MR MT MU MV MW MX MY " +
  "MZ NA NE NG NI NL NO NP NR NZ OM PA PE PG PH PK PL PR PS PT PW PY QA RO RS RW SA SB SC SE SG " +
  "SI SK SL SM SN SR ST SV SZ TD TG TH TJ TL TN TO TR TT TV TW TZ UA UG US UY UZ VC VE VN VU WS " +
  "XK ZA ZM ZW").split(" ");
const WORDS = ("love night heart dream fire light summer rain blue gold wild run home sky river " +
  "dance shadow echo neon midnight ocean storm velvet glass electric silver paper ghost city")
  .split(" ");

/** mulberry32: small, fast, deterministic. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function spotifyId(rand: () => number): string {
  let id = "";
  for (let i = 0; i < 22; i++) id += BASE62[Math.floor(rand() * 62)];
  return id;
}

function title(rand: () => number, words: number): string {
  const picked: string[] = [];
  for (let i = 0; i < words; i++) {
    const w = WORDS[Math.floor(rand() * WORDS.length)];
    picked.push(w[0].toUpperCase() + w.slice(1));
  }
  return picked.join(" ");
}

function artist(rand: () => number) {
  const id = spotifyId(rand);
  return {
    external_urls: { spotify: `https://open.spotify.com/artist/${id}` },
    href: `https://api.spotify.com/v1/artists/${id}`,
    id,
    name: title(rand, 1 + Math.floor(rand() * 2)),
    type: "artist",
    uri: `spotify:artist:${id}`,
  };
}

function markets(rand: () => number): string[] {
  return MARKETS.filter(() => rand() < 0.93);
}

/** A Spotify Web API track object, as the app caches it. */
function trackObject(rand: () => number, id: string) {
  const albumId = spotifyId(rand);
  const artists = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => artist(rand));
  const year = 1960 + Math.floor(rand() * 65);
  const month = String(1 + Math.floor(rand() * 12)).padStart(2, "0");
  const day = String(1 + Math.floor(rand() * 28)).padStart(2, "0");
  const image = (size: number) => ({
    height: size,
    url: `https://i.scdn.co/image/ab67616d0000${size}${spotifyId(rand).toLowerCase()}`,
    width: size,
  });
  return {
    album: {
      album_type: rand() < 0.7 ? "album" : "single",
      artists: artists.slice(0, 1),
      available_markets: markets(rand),
      external_urls: { spotify: `https://open.spotify.com/album/${albumId}` },
      href: `https://api.spotify.com/v1/albums/${albumId}`,
      id: albumId,
      images: [image(640), image(300), image(64)],
      name: title(rand, 1 + Math.floor(rand() * 4)),
      release_date: `${year}-${month}-${day}`,
      release_date_precision: "day",
      total_tracks: 1 + Math.floor(rand() * 20),
      type: "album",
      uri: `spotify:album:${albumId}`,
    },
    artists,
    available_markets: markets(rand),
    disc_number: 1,
    duration_ms: 90_000 + Math.floor(rand() * 300_000),
    explicit: rand() < 0.2,
    external_ids: { isrc: `US${spotifyId(rand).slice(0, 10).toUpperCase()}` },
    external_urls: { spotify: `https://open.spotify.com/track/${id}` },
    href: `https://api.spotify.com/v1/tracks/${id}`,
    id,
    is_local: false,
    name: title(rand, 1 + Math.floor(rand() * 5)),
    popularity: Math.floor(rand() * 100),
    preview_url: `https://p.scdn.co/mp3-preview/${spotifyId(rand).toLowerCase()}`,
    track_number: 1 + Math.floor(rand() * 15),
    type: "track",
    uri: `spotify:track:${id}`,
  };
}

/** Writes the data set to a new SQLite file at `path`; refuses if the file exists. */
export function generate(size: Size, path: string): void {
  const { tracks, snapshots } = SIZES[size];
  const rand = random(20240101);
  // Never overwrite: the path may be someone's real app database.
  const exists = (() => {
    try {
      Deno.statSync(path);
      return true;
    } catch {
      return false;
    }
  })();
  if (exists) throw new Error(`${path} already exists; not overwriting it`);
  const db = new DatabaseSync(path);
  db.exec(`
    PRAGMA journal_mode = WAL;
    CREATE TABLE tracks (track_id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL,
      artist_name TEXT NOT NULL, album_name TEXT, duration_ms INTEGER, spotify_url TEXT,
      raw_json TEXT, created_at TEXT DEFAULT CURRENT_TIMESTAMP);
    CREATE TABLE snapshots (track_id TEXT NOT NULL,
      snapshot_date TEXT NOT NULL, time_range TEXT NOT NULL, rank INTEGER NOT NULL,
      PRIMARY KEY (track_id, snapshot_date, time_range));
    BEGIN;
  `);
  const insertTrack = db.prepare(
    `INSERT INTO tracks (track_id, name, artist_name, album_name, duration_ms, spotify_url, raw_json)
     VALUES (?, ?, ?, ?, ?, ?, ?)`,
  );
  const ids: string[] = [];
  for (let i = 0; i < tracks; i++) {
    const id = spotifyId(rand);
    const t = trackObject(rand, id);
    ids.push(id);
    insertTrack.run(
      id,
      t.name,
      t.artists.map((a) => a.name).join(", "),
      t.album.name,
      t.duration_ms,
      t.external_urls.spotify,
      JSON.stringify(t),
    );
  }
  const insertSnapshot = db.prepare(
    "INSERT INTO snapshots (track_id, snapshot_date, time_range, rank) VALUES (?, ?, ?, ?)",
  );
  const days = Math.ceil(snapshots / (TOP * TIME_RANGES.length));
  const first = Date.UTC(2024, 0, 1) - days * 86_400_000;
  let written = 0;
  for (let d = 0; d < days && written < snapshots; d++) {
    const date = new Date(first + d * 86_400_000).toISOString().slice(0, 10);
    for (const range of TIME_RANGES) {
      const chosen = new Set<string>();
      while (chosen.size < TOP) chosen.add(ids[Math.floor(rand() * ids.length)]);
      let rank = 1;
      for (const id of chosen) {
        if (written++ >= snapshots) break;
        insertSnapshot.run(id, date, range, rank++);
      }
    }
  }
  db.exec("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);");
  db.close();
}

if (import.meta.main) {
  const [size, given] = Deno.args;
  // A relative path means the folder the user ran deno task from.
  const path = given && resolve(Deno.env.get("INIT_CWD") || Deno.cwd(), given);
  if (!(size in SIZES) || !path) {
    console.error("usage: deno run -A tools/generate.ts demo|small|medium|large PATH");
    Deno.exit(2);
  }
  const started = performance.now();
  try {
    generate(size as Size, path);
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    Deno.exit(1);
  }
  console.log(
    `${path}: ${size} ${JSON.stringify(SIZES[size as Size])} in ${
      ((performance.now() - started) / 1000).toFixed(1)
    }s`,
  );
}
