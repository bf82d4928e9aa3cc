import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import {
  Color,
  type TranscodeFixtureService,
} from "../../../gen/platform/testing/v1/transcode_fixture_pb.js";

/**
 * The fixture service behind the transcoder and edge tests. Most handlers
 * echo the request they received so tests can assert the mapping exactly.
 */
export function createFixtureService(): ServiceImpl<typeof TranscodeFixtureService> {
  return {
    getItem: (req) => ({
      echo: req,
      item: { id: req.id, displayName: `Item ${req.id}`, count: 5n, color: Color.RED },
    }),
    getSpecialItem: () => ({ kind: "special" }),
    listItems: (req) => ({ echo: req }),
    createItem: (req) => ({ echo: req }),
    updateItem: (req) => ({ echo: req }),
    replaceItem: (req) => ({ echo: req }),
    deleteItem: (req) => ({ echo: req }),
    archiveItem: (req) => ({ echo: req }),
    lockItem: (req) => ({ echo: req }),
    getItemDetails: (req) =>
      req.id === "empty"
        ? { etag: "e0" }
        : { item: { id: req.id, displayName: "detailed", tags: ["a"] }, etag: "e1" },
    getShelfBook: (req) => ({ echo: req }),
    getFile: (req) => ({ echo: req }),
    statFile: (req) => ({ echo: req }),
    getPart: (req) => ({ echo: req }),
    getBook: (req) => ({ echo: req }),
    getRef: (req) => ({ echo: req }),
    echoValues: (req) => ({ echo: req }),
    failWith(req) {
      if (req.code === Code.Internal) throw new Error("secret database password in message");
      throw new ConnectError("fixture failure", req.code as Code, undefined, [
        {
          desc: BadRequestSchema,
          value: { fieldViolations: [{ field: "code", description: "requested failure" }] },
        },
        { desc: ErrorInfoSchema, value: { reason: "FIXTURE", domain: "test" } },
      ]);
    },
    async *watchItem(req, context: HandlerContext) {
      if (req.id === "missing") throw new ConnectError("item not found", Code.NotFound);
      const callerAuthorization = context.requestHeader.get("authorization") ?? "";
      const count = req.count === 0 ? 3 : req.count;
      if (count < 0) {
        // Open-ended: one event, then wait until the client goes away.
        yield { event: { sequence: req.afterSequence + 1n, itemId: req.id } };
        await new Promise<void>((resolve) => {
          if (context.signal.aborted) return resolve();
          context.signal.addEventListener("abort", () => resolve(), { once: true });
        });
        return;
      }
      for (let i = 1; i <= count; i++) {
        yield {
          event: { sequence: req.afterSequence + BigInt(i), itemId: req.id },
          callerAuthorization,
        };
      }
      if (req.failCode !== 0) throw new ConnectError("watch failed", req.failCode as Code);
    },
    whoAmI(_req, context: HandlerContext) {
      const caller: Record<string, string> = {};
      context.requestHeader.forEach((value, key) => {
        if (key === "authorization" || key.startsWith("x-")) caller[key] = value;
      });
      return { caller };
    },
    adminPing: () => ({ reply: "pong" }),
  };
}
