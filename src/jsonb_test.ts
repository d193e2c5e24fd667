import assert from "node:assert/strict";
import { explainJsonb, isJsonbText } from "./jsonb.ts";

Deno.test("explainJsonb says why and where JSONB refuses a payload", () => {
  const cases: [string, string][] = [
    [
      `{"name": "Heat Days`,
      "ends early: the text stops after 19 characters, inside a string (cut off?)",
    ],
    [
      `{"album": {"name": "x"}`,
      "ends early: the text stops after 23 characters, before it is closed (cut off?)",
    ],
    [`{"a": 1,}`, "expected double-quoted property name at character 9"],
    [`{"a": 1} x`, "unexpected non-whitespace character after JSON at character 10"],
    [`not json`, "unexpected character 'o' where a JSON value should be"],
    [`{"a": "\\u0000"}`, "\\u0000 at character 8 is valid JSON, but JSONB cannot store it"],
    [`["\\ud800"]`, "\\ud800 at character 3 is valid JSON, but JSONB cannot store it"],
    [`[1e999999999999]`, "valid JSON, but a number is beyond the range of PostgreSQL's numeric"],
  ];
  for (const [text, why] of cases) {
    assert.equal(isJsonbText(text), false, text);
    assert.equal(explainJsonb(text), why, text);
  }
  assert.equal(isJsonbText(`["\\ud83d\\ude00"]`), true, "a surrogate pair is fine");
});
