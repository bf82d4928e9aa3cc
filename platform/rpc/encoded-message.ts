import { Code, ConnectError } from "@connectrpc/connect";

/**
 * The bytes a unary response's message arrived as, kept by a transport that
 * decodes lazily (platform/clients/connect-http1-transport.ts), so a caller
 * that only re-encodes the message — the REST transcoder writing JSON — can
 * skip decoding it (platform/transcoder/binary-json.ts).
 *
 * A symbol-keyed property set when the response is built, not a WeakMap: a
 * WeakMap entry per call showed up at 1% of the edge's CPU (ephemeron work in
 * every scavenge). Object spread copies symbol keys: a wrapper that replaces a
 * response's `message` must drop this property, or callers would read the
 * bytes of the message it replaced.
 */
export const ENCODED_MESSAGE = Symbol("commerce-mesh.encodedMessage");

/** The message's binary encoding when the transport kept it, else undefined. */
export function encodedMessageOf(response: object): Uint8Array | undefined {
  return (response as { [ENCODED_MESSAGE]?: Uint8Array })[ENCODED_MESSAGE];
}

/** What a caller gets for upstream bytes that do not decode as the method's output. */
export function undecodableResponse(cause: unknown): ConnectError {
  return new ConnectError(
    "protocol error: undecodable response",
    Code.Internal,
    undefined,
    undefined,
    cause,
  );
}
