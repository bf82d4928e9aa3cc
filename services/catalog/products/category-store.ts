import { create } from "@bufbuild/protobuf";
import type { Sql, TransactionSql } from "postgres";
import { type Category, CategorySchema } from "../../../gen/commerce/catalog/v1/category_pb.js";
import {
  AlreadyExistsError,
  InvalidArgumentError,
} from "../../../platform/errors/domain-errors.js";
import { FOREIGN_KEY_VIOLATION, pgError, UNIQUE_VIOLATION } from "../domain/postgres-errors.js";
import { timestampFromMicros } from "./product-row.js";

type Db = Sql | TransactionSql;

export interface CategoryRow {
  id: string;
  parent_id: string | null;
  slug: string;
  name: string;
  description: string;
  created_us: string;
  updated_us: string;
}

const COLUMNS = `c.id, c.parent_id, c.slug, c.name, c.description,
  (extract(epoch from c.created_at) * 1000000)::int8::text as created_us,
  (extract(epoch from c.updated_at) * 1000000)::int8::text as updated_us`;

export function toCategory(row: CategoryRow): Category {
  return create(CategorySchema, {
    id: row.id,
    parentId: row.parent_id ?? "",
    slug: row.slug,
    name: row.name,
    description: row.description,
    createTime: timestampFromMicros(row.created_us),
    updateTime: timestampFromMicros(row.updated_us),
  });
}

export interface CategoryFields {
  parentId: string | null;
  slug: string;
  name: string;
  description: string;
}

export async function insertCategory(
  tx: TransactionSql,
  id: string,
  f: CategoryFields,
): Promise<CategoryRow> {
  try {
    const [row] = await tx.unsafe<CategoryRow[]>(
      `insert into categories as c (id, parent_id, slug, name, description)
       values ($1::uuid, $2::uuid, $3, $4, $5) returning ${COLUMNS}`,
      [id, f.parentId, f.slug, f.name, f.description],
    );
    return row!;
  } catch (error) {
    const pg = pgError(error);
    if (pg?.code === UNIQUE_VIOLATION && pg.constraint === "categories_slug_key") {
      throw new AlreadyExistsError("a category with this slug exists", "SLUG_TAKEN", {
        slug: f.slug,
      });
    }
    if (pg?.code === FOREIGN_KEY_VIOLATION) {
      throw InvalidArgumentError.field("category.parent_id", "no category has this id");
    }
    throw error;
  }
}

export async function findCategory(db: Db, id: string): Promise<CategoryRow | undefined> {
  const [row] = await db.unsafe<CategoryRow[]>(
    `select ${COLUMNS} from categories c where c.id = $1::uuid`,
    [id],
  );
  return row;
}

export async function listCategories(
  db: Db,
  options: { parentId: string | undefined; afterSlug: string | undefined; limit: number },
): Promise<CategoryRow[]> {
  const params: unknown[] = [];
  const where: string[] = [];
  if (options.parentId !== undefined) {
    params.push(options.parentId);
    where.push(`c.parent_id = $${params.length}::uuid`);
  }
  if (options.afterSlug !== undefined) {
    params.push(options.afterSlug);
    where.push(`c.slug > $${params.length}`);
  }
  params.push(options.limit);
  return db.unsafe<CategoryRow[]>(
    `select ${COLUMNS} from categories c ${where.length ? `where ${where.join(" and ")}` : ""}
     order by c.slug limit $${params.length}`,
    params as string[],
  );
}
