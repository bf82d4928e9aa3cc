import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { buildApiComments, COMMENTS_FILE } from "./generate-api-comments.js";

describe("api-comments.json", () => {
  it("matches the doc comments of the current protos (run npm run edge:comments)", () => {
    const committed = readFileSync(COMMENTS_FILE, "utf8");
    expect(committed).toBe(buildApiComments());
    const comments = JSON.parse(committed) as Record<string, string>;
    expect(comments["commerce.catalog.v1.CatalogService.GetProduct"]).toMatch(/\w/);
    expect(comments["commerce.orders.v1.WatchOrderRequest.after_sequence"]).toMatch(/sequence/);
  });
});
