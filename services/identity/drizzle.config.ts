import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "postgresql",
  schema: "./services/identity/db/schema.ts",
  out: "./services/identity/migrations",
});
