import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { retryDelayMs } from "./backoff.js";
import {
  checkWebhookTarget,
  isPublicAddress,
  parseWebhookUrl,
  WebhookTargetError,
} from "./ssrf-guard.js";
import { sendWebhook } from "./webhook-sender.js";

describe("SSRF guard", () => {
  it("classifies private, loopback, link-local and unique-local addresses as non-public", () => {
    for (const address of [
      "10.1.2.3",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "127.0.0.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "::1",
      "::",
      "fe80::1",
      "fd12:3456::1",
      "::ffff:127.0.0.1",
      "::ffff:a9fe:a9fe",
      "64:ff9b::10.0.0.1",
      "ff02::1",
    ]) {
      expect(isPublicAddress(address), address).toBe(false);
    }
    for (const address of ["8.8.8.8", "1.1.1.1", "172.32.0.1", "2606:4700:4700::1111"]) {
      expect(isPublicAddress(address), address).toBe(true);
    }
  });

  it("refuses credentials, non-http schemes, fragments and overlong URLs before any DNS", () => {
    for (const url of [
      "https://user:pw@example.com/hook",
      "https://user@example.com/hook",
      "ftp://example.com/hook",
      "file:///etc/passwd",
      "gopher://example.com",
      "javascript:alert(1)",
      "/relative",
      "https://example.com/hook#frag",
      `https://example.com/${"a".repeat(2100)}`,
    ]) {
      expect(() => parseWebhookUrl(url), url).toThrow(WebhookTargetError);
    }
    expect(parseWebhookUrl("https://example.com/hook?x=1").hostname).toBe("example.com");
  });

  it("refuses hosts resolving to private addresses unless allow-listed", async () => {
    const none = { allowedHosts: [] };
    for (const url of [
      "http://127.0.0.1:8080/x",
      "http://[::1]/x",
      "http://localhost/x",
      "http://10.0.0.7/x",
    ]) {
      await expect(checkWebhookTarget(new URL(url), none), url).rejects.toThrow(WebhookTargetError);
    }
    await expect(
      checkWebhookTarget(new URL("http://127.0.0.1:8080/x"), { allowedHosts: ["127.0.0.1"] }),
    ).resolves.toBeUndefined();
    await expect(checkWebhookTarget(new URL("https://8.8.8.8/x"), none)).resolves.toBeUndefined();
  });

  it("does not connect to a non-allow-listed private target at send time, nor follow redirects", async () => {
    let hits = 0;
    const server = http.createServer((req, res) => {
      hits++;
      if (req.url === "/redirect") {
        res.writeHead(302, { location: "http://127.0.0.1/elsewhere" });
        res.end();
        return;
      }
      res.writeHead(200);
      res.end("x".repeat(10_000));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const options = { timeoutMs: 2_000, maxResponseBytes: 100 };
    try {
      const refused = await sendWebhook(
        { url: `http://127.0.0.1:${port}/ok`, headers: {}, body: "{}" },
        { ...options, allowedHosts: [] },
      );
      expect(refused).toMatchObject({ status: 0, error: "target not allowed" });
      const viaName = await sendWebhook(
        { url: `http://localhost:${port}/ok`, headers: {}, body: "{}" },
        { ...options, allowedHosts: [] },
      );
      expect(viaName).toMatchObject({ status: 0, error: "target not allowed" });
      expect(hits).toBe(0);
      const redirect = await sendWebhook(
        { url: `http://127.0.0.1:${port}/redirect`, headers: {}, body: "{}" },
        { ...options, allowedHosts: ["127.0.0.1"] },
      );
      expect(redirect.status).toBe(302);
      expect(hits).toBe(1);
      // A large response is cut at the limit, not buffered.
      const big = await sendWebhook(
        { url: `http://127.0.0.1:${port}/ok`, headers: {}, body: "{}" },
        { ...options, allowedHosts: ["127.0.0.1"] },
      );
      expect(big.status).toBe(200);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("bounds the time of one attempt", async () => {
    const server = http.createServer(() => {
      /* never answers */
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const result = await sendWebhook(
        { url: `http://127.0.0.1:${port}/slow`, headers: {}, body: "{}" },
        { timeoutMs: 200, maxResponseBytes: 100, allowedHosts: ["127.0.0.1"] },
      );
      expect(result).toMatchObject({ status: 0, error: "timeout" });
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("retry backoff", () => {
  it("grows exponentially with bounded jitter and a cap", () => {
    expect(retryDelayMs(1, 1000, 60_000, () => 0)).toBe(500);
    expect(retryDelayMs(1, 1000, 60_000, () => 1)).toBe(1000);
    expect(retryDelayMs(4, 1000, 60_000, () => 0.5)).toBe(6000);
    expect(retryDelayMs(30, 1000, 60_000, () => 1)).toBe(60_000);
    expect(retryDelayMs(30, 1000, 60_000, () => 0)).toBe(30_000);
  });
});
