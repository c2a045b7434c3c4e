// JavaScript client for the Anchor API (self-healing browser tasks). ESM, no build step, Node 20+ fetch.
//
//   import { Anchor } from '@anchor-sdk/client';
//   const anchor = new Anchor({ apiKey: 'ak_...' });   // baseUrl, else ANCHOR_BASE_URL, else localhost:8000
//   const task = await anchor.tasks.create({ name: 'form_submission', prompt: 'Fill out the contact form', selfHealing: true });
//   const message = await verifyWebhook(rawBody, req.headers, 'whsec_...');   // in a webhook receiver

import { Transport } from './http.js';

export {
  APIConnectionError,
  AnchorError,
  AuthenticationError,
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  ServerError,
  ValidationError,
  WebhookVerificationError,
} from './errors.js';
export { verifyWebhook } from './webhooks.js';

export const VERSION = '0.1.0';
const DEFAULT_BASE_URL = 'http://localhost:8000';
const API_PREFIX = '/api/v1';
const FINISHED = new Set(['succeeded', 'healed', 'failed']);

const seg = (value) => encodeURIComponent(String(value));

// Methods take one object ({ taskId, ... }); a bare id string is accepted where the id is all there is.
const withId = (arg, name) => (typeof arg === 'string' ? { [name]: arg } : { ...(arg || {}) });

function requireId(value, name) {
  if (typeof value !== 'string' || !value) throw new TypeError(`${name} is required`);
  return value;
}

function apiRoot(baseUrl) {
  const root = baseUrl.replace(/\/+$/, '');
  return root.endsWith(API_PREFIX) ? root : root + API_PREFIX;
}

function page(body, fetchNext) {
  const result = {
    data: body.data,
    nextCursor: body.nextCursor ?? null,
    hasMore: body.nextCursor != null,
    nextPage: () => (result.nextCursor == null ? Promise.resolve(null) : fetchNext(result.nextCursor)),
    async *[Symbol.asyncIterator]() {
      let current = result;
      while (current) {
        yield* current.data;
        current = await current.nextPage();
      }
    },
  };
  return result;
}

class Tasks {
  #http;

  constructor(http) {
    this.#http = http;
  }

  /** Create a task. selfHealingConfig keys left out get their defaults; secrets are write-only. */
  async create(fields) {
    return this.#http.request('POST', '/tasks', { body: fields || {} });
  }

  /** Change only what is given. selfHealingConfig keys given replace those keys; the others stay. */
  async update({ taskId, ...fields } = {}) {
    return this.#http.request('PATCH', `/tasks/${seg(requireId(taskId, 'taskId'))}`, { body: fields });
  }

  async get(arg) {
    const { taskId } = withId(arg, 'taskId');
    return this.#http.request('GET', `/tasks/${seg(requireId(taskId, 'taskId'))}`);
  }

  /** One page of tasks, newest first; `for await (const task of page)` walks all of them. */
  async list({ limit, cursor } = {}) {
    const fetch = async (next) => page(await this.#http.request('GET', '/tasks', { query: { limit, cursor: next } }), fetch);
    return fetch(cursor);
  }

  async delete(arg) {
    const { taskId } = withId(arg, 'taskId');
    await this.#http.request('DELETE', `/tasks/${seg(requireId(taskId, 'taskId'))}`);
  }

  /** Start a run; it is queued and runs in the background. `anchor.runs.wait({ runId })` waits for it. */
  async run(arg) {
    const { taskId, params, version } = withId(arg, 'taskId');
    const body = {};
    if (params !== undefined) body.params = params;
    if (version !== undefined) body.version = version;
    return this.#http.request('POST', `/tasks/${seg(requireId(taskId, 'taskId'))}/runs`, { body });
  }

  async listRuns({ taskId, limit, cursor } = {}) {
    const path = `/tasks/${seg(requireId(taskId, 'taskId'))}/runs`;
    const fetch = async (next) => page(await this.#http.request('GET', path, { query: { limit, cursor: next } }), fetch);
    return fetch(cursor);
  }

  /** The task's healing events, newest first, as a plain array: all of them, or the newest `limit`. */
  async getHealingEvents(arg) {
    const { taskId, limit } = withId(arg, 'taskId');
    const path = `/tasks/${seg(requireId(taskId, 'taskId'))}/healing-events`;
    const all = limit === undefined || limit === null;
    if (!all && !(Number.isInteger(limit) && limit >= 0)) {
      throw new RangeError(`limit must be a whole number of events, 0 or more (got ${limit})`);
    }
    const events = [];
    let cursor = null;
    while (all || events.length < limit) {
      const pageSize = all ? 100 : Math.min(100, limit - events.length);
      const body = await this.#http.request('GET', path, { query: { limit: pageSize, cursor } });
      events.push(...body.data);
      cursor = body.nextCursor ?? null;
      if (cursor === null) break;
    }
    return events;
  }

  async listVersions({ taskId, limit, cursor } = {}) {
    const path = `/tasks/${seg(requireId(taskId, 'taskId'))}/versions`;
    const fetch = async (next) => page(await this.#http.request('GET', path, { query: { limit, cursor: next } }), fetch);
    return fetch(cursor);
  }

  async getVersion({ taskId, number } = {}) {
    return this.#http.request('GET', `/tasks/${seg(requireId(taskId, 'taskId'))}/versions/${seg(number)}`);
  }

  /** What changed from `against` (default: the version's parent) to version `number`. */
  async diffVersions({ taskId, number, against } = {}) {
    const path = `/tasks/${seg(requireId(taskId, 'taskId'))}/versions/${seg(number)}/diff`;
    return this.#http.request('GET', path, { query: { against } });
  }

  /** Make version `number` current: a rollback, or a roll forward. */
  /** Make version `number` current (a rollback, or a roll forward); `reason` goes to the audit log. */
  async deployVersion({ taskId, number, reason } = {}) {
    const body = reason === undefined ? undefined : { reason };
    return this.#http.request('POST', `/tasks/${seg(requireId(taskId, 'taskId'))}/versions/${seg(number)}/deploy`, { body });
  }
}

class Runs {
  #http;

  constructor(http) {
    this.#http = http;
  }

  async get(arg) {
    const { runId } = withId(arg, 'runId');
    return this.#http.request('GET', `/runs/${seg(requireId(runId, 'runId'))}`);
  }

  /** Cancel a run: a queued one ends at once, a running one within a few seconds (`error_type` "cancelled"). */
  async cancel(arg) {
    const { runId } = withId(arg, 'runId');
    return this.#http.request('POST', `/runs/${seg(requireId(runId, 'runId'))}/cancel`);
  }

  /** Poll until the run has finished (succeeded, healed or failed). */
  async wait({ runId, timeout = 300_000, pollInterval = 1000 } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const run = await this.get({ runId });
      if (FINISHED.has(run.status)) return run;
      if (Date.now() >= deadline) throw new Error(`run ${runId} still ${run.status} after ${timeout} ms`);
      await new Promise((resolve) => setTimeout(resolve, pollInterval));
    }
  }
}

class HealingEvents {
  #http;

  constructor(http) {
    this.#http = http;
  }

  /** One event with everything the dashboard shows (root cause, agent trace, diff, cost, timeline). */
  async get(arg) {
    const { eventId } = withId(arg, 'eventId');
    return this.#http.request('GET', `/healing-events/${seg(requireId(eventId, 'eventId'))}`);
  }

  /** Heals newest first: a task's (`taskId`), or every task's; `status: 'pending_review'` is the review queue. */
  async list({ taskId, status, errorType, limit, cursor } = {}) {
    const query = { task: taskId, status, errorType, limit };
    const fetch = async (next) => page(await this.#http.request('GET', '/healing-events', { query: { ...query, cursor: next } }), fetch);
    return fetch(cursor);
  }

  /** Deploy the healed version (reviewers). ConflictError if it was already decided. */
  async approve(arg) {
    const { eventId, comment } = withId(arg, 'eventId');
    const body = comment === undefined ? {} : { comment };
    return this.#http.request('POST', `/healing-events/${seg(requireId(eventId, 'eventId'))}/approve`, { body });
  }

  /** Discard the healed version; a comment saying why is required. */
  async reject({ eventId, comment } = {}) {
    return this.#http.request('POST', `/healing-events/${seg(requireId(eventId, 'eventId'))}/reject`, { body: { comment } });
  }
}

/**
 * Webhook endpoints (URLs that receive signed messages about heals, failed runs and deployments) and their
 * delivery logs. To check a message your receiver got, use `verifyWebhook`.
 */
class Webhooks {
  #http;

  constructor(http) {
    this.#http = http;
  }

  /**
   * Register an endpoint: `url`, and optionally `eventTypes` (left out or empty: all), `task` (an id: only its
   * events), `description`. The result's `secret` (whsec_...) is shown this once.
   */
  async create(fields) {
    return this.#http.request('POST', '/webhooks', { body: fields || {} });
  }

  /** One page of your endpoints; `for await (const endpoint of page)` walks all of them. */
  async list({ limit, cursor } = {}) {
    const fetch = async (next) => page(await this.#http.request('GET', '/webhooks', { query: { limit, cursor: next } }), fetch);
    return fetch(cursor);
  }

  async get(arg) {
    const { endpointId } = withId(arg, 'endpointId');
    return this.#http.request('GET', `/webhooks/${seg(requireId(endpointId, 'endpointId'))}`);
  }

  /** Change only what is given. `task: null` sends every task's events; `enabled: true` re-enables and resets the failure count. */
  async update({ endpointId, ...fields } = {}) {
    return this.#http.request('PATCH', `/webhooks/${seg(requireId(endpointId, 'endpointId'))}`, { body: fields });
  }

  /** Delete the endpoint and its delivery log. */
  async delete(arg) {
    const { endpointId } = withId(arg, 'endpointId');
    await this.#http.request('DELETE', `/webhooks/${seg(requireId(endpointId, 'endpointId'))}`);
  }

  /**
   * A new signing secret, `{ secret, previousSecretExpiresAt }`, shown this once. For `graceSeconds` (default one
   * day, at most 7) messages also carry the old secret's signature; `graceSeconds: 0` drops the old secret now.
   */
  async rotateSecret(arg) {
    const { endpointId, graceSeconds } = withId(arg, 'endpointId');
    const body = graceSeconds === undefined ? undefined : { graceSeconds };
    return this.#http.request('POST', `/webhooks/${seg(requireId(endpointId, 'endpointId'))}/rotate-secret`, { body });
  }

  /** Queue a `webhook.test` message to this endpoint (also when it is disabled); resolves to the queued attempt. */
  async sendTest(arg) {
    const { endpointId } = withId(arg, 'endpointId');
    return this.#http.request('POST', `/webhooks/${seg(requireId(endpointId, 'endpointId'))}/test`);
  }

  /** One page of the delivery log, newest attempt first; filter by `status` or `messageId` (a webhook-id). */
  async listDeliveries({ endpointId, status, messageId, limit, cursor } = {}) {
    const path = `/webhooks/${seg(requireId(endpointId, 'endpointId'))}/deliveries`;
    const fetch = async (next) => page(await this.#http.request('GET', path, { query: { status, messageId, limit, cursor: next } }), fetch);
    return fetch(cursor);
  }

  /** Queue one more attempt of a delivery's message, with the same webhook-id; resolves to the new attempt. */
  async redeliver({ endpointId, deliveryId } = {}) {
    if (!/^[1-9][0-9]*$/.test(String(deliveryId ?? ''))) throw new TypeError("deliveryId is required (a delivery's id, a positive integer)");
    const path = `/webhooks/${seg(requireId(endpointId, 'endpointId'))}/deliveries/${seg(deliveryId)}/redeliver`;
    return this.#http.request('POST', path);
  }
}

export class Anchor {
  /**
   * @param {object} [options]
   * @param {string} [options.apiKey] defaults to process.env.ANCHOR_API_KEY
   * @param {string} [options.baseUrl] the server's address; defaults to process.env.ANCHOR_BASE_URL, then http://localhost:8000
   * @param {number} [options.timeout] per request, in ms (30 s)
   * @param {number} [options.maxRetries] for 429 and 5xx answers (2)
   * @param {typeof fetch} [options.fetch] a fetch implementation (the global one)
   */
  constructor({ apiKey, baseUrl, timeout = 30_000, maxRetries = 2, fetch = globalThis.fetch, sleep } = {}) {
    const env = globalThis.process?.env ?? {};
    apiKey = apiKey || env.ANCHOR_API_KEY;
    if (!apiKey) throw new TypeError('an API key is required: new Anchor({ apiKey }) or ANCHOR_API_KEY');
    this.baseUrl = apiRoot(baseUrl || env.ANCHOR_BASE_URL || DEFAULT_BASE_URL);
    const http = new Transport({
      apiKey,
      baseUrl: this.baseUrl,
      timeout,
      maxRetries,
      fetch,
      sleep,
      userAgent: `anchor-sdk-js/${VERSION}`,
    });
    this.tasks = new Tasks(http);
    this.runs = new Runs(http);
    this.healingEvents = new HealingEvents(http);
    this.webhooks = new Webhooks(http);
  }
}

export default Anchor;
