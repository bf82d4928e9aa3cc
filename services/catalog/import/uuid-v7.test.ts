import { describe, expect, it } from "vitest";
import { uuidV7 } from "./uuid-v7.js";

describe("uuidV7", () => {
  it("has the RFC 9562 v7 layout with the given millisecond timestamp", () => {
    const ms = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
    const id = uuidV7(ms);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(Number.parseInt(id.replace(/-/g, "").slice(0, 12), 16)).toBe(ms);
    expect(
      Number.parseInt(
        uuidV7(ms + 1)
          .replace(/-/g, "")
          .slice(0, 12),
        16,
      ),
    ).toBe(ms + 1);
  });

  it("does not repeat within one millisecond", () => {
    const ms = Date.now();
    const ids = new Set(Array.from({ length: 10_000 }, () => uuidV7(ms)));
    expect(ids.size).toBe(10_000);
  });
});
