import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  UserCreatedSchema,
  UserDeletedSchema,
  UserErasedSchema,
  UserUpdatedSchema,
} from "../../../gen/commerce/identity/v1/events_pb.js";
import { type User, UserSchema, UserStatus } from "../../../gen/commerce/identity/v1/user_pb.js";
import { type OutboxEvent, outboxEvent } from "../../../platform/events/outbox.js";
import type { UserRecord, UserState } from "./user-store.js";

export const STATUS_TO_PROTO: Record<UserState, UserStatus> = {
  active: UserStatus.ACTIVE,
  disabled: UserStatus.DISABLED,
  deleted: UserStatus.DELETED,
  erased: UserStatus.ERASED,
};

export function toUserMessage(user: UserRecord): User {
  return create(UserSchema, {
    id: user.id,
    email: user.email,
    emailVerified: user.emailVerified,
    firstName: user.firstName,
    lastName: user.lastName,
    roles: user.roles,
    status: STATUS_TO_PROTO[user.status],
    createTime: timestampFromDate(user.createdAt),
    updateTime: timestampFromDate(user.updatedAt),
    ...(user.deletedAt ? { deleteTime: timestampFromDate(user.deletedAt) } : {}),
    ...(user.erasedAt ? { eraseTime: timestampFromDate(user.erasedAt) } : {}),
  });
}

/*
 * Events carry ids, roles, status and field names only — never email, names,
 * password material or tokens (see events.proto).
 */
const AGGREGATE = "user";

export function userCreated(user: { id: string; roles: string[]; createdAt: Date }): OutboxEvent {
  return outboxEvent(
    UserCreatedSchema,
    create(UserCreatedSchema, {
      userId: user.id,
      roles: user.roles,
      createTime: timestampFromDate(user.createdAt),
    }),
    { aggregateType: AGGREGATE, aggregateId: user.id, occurredAt: user.createdAt },
  );
}

export function userUpdated(
  user: { id: string; roles: string[]; status: UserState },
  changedFields: string[],
  at: Date,
): OutboxEvent {
  return outboxEvent(
    UserUpdatedSchema,
    create(UserUpdatedSchema, {
      userId: user.id,
      changedFields,
      roles: user.roles,
      status: STATUS_TO_PROTO[user.status],
      updateTime: timestampFromDate(at),
    }),
    { aggregateType: AGGREGATE, aggregateId: user.id, occurredAt: at },
  );
}

export function userDeleted(userId: string, at: Date): OutboxEvent {
  return outboxEvent(
    UserDeletedSchema,
    create(UserDeletedSchema, { userId, deleteTime: timestampFromDate(at) }),
    { aggregateType: AGGREGATE, aggregateId: userId, occurredAt: at },
  );
}

export function userErased(userId: string, at: Date): OutboxEvent {
  return outboxEvent(
    UserErasedSchema,
    create(UserErasedSchema, { userId, eraseTime: timestampFromDate(at) }),
    { aggregateType: AGGREGATE, aggregateId: userId, occurredAt: at },
  );
}
