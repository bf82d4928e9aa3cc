export type { Binding, PathVariable, ResumeOverride, StreamResume } from "./bindings.js";
export { BindingError, compileBindings } from "./bindings.js";
export { generateOpenApi, type OpenApiOptions } from "./openapi.js";
export { PathTemplateError, parsePathTemplate } from "./path-template.js";
export { RouteConflictError } from "./route-matcher.js";
export { HttpError, httpStatusFromCode, statusJson } from "./status.js";
export {
  createTranscoder,
  DEFAULT_FORWARD_HEADERS,
  DEFAULT_TRANSCODER_LIMITS,
  publicError,
  type TranscodedCall,
  type Transcoder,
  type TranscoderHooks,
  type TranscoderLimits,
  type TranscoderOptions,
} from "./transcoder.js";
