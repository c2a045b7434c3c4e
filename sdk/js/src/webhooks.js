// Checking that a webhook your receiver got was sent by Anchor, with the endpoint's secret.
//
// Anchor signs its messages the Standard Webhooks way (https://www.standardwebhooks.com/): headers `webhook-id`,
// `webhook-timestamp` (Unix seconds) and `webhook-signature`, one or more space-separated `v1,<signature>`, each
// the base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}" under a secret (two during a rotation).
// Web Crypto only, so it runs wherever the client does (Node 20+, Deno, Bun, edge runtimes).

import { keysToCamel } from './case.js';
import { WebhookVerificationError } from './errors.js';

const SECRET_PREFIX = 'whsec_';
const DEFAULT_TOLERANCE_MS = 5 * 60 * 1000;
const encoder = new TextEncoder();

/**
 * Verify a delivery and resolve to its parsed message, `{ type, timestamp, data }`, with camelCase keys like the
 * rest of the client (`data.errorType`, `data.newVersion`). Rejects with WebhookVerificationError unless one of its
 * signatures was made with `secret` and its timestamp is within `tolerance` of `now`.
 *
 * @param {string | Uint8Array | ArrayBuffer} body the raw request body as received, before any JSON parsing
 * @param {Headers | Record<string, string | string[] | undefined>} headers the request's headers (any case)
 * @param {string} secret the endpoint's `whsec_...` secret
 * @param {object} [options]
 * @param {number} [options.tolerance] how far the message's timestamp may be off, in ms (5 minutes)
 * @param {Date | number} [options.now] the time to check against (a Date or ms since the epoch; default: now)
 * @returns {Promise<object>}
 */
export async function verifyWebhook(body, headers, secret, { tolerance = DEFAULT_TOLERANCE_MS, now } = {}) {
  const key = await signingKey(secret);
  const payload = bodyBytes(body);

  const msgId = header(headers, 'webhook-id');
  const timestamp = header(headers, 'webhook-timestamp')?.trim();
  const signatures = header(headers, 'webhook-signature');
  const missing = Object.entries({ 'webhook-id': msgId, 'webhook-timestamp': timestamp, 'webhook-signature': signatures })
    .filter(([, value]) => !value)
    .map(([name]) => name);
  if (missing.length) throw new WebhookVerificationError(`missing header(s): ${missing.join(', ')}`, { code: 'missing_header' });

  if (!/^[0-9]+$/.test(timestamp)) {
    throw new WebhookVerificationError(`webhook-timestamp ${JSON.stringify(timestamp.slice(0, 40))} is not a Unix time in seconds`, {
      code: 'invalid_timestamp',
    });
  }
  const nowMs = now === undefined ? Date.now() : now instanceof Date ? now.getTime() : Number(now);
  const offsetMs = Number(timestamp) * 1000 - nowMs;
  if (offsetMs < -tolerance) {
    throw new WebhookVerificationError(
      `the message was signed ${Math.round(-offsetMs / 1000)} s ago, more than the ${tolerance / 1000} s allowed ` +
        "(a replay, or this machine's clock is wrong)",
      { code: 'timestamp_too_old' },
    );
  }
  if (offsetMs > tolerance) {
    throw new WebhookVerificationError(
      `the message is signed ${Math.round(offsetMs / 1000)} s in the future, more than the ${tolerance / 1000} s allowed ` +
        "(this machine's clock is wrong)",
      { code: 'timestamp_too_new' },
    );
  }

  const prefix = encoder.encode(`${msgId}.${timestamp}.`);
  const signed = new Uint8Array(prefix.length + payload.length);
  signed.set(prefix);
  signed.set(payload, prefix.length);
  const expected = new Uint8Array(await crypto.subtle.sign('HMAC', key, signed));
  if (!v1Signatures(signatures).some((candidate) => timingSafeEqual(expected, candidate))) {
    throw new WebhookVerificationError(
      'no signature matches the secret: a wrong secret, or the body was changed ' +
        '(verify the raw body bytes as received, before parsing them)',
      { code: 'invalid_signature' },
    );
  }

  let message;
  try {
    message = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch {
    throw new WebhookVerificationError('the signed body is not JSON', { code: 'invalid_body' });
  }
  if (message === null || typeof message !== 'object' || Array.isArray(message)) {
    throw new WebhookVerificationError('the signed body is not a JSON object', { code: 'invalid_body' });
  }
  return keysToCamel(message);
}

async function signingKey(secret) {
  if (typeof secret !== 'string') throw new TypeError("secret must be the endpoint's whsec_... secret (a string)");
  let encoded = secret.trim();
  if (encoded.startsWith(SECRET_PREFIX)) encoded = encoded.slice(SECRET_PREFIX.length);
  const raw = /^[A-Za-z0-9+/]*={0,2}$/.test(encoded) ? decodeBase64(encoded) : null;
  if (!raw) throw new TypeError('secret is not a webhook secret: expected whsec_ followed by base64');
  if (!raw.length) throw new TypeError('secret is empty: expected whsec_ followed by base64');
  return crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
}

function bodyBytes(body) {
  if (typeof body === 'string') return encoder.encode(body);
  if (body instanceof Uint8Array) return body; // a Node Buffer is one
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  throw new TypeError('body must be the raw request body (a string, Buffer or Uint8Array), not parsed JSON: verify before parsing');
}

function header(headers, name) {
  if (!headers) return undefined;
  if (typeof headers.get === 'function') return headers.get(name) ?? undefined; // a fetch Headers
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name) return Array.isArray(value) ? value.join(' ') : value == null ? undefined : String(value);
  }
  return undefined;
}

/** The decodable `v1` signatures of a webhook-signature header; other versions and malformed entries are skipped. */
function v1Signatures(value) {
  const found = [];
  for (const entry of value.split(/\s+/)) {
    const comma = entry.indexOf(',');
    if (comma < 0 || entry.slice(0, comma) !== 'v1') continue;
    const encoded = entry.slice(comma + 1);
    const bytes = /^[A-Za-z0-9+/]+={0,2}$/.test(encoded) ? decodeBase64(encoded) : null;
    if (bytes) found.push(bytes);
  }
  return found;
}

function decodeBase64(encoded) {
  try {
    return Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

// Every byte is compared whatever the others hold, so the time taken says nothing about where they differ.
function timingSafeEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i += 1) diff |= a[i] ^ b[i];
  return diff === 0;
}
