// Writes services/edge/api-comments.json: the doc comments of proto/, which
// the OpenAPI document uses as descriptions. protoc-gen-es strips source info
// from the descriptors it embeds, so they are extracted here, at build time,
// from a buf image (which keeps source info). Run after changing a .proto:
//   npm run edge:comments
// api-comments.test.ts fails when the committed file is stale.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { commentsFromDescriptorSet } from "../../platform/transcoder/source-comments.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const COMMENTS_FILE = fileURLToPath(new URL("./api-comments.json", import.meta.url));

/** The comments as the current protos define them, serialised like the committed file. */
export function buildApiComments(): string {
  const dir = mkdtempSync(join(tmpdir(), "edge-comments-"));
  try {
    const image = join(dir, "image.binpb");
    execFileSync(
      join(ROOT, "node_modules/.bin/buf"),
      ["build", "proto", "--exclude-imports", "-o", image],
      {
        cwd: ROOT,
        stdio: ["ignore", "ignore", "inherit"],
      },
    );
    return `${JSON.stringify(commentsFromDescriptorSet(readFileSync(image)), null, 2)}\n`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(COMMENTS_FILE, buildApiComments());
  console.log(`wrote ${COMMENTS_FILE}`);
}
