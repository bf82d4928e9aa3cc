import type { ServiceImpl } from "@connectrpc/connect";
import type { PaymentService } from "../../../gen/commerce/payments/v1/payment_service_pb.js";
import { authorize } from "../operations/authorize.js";
import { capture, refund, voidPayment } from "../operations/follow-up.js";
import { loadView, type OperationsDeps } from "../operations/operations-context.js";
import { handleProviderWebhook } from "../operations/provider-webhook.js";
import { paymentToProto } from "./to-proto.js";
import {
  validateAuthorize,
  validateCapture,
  validateGetPayment,
  validateRefund,
  validateVoid,
} from "./validate-requests.js";

/**
 * Thin RPC layer: validate → operation → proto. Access (roles "service" and
 * "admin", the webhook public) is enforced by the platform from the contract.
 */
export function createPaymentHandlers(deps: OperationsDeps): ServiceImpl<typeof PaymentService> {
  return {
    async authorize(req) {
      return { payment: paymentToProto(await authorize(deps, validateAuthorize(req))) };
    },
    async capture(req) {
      return { payment: paymentToProto(await capture(deps, validateCapture(req))) };
    },
    async void(req) {
      return { payment: paymentToProto(await voidPayment(deps, validateVoid(req))) };
    },
    async refund(req) {
      return { payment: paymentToProto(await refund(deps, validateRefund(req))) };
    },
    async getPayment(req) {
      return { payment: paymentToProto(await loadView(deps.sql, validateGetPayment(req))) };
    },
    async handleProviderWebhook(req) {
      await handleProviderWebhook(deps, req);
      return {};
    },
  };
}
