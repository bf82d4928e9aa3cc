import { ConfigError } from "../../platform/config/env.js";
import { runService } from "../../platform/service/run-service.js";
import { createIdentityDefinition } from "./service.js";

try {
  await runService(createIdentityDefinition());
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`identity: ${error.message}\n`);
  process.exit(1);
}
