CREATE TABLE "inbox" (
	"consumer" text NOT NULL,
	"event_id" uuid NOT NULL,
	"processed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "inbox_consumer_event_id_pk" PRIMARY KEY("consumer","event_id")
);
--> statement-breakpoint
CREATE TABLE "outbox" (
	"position" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "outbox_position_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"event_id" uuid NOT NULL,
	"subject" text NOT NULL,
	"event_type" text NOT NULL,
	"schema_version" integer NOT NULL,
	"aggregate_type" text NOT NULL,
	"aggregate_id" text NOT NULL,
	"aggregate_seq" bigint NOT NULL,
	"payload" "bytea" NOT NULL,
	"trace_context" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"occurred_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"sent_at" timestamp with time zone,
	"publish_attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text
);
--> statement-breakpoint
CREATE TABLE "outbox_aggregates" (
	"aggregate_type" text NOT NULL,
	"aggregate_id" text NOT NULL,
	"last_seq" bigint NOT NULL,
	CONSTRAINT "outbox_aggregates_aggregate_type_aggregate_id_pk" PRIMARY KEY("aggregate_type","aggregate_id")
);
--> statement-breakpoint
CREATE INDEX "inbox_processed_at_idx" ON "inbox" USING btree ("processed_at");--> statement-breakpoint
CREATE UNIQUE INDEX "outbox_event_id_key" ON "outbox" USING btree ("event_id");--> statement-breakpoint
CREATE UNIQUE INDEX "outbox_aggregate_seq_key" ON "outbox" USING btree ("aggregate_type","aggregate_id","aggregate_seq");--> statement-breakpoint
CREATE INDEX "outbox_pending_idx" ON "outbox" USING btree ("position") WHERE sent_at is null;--> statement-breakpoint
CREATE INDEX "outbox_pending_aggregate_idx" ON "outbox" USING btree ("aggregate_type","aggregate_id","aggregate_seq") WHERE sent_at is null;--> statement-breakpoint
CREATE INDEX "outbox_sent_at_idx" ON "outbox" USING btree ("sent_at") WHERE sent_at is not null;