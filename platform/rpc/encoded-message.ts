/**
 * The bytes a unary response's message arrived as, kept by a transport that
 * decodes lazily (platform/clients/connect-http1-transport.ts), so a caller
 * that only re-encodes the message — the REST transcoder writing JSON — can
 * skip decoding it (platform/transcoder/binary-json.ts).
 */
const encodedMessages = new WeakMap<object, Uint8Array>();

export function attachEncodedMessage(response: object, bytes: Uint8Array): void {
  encodedMessages.set(response, bytes);
}

/** The message's binary encoding when the transport kept it, else undefined. */
export function encodedMessageOf(response: object): Uint8Array | undefined {
  return encodedMessages.get(response);
}
