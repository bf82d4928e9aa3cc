import http from "node:http";

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** Parsed body, or undefined when it is not JSON. */
  // biome-ignore lint/suspicious/noExplicitAny: tests probe JSON bodies structurally
  json: any;
}

/**
 * One HTTP/1.1 request with the path sent exactly as given (fetch and URL
 * normalise paths, which hides the percent-encoding cases under test).
 */
export function rawRequest(
  port: number,
  options: {
    method?: string;
    path: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    host?: string;
  },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const body = options.body;
    const headers: Record<string, string | number> = { ...options.headers };
    if (body !== undefined && headers["content-length"] === undefined) {
      headers["content-length"] = Buffer.byteLength(body);
    }
    if (body !== undefined && headers["content-type"] === undefined) {
      headers["content-type"] = "application/json";
    }
    const req = http.request(
      {
        host: options.host ?? "127.0.0.1",
        port,
        method: options.method ?? "GET",
        path: options.path,
        headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

/** Parses a text/event-stream body into events. */
export function parseSse(text: string): { event: string; id?: string; data: string }[] {
  const events: { event: string; id?: string; data: string }[] = [];
  for (const block of text.split("\n\n")) {
    const lines = block.split("\n").filter((l) => l !== "" && !l.startsWith(":"));
    if (lines.length === 0) continue;
    let event = "message";
    let id: string | undefined;
    const data: string[] = [];
    for (const line of lines) {
      const colon = line.indexOf(":");
      const field = line.slice(0, colon);
      const value = line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "id") id = value;
      else if (field === "data") data.push(value);
    }
    events.push(
      id === undefined ? { event, data: data.join("\n") } : { event, id, data: data.join("\n") },
    );
  }
  return events;
}
