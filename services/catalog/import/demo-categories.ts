import type { Sql } from "postgres";
import { v7 as uuidv7 } from "uuid";

/** The demo category tree used by the generator and the seed: [slug, name, parent slug]. */
export const DEMO_CATEGORIES: readonly (readonly [string, string, string | null])[] = [
  ["home-kitchen", "Home & Kitchen", null],
  ["cookware", "Cookware", "home-kitchen"],
  ["tableware", "Tableware", "home-kitchen"],
  ["kitchen-appliances", "Kitchen appliances", "home-kitchen"],
  ["furniture", "Furniture", null],
  ["living-room", "Living room", "furniture"],
  ["office-furniture", "Office", "furniture"],
  ["bedroom", "Bedroom", "furniture"],
  ["clothing", "Clothing", null],
  ["jackets", "Jackets", "clothing"],
  ["shirts", "Shirts", "clothing"],
  ["accessories", "Accessories", "clothing"],
  ["sports-outdoors", "Sports & Outdoors", null],
  ["running", "Running", "sports-outdoors"],
  ["running-shoes", "Running shoes", "running"],
  ["camping", "Camping", "sports-outdoors"],
  ["cycling", "Cycling", "sports-outdoors"],
  ["electronics", "Electronics", null],
  ["audio", "Audio", "electronics"],
  ["computers", "Computers", "electronics"],
  ["phones", "Phones", "electronics"],
  ["garden", "Garden", null],
  ["tools", "Tools", "garden"],
  ["plants", "Plants", "garden"],
];

/** Creates the demo categories that do not exist yet (parents first); idempotent. */
export async function ensureCategories(sql: Sql): Promise<Map<string, string>> {
  for (const [slug, name, parent] of DEMO_CATEGORIES) {
    await sql`
      insert into categories (id, slug, name, parent_id)
      values (${uuidv7()}, ${slug}, ${name}, (select id from categories where slug = ${parent}))
      on conflict (slug) do nothing`;
  }
  const rows = await sql<{ slug: string; id: string }[]>`select slug, id from categories`;
  return new Map(rows.map((r) => [r.slug, r.id]));
}
