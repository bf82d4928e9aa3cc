import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { checkFile, checkTree, importsOf } from "./import-boundaries.js";

const root = fileURLToPath(new URL("..", import.meta.url));

describe("import boundaries", () => {
  it("holds for the whole tree", () => {
    const violations = checkTree(root);
    expect(violations, JSON.stringify(violations, null, 2)).toEqual([]);
  });

  it("catches a service importing another service", () => {
    const file = join(root, "services/orders/handlers.ts");
    const source = `import { x } from "../catalog/repository.js";\nimport { y } from "../../platform/db/postgres.js";`;
    const violations = checkFile(root, file, source);
    expect(violations).toHaveLength(1);
    expect(violations[0]?.reason).toContain('imports service "catalog"');
  });

  it("catches a service importing outside platform/ and gen/", () => {
    const file = join(root, "services/orders/main.ts");
    const violations = checkFile(root, file, `export * from "../../bench/rpc-overhead.js";`);
    expect(violations).toHaveLength(1);
  });

  it("catches platform/ importing a service, including dynamic imports", () => {
    const file = join(root, "platform/server/x.ts");
    const violations = checkFile(
      root,
      file,
      `const m = await import("../../services/orders/main.js");`,
    );
    expect(violations).toHaveLength(1);
  });

  it("parses the import forms we use", () => {
    expect(
      importsOf(
        `import a from "./a.js";\nimport type { B } from "./b.js";\nexport { c } from "./c.js";\nimport "./d.js";\nimport {\n  e,\n} from "./e.js";`,
      ),
    ).toEqual(["./a.js", "./b.js", "./c.js", "./d.js", "./e.js"]);
  });
});
