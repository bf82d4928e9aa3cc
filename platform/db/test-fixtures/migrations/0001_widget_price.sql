ALTER TABLE "widgets" ADD COLUMN "price_minor" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "widgets" ADD CONSTRAINT "widgets_price_check" CHECK ("price_minor" >= 0);
