/**
 * Child process for bench/identity-signin.ts: runs the identity service in
 * isolation (own schema, Redis prefix, events domain) and reports its port and
 * CPU usage over IPC.
 */
import { startIdentity } from "../services/identity/testing/identity-harness.js";

const t = await startIdentity({
  // Benchmarks measure hashing and serving, not the throttle.
  IDENTITY_SIGNIN_MAX_FAILURES_PER_ACCOUNT: "1000",
  IDENTITY_SIGNIN_MAX_FAILURES_PER_ADDRESS: "100000",
  IDENTITY_ARGON2_MAX_PENDING: "10000",
});
process.on("message", async (m: { cmd: string }) => {
  if (m.cmd === "cpu") process.send!({ cpu: process.cpuUsage() });
  if (m.cmd === "stop") {
    await t.stop();
    process.exit(0);
  }
});
process.send!({ url: t.url, env: t.env });
