import assert from "node:assert/strict";
import { explainFailure } from "./compile.ts";

Deno.test("deno task compile says what is missing when denort cannot be downloaded", () => {
  const offline = `error: Writing deno compile executable to temporary file 'dist/migrate.tmp-1'

Caused by:
    0: Setting up base binary.
    1: error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): client error (Connect): dns error
    2: client error (Connect)
    3: dns error: failed to lookup address information: Name or service not known

Stack backtrace:
   0: <unknown>`;
  const message = explainFailure(offline)!;
  assert.match(
    message,
    /^error: deno compile needs Deno's runtime for the binary \(denort\), which it downloads from https:\/\/dl\.deno\.land\/release\/v2\.9\.6\/denort-x86_64-unknown-linux-gnu\.zip, and that download failed \(dns error: failed to lookup address information: Name or service not known\)\nfix: .*DENORT_BIN=/,
  );
  assert.doesNotMatch(message, /backtrace|<unknown>/);
  assert.equal(
    explainFailure("error: Module not found"),
    undefined,
    "other errors print as they are",
  );
});
