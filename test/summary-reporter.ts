// A test reporter that prints one closing line: "tests: N passed, N failed, N skipped".
import type { TestEvent } from "node:test/reporters";

export default async function* summary(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for await (const event of source) {
    // Count leaf tests only: suites report their own pass/fail too.
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    if (event.data.details.type === "suite") continue;
    if (event.type === "test:fail") failed++;
    else if (event.data.skip || event.data.todo) skipped++;
    else passed++;
  }
  yield `\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`;
}
