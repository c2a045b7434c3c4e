// The HTTP layer: authentication, JSON, case conversion, retries with backoff, errors as exceptions.

import { fieldToCamel, keysToCamel, keysToSnake, toSnake } from './case.js';
import { APIConnectionError, AnchorError, errorFor } from './errors.js';

// Safe to send again whatever happened to the first attempt. A POST that reached the server may have
// taken effect (a task created, a run started), so it is only repeated when the server said it did not
// act: 429, a gateway/unavailable answer, or a connection that never opened.
const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
const RETRY_ALWAYS = new Set([429, 502, 503, 504]);
const NEVER_CONNECTED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
const MAX_BACKOFF_MS = 30_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Transport {
  constructor({ apiKey, baseUrl, timeout, maxRetries, fetch, userAgent, sleep: sleepFn = sleep }) {
    this.apiKey = apiKey;
    this.baseUrl = baseUrl;
    this.timeout = timeout;
    this.maxRetries = maxRetries;
    this.fetch = fetch;
    this.userAgent = userAgent;
    this.sleep = sleepFn;
  }

  async request(method, path, { body, query } = {}) {
    method = method.toUpperCase();
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null) url.searchParams.set(toSnake(key), String(value));
    }
    const init = {
      method,
      headers: {
        Authorization: `Bearer ${this.apiKey}`,
        Accept: 'application/json',
        'User-Agent': this.userAgent,
      },
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(keysToSnake(body));
    }

    for (let attempt = 0; ; attempt += 1) {
      let response;
      let parsed;
      try {
        // The body is read inside the same timeout and the same handling: a server that sends its
        // headers and then stalls is a connection failure like one that never answers.
        response = await this.fetch(url, { ...init, signal: AbortSignal.timeout(this.timeout) });
        parsed = await readBody(response);
      } catch (error) {
        const neverConnected = NEVER_CONNECTED.has(error?.cause?.code);
        if (attempt < this.maxRetries && (neverConnected || IDEMPOTENT.has(method))) {
          await this.sleep(backoffMs(attempt + 1, null));
          continue;
        }
        const reason = error?.name === 'TimeoutError' ? `no answer within ${this.timeout} ms` : error?.cause?.message || error?.message;
        throw new APIConnectionError(`${method} ${url.pathname} failed: ${reason}`);
      }

      if (response.ok) {
        if (parsed.notJson) {
          throw new AnchorError(`the server answered ${response.status} with a body that is not JSON`, { status: response.status });
        }
        return keysToCamel(parsed.value);
      }
      const retryAfter = parseRetryAfter(response.headers.get('retry-after'));
      // A server that asks for longer than we would wait is answered now: retrying sooner only earns
      // another refusal (a 429 for failed keys lasts the rest of the minute).
      const tooLong = retryAfter !== null && retryAfter * 1000 > MAX_BACKOFF_MS;
      if (attempt < this.maxRetries && !tooLong && shouldRetry(method, response.status)) {
        await this.sleep(backoffMs(attempt + 1, retryAfter));
        continue;
      }
      throw errorFor(response.status, parsed.value, { retryAfter, fieldName: fieldToCamel });
    }
  }
}

function shouldRetry(method, status) {
  return RETRY_ALWAYS.has(status) || (status >= 500 && IDEMPOTENT.has(method));
}

function backoffMs(attempt, retryAfterSeconds) {
  if (retryAfterSeconds !== null) return Math.min(retryAfterSeconds * 1000, MAX_BACKOFF_MS);
  // Exponential with full jitter, so many clients failing together do not come back together.
  return Math.random() * Math.min(MAX_BACKOFF_MS, 500 * 2 ** (attempt - 1));
}

function parseRetryAfter(value) {
  if (value === null || value === undefined) return null;
  const seconds = Number(value);
  return Number.isFinite(seconds) ? Math.max(0, seconds) : null;
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return { value: null };
  try {
    return { value: JSON.parse(text) };
  } catch {
    return { value: text.slice(0, 500), notJson: true };
  }
}
