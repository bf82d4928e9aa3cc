import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "postgresql",
  schema: "./services/orders/db/schema.ts",
  out: "./services/orders/migrations",
});
