// The JS client against a scripted local HTTP server: requests, case conversion, errors and retries.
// End-to-end behaviour against the real server is tested by the product's suite (tests/test_seed_snippets.py).

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, beforeEach, test } from 'node:test';

import {
  Anchor,
  APIConnectionError,
  AuthenticationError,
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  ServerError,
  ValidationError,
} from '@anchor-sdk/client';

const TASK = {
  id: 'task_1',
  name: 'form_submission',
  self_healing: true,
  self_healing_config: { auto_deploy: true, trigger_on: ['timeout'], max_attempts: 3, validation_required: true },
  current_version: 1,
  params: { base_url: 'http://x', nested_key: { keep_me: 1 } },
  secret_keys: [],
  created_at: '2026-01-02T03:04:05.123Z',
};

let server;
let baseUrl;
let answers;
let received;

before(async () => {
  server = createServer(async (req, res) => {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    received.push({ method: req.method, url: req.url, headers: req.headers, body: raw ? JSON.parse(raw) : undefined });
    const [status, body, headers = {}] = answers.length > 1 ? answers.shift() : answers[0];
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(body === null ? '' : JSON.stringify(body));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${server.address().port}`;
});

after(() => server.close());

beforeEach(() => {
  answers = [];
  received = [];
});

const slept = [];
const client = (options = {}) => new Anchor({ apiKey: 'ak_test', baseUrl, sleep: async (ms) => slept.push(ms), ...options });
const error = (status, code, field = null, headers = {}) => [status, { error: { code, message: 'nope', field } }, headers];

test('create converts camelCase to snake_case, sends the key, and answers in camelCase', async () => {
  answers = [[201, TASK]];
  const task = await client().tasks.create({
    name: 'form_submission',
    selfHealing: true,
    selfHealingConfig: { autoDeploy: true, triggerOn: ['timeout'], maxAttempts: 3, validationRequired: true },
    params: { baseUrl: 'kept as written' },
  });
  const [request] = received;
  assert.equal(request.method, 'POST');
  assert.equal(request.url, '/api/v1/tasks');
  assert.equal(request.headers.authorization, 'Bearer ak_test');
  assert.deepEqual(request.body, {
    name: 'form_submission',
    self_healing: true,
    self_healing_config: { auto_deploy: true, trigger_on: ['timeout'], max_attempts: 3, validation_required: true },
    params: { baseUrl: 'kept as written' },
  });
  assert.equal(task.selfHealing, true);
  assert.deepEqual(task.selfHealingConfig, { autoDeploy: true, triggerOn: ['timeout'], maxAttempts: 3, validationRequired: true });
  assert.deepEqual(task.params, { base_url: 'http://x', nested_key: { keep_me: 1 } }, 'params are the caller’s own keys');
  assert.equal(task.currentVersion, 1);
});

test('update takes taskId out of the body and PATCHes only what is given', async () => {
  answers = [[200, TASK]];
  await client().tasks.update({ taskId: 'task_1', selfHealing: false });
  assert.equal(received[0].method, 'PATCH');
  assert.equal(received[0].url, '/api/v1/tasks/task_1');
  assert.deepEqual(received[0].body, { self_healing: false });
});

test('update sends a schedule and null to remove a monthly budget, in snake_case', async () => {
  answers = [[200, { ...TASK, schedule: '0 9 * * 1', monthly_budget_usd: null }]];
  const task = await client().tasks.update({ taskId: 'task_1', schedule: '0 9 * * 1', monthlyBudgetUsd: null });
  assert.deepEqual(received[0].body, { schedule: '0 9 * * 1', monthly_budget_usd: null });
  assert.equal(task.schedule, '0 9 * * 1');
  assert.equal(task.monthlyBudgetUsd, null);
});

test('getHealingEvents returns a plain array from every page, in camelCase', async () => {
  const event = { id: 'heal_1', timestamp: '2026-01-02T03:04:05Z', error_type: 'timeout', status: 'deployed', new_version: 2 };
  answers = [
    [200, { data: [event], next_cursor: 'c1' }],
    [200, { data: [{ ...event, id: 'heal_2' }], next_cursor: null }],
  ];
  const events = await client().tasks.getHealingEvents({ taskId: 'task_1' });
  assert.ok(Array.isArray(events));
  assert.deepEqual(events.map((e) => e.id), ['heal_1', 'heal_2']);
  assert.equal(events[0].errorType, 'timeout');
  assert.equal(events[0].newVersion, 2);
  assert.equal(events[0].timestamp, '2026-01-02T03:04:05Z');
  assert.match(received[1].url, /cursor=c1/);
});

test('a list is a page that async-iterates through the rest', async () => {
  answers = [
    [200, { data: [TASK], next_cursor: 'c1' }],
    [200, { data: [{ ...TASK, id: 'task_2' }], next_cursor: null }],
  ];
  const first = await client().tasks.list({ limit: 1 });
  assert.equal(first.hasMore, true);
  const ids = [];
  for await (const task of first) ids.push(task.id);
  assert.deepEqual(ids, ['task_1', 'task_2']);
});

for (const [status, code, Cls] of [
  [400, 'invalid_input', ValidationError],
  [401, 'unauthenticated', AuthenticationError],
  [403, 'permission_denied', PermissionDeniedError],
  [404, 'not_found', NotFoundError],
  [409, 'already_decided', ConflictError],
]) {
  test(`${status} becomes ${Cls.name} with the code and a camelCase field`, async () => {
    answers = [error(status, code, 'self_healing_config.max_attempts')];
    await assert.rejects(client().tasks.update({ taskId: 'task_1', selfHealingConfig: { maxAttempts: 99 } }), (err) => {
      assert.ok(err instanceof Cls);
      assert.equal(err.status, status);
      assert.equal(err.code, code);
      assert.equal(err.field, 'selfHealingConfig.maxAttempts');
      return true;
    });
    assert.equal(received.length, 1, 'client errors are not retried');
  });
}

test('429 is retried after the time the server asks', async () => {
  slept.length = 0;
  answers = [error(429, 'rate_limited', null, { 'Retry-After': '2' }), [200, TASK]];
  const task = await client().tasks.get({ taskId: 'task_1' });
  assert.equal(task.id, 'task_1');
  assert.deepEqual(slept, [2000]);
});

test('a 429 that persists raises RateLimitError with retryAfter', async () => {
  answers = [error(429, 'rate_limited', null, { 'Retry-After': '3' })];
  await assert.rejects(client({ maxRetries: 1 }).tasks.get('task_1'), (err) => err instanceof RateLimitError && err.retryAfter === 3);
  assert.equal(received.length, 2);
});

test('a 429 asking for longer than the longest backoff is raised at once', async () => {
  slept.length = 0;
  answers = [error(429, 'too_many_auth_failures', null, { 'Retry-After': '55' }), [200, TASK]];
  await assert.rejects(client({ maxRetries: 3 }).tasks.get('task_1'), (err) => err instanceof RateLimitError && err.retryAfter === 55);
  assert.equal(received.length, 1);
  assert.deepEqual(slept, []);
});

test('server errors are retried for reads', async () => {
  answers = [error(500, 'internal_error'), error(502, 'bad_gateway'), [200, TASK]];
  const task = await client({ maxRetries: 3 }).tasks.get('task_1');
  assert.equal(task.id, 'task_1');
  assert.equal(received.length, 3);
});

test('a POST that failed with 500 is not repeated; one answered 503 is', async () => {
  answers = [error(500, 'internal_error'), [201, TASK]];
  await assert.rejects(client().tasks.create({ name: 'x' }), ServerError);
  assert.equal(received.length, 1);

  received = [];
  answers = [error(503, 'service_unavailable'), [202, { id: 'run_1', status: 'queued' }]];
  const run = await client().tasks.run({ taskId: 'task_1', params: { someParam: 1 } });
  assert.deepEqual(run, { id: 'run_1', status: 'queued' });
  assert.deepEqual(received[1].body, { params: { someParam: 1 } });
});

test('an unreachable server is an APIConnectionError', async () => {
  const anchor = new Anchor({ apiKey: 'ak_x', baseUrl: 'http://127.0.0.1:1', maxRetries: 0 });
  await assert.rejects(anchor.tasks.get('task_1'), APIConnectionError);
});

test('a server that sends its headers and then stalls is an APIConnectionError, and a read is retried', async () => {
  let requests = 0;
  const stalling = createServer((req, res) => {
    requests += 1;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '100' });
    res.write('{"id": "task_1"'); // ...and never the rest
  });
  await new Promise((resolve) => stalling.listen(0, '127.0.0.1', resolve));
  try {
    const anchor = new Anchor({
      apiKey: 'ak_x', baseUrl: `http://127.0.0.1:${stalling.address().port}`, timeout: 300, maxRetries: 1, sleep: async () => {},
    });
    await assert.rejects(anchor.tasks.get('task_1'), (error) => {
      assert.ok(error instanceof APIConnectionError, `${error?.name}: ${error?.message}`);
      assert.match(error.message, /no answer within 300 ms/);
      return true;
    });
    assert.equal(requests, 2); // a GET is safe to send again
  } finally {
    stalling.closeAllConnections();
    stalling.close();
  }
});

test('the base URL comes from ANCHOR_BASE_URL and gets the API prefix once', () => {
  const saved = process.env.ANCHOR_BASE_URL;
  process.env.ANCHOR_BASE_URL = 'http://from-env:9000/';
  try {
    assert.equal(new Anchor({ apiKey: 'ak_x' }).baseUrl, 'http://from-env:9000/api/v1');
    assert.equal(new Anchor({ apiKey: 'ak_x', baseUrl: 'http://given/api/v1' }).baseUrl, 'http://given/api/v1');
  } finally {
    if (saved === undefined) delete process.env.ANCHOR_BASE_URL;
    else process.env.ANCHOR_BASE_URL = saved;
  }
});

test('approve and reject post their comment; ids are escaped', async () => {
  answers = [[200, { id: 'heal_1', status: 'deployed' }]];
  const anchor = client();
  await anchor.healingEvents.approve({ eventId: 'heal_1' });
  assert.deepEqual(received[0].body, {});
  await anchor.healingEvents.reject({ eventId: 'heal/1', comment: 'wrong button' });
  assert.equal(received[1].url, '/api/v1/healing-events/heal%2F1/reject');
  assert.deepEqual(received[1].body, { comment: 'wrong button' });
});

test('a missing id is a TypeError before any request', async () => {
  await assert.rejects(client().tasks.update({ selfHealing: false }), TypeError);
  assert.equal(received.length, 0);
});
