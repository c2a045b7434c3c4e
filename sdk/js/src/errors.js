// Every failure is an AnchorError; its subclass says which kind. `status`, `code` (the API's
// machine-readable error code), `field` (the request field at fault) and `body` carry the details.

export class AnchorError extends Error {
  constructor(message, { status = null, code = null, field = null, body = null } = {}) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.field = field;
    this.body = body;
  }
}

/** The server could not be reached, or did not answer in time. */
export class APIConnectionError extends AnchorError {}
/** 400: the request was refused; `field` names the offending field (camelCase, dotted). */
export class ValidationError extends AnchorError {}
/** 401: the API key is missing, wrong or revoked. */
export class AuthenticationError extends AnchorError {}
/** 403: the key's owner may not do this (approve and reject need the reviewer permission). */
export class PermissionDeniedError extends AnchorError {}
/** 404: no such task, run, version or healing event. */
export class NotFoundError extends AnchorError {}
/** 409: e.g. the healing event was already approved or rejected. */
export class ConflictError extends AnchorError {}
/** 5xx: the server failed (after retries). */
export class ServerError extends AnchorError {}
/** 429: too many requests; `retryAfter` is the number of seconds the server asked to wait. */
export class RateLimitError extends AnchorError {
  constructor(message, { retryAfter = null, ...rest } = {}) {
    super(message, rest);
    this.retryAfter = retryAfter;
  }
}

/**
 * A webhook that is not a genuine, recent Anchor message: answer 400 and do not act on it. `code` says why:
 * missing_header, invalid_timestamp, timestamp_too_old, timestamp_too_new, invalid_signature or invalid_body.
 */
export class WebhookVerificationError extends AnchorError {}

const BY_STATUS = {
  400: ValidationError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  422: ValidationError,
  429: RateLimitError,
};

/** The error for a response, read from the API's `{"error": {"code", "message", "field"}}`. */
export function errorFor(status, body, { retryAfter = null, fieldName = (f) => f } = {}) {
  const error = body && typeof body === 'object' ? body.error : null;
  const message = (error && error.message) || (typeof body === 'string' && body) || `HTTP ${status}`;
  const Cls = BY_STATUS[status] || (status >= 500 ? ServerError : AnchorError);
  const details = {
    status,
    code: (error && error.code) || null,
    field: error && error.field ? fieldName(error.field) : null,
    body,
  };
  return Cls === RateLimitError ? new Cls(message, { ...details, retryAfter }) : new Cls(message, details);
}
