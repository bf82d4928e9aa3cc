import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "postgresql",
  schema: "./services/catalog/db/schema.ts",
  out: "./services/catalog/migrations",
});
