CREATE TABLE "widgets" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL
);
