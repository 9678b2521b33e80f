/** Each test file ends by checking that every response it received is what /openapi.json documents. */
import { afterAll, expect } from "vitest";
import { conformance } from "./helpers.js";

afterAll(async () => {
  const c = await conformance();
  console.log(`conformance: ${c.checked} responses checked, ${c.violations.length} outside the document`);
  expect(c.violations, "responses that /openapi.json does not describe").toEqual([]);
});
