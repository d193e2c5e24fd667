// Unit tests of connection strings: parsing, resolution and masks, with no
// server. test/connection_test.ts connects with what they resolve.
import assert from "node:assert/strict";
import { maskUrl, resolveConnection } from "./connection_settings.ts";

Deno.test("maskUrl() hides the password and nothing else", () => {
  assert.equal(
    maskUrl("postgresql://u:p%40ss@h:5432/db?sslmode=require"),
    "postgresql://u:***@h:5432/db?sslmode=require",
  );
  assert.equal(maskUrl("postgresql://localhost/db"), "postgresql://localhost/db");
  assert.equal(maskUrl("postgres://user@h/db"), "postgres://user@h/db");
});

Deno.test("maskUrl() parses: unencoded @, ?password= and key=value strings are masked", () => {
  assert.equal(
    maskUrl("postgresql://atuser:p@ss@word@localhost/db"),
    "postgresql://atuser:***@localhost/db",
  );
  assert.equal(
    maskUrl("postgresql://u@h/db?sslmode=require&password=secret&x=1"),
    "postgresql://u@h/db?sslmode=require&password=***&x=1",
  );
  assert.equal(
    maskUrl(String.raw`host=h password='a b\' c' user=u`),
    "host=h password=*** user=u",
  );
  assert.equal(maskUrl("host=h password=abc"), "host=h password=***");
  assert.equal(maskUrl("dbname = 'my db'  password = x"), "dbname='my db' password=***");
  assert.equal(maskUrl("host=h 'oops password=x"), "(a connection string that cannot be parsed)");
  assert.equal(maskUrl("postgresql://h/db?%70assword=x"), "postgresql://h/db?password=***");
});

Deno.test("resolveConnection(): a URL's parts, percent-decoded, then PG* variables, then defaults", () => {
  const url = resolveConnection(
    "postgresql://app%40eu:p%2Fw@db.example.com:6543/my%20db?sslmode=verify-full&application_name=x",
    "DATABASE_URL",
    { PGHOST: "ignored", PGCONNECT_TIMEOUT: "7" },
  );
  assert.deepEqual(
    [url.host, url.port, url.database, url.user, url.password, url.sslmode, url.connectTimeout],
    ["db.example.com", 6543, "my db", "app@eu", "p/w", "verify-full", 7],
  );
  assert.deepEqual([url.sources.host, url.sources.connectTimeout], [
    "DATABASE_URL",
    "PGCONNECT_TIMEOUT",
  ]);

  const pieces = resolveConnection("host=/var/run/postgresql dbname='my db'", "flag", {
    PGUSER: "someone",
    PGPORT: "5433",
  });
  assert.deepEqual(
    [pieces.host, pieces.port, pieces.database, pieces.user, pieces.sources.database],
    ["/var/run/postgresql", 5433, "my db", "someone", "flag"],
  );

  const defaults = resolveConnection(undefined, "DATABASE_URL", {});
  assert.deepEqual([defaults.host, defaults.port, defaults.sslmode], ["localhost", 5432, "prefer"]);
});
