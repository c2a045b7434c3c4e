// The JS client against a scripted local HTTP server: requests, case conversion, errors and retries.
// End-to-end behaviour against the real server is tested by the product's suite (tests/test_seed_snippets.py).

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
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
  verifyWebhook,
  WebhookVerificationError,
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

test('an error field keeps the caller\'s own names under params and secrets', async () => {
  answers = [error(400, 'invalid_input', 'secrets.db_password')];
  await assert.rejects(client().tasks.create({ name: 'x', secrets: { db_password: 'x' } }), (err) => {
    assert.equal(err.field, 'secrets.db_password');
    return true;
  });
  answers = [error(400, 'invalid_input', 'params.my_key.inner_list')];
  await assert.rejects(client().tasks.create({ name: 'x', params: { my_key: 1 } }), (err) => {
    assert.equal(err.field, 'params.my_key.inner_list');
    return true;
  });
});

test('getHealingEvents with limit 0 asks for nothing, and a negative limit is refused', async () => {
  answers = [];
  assert.deepEqual(await client().tasks.getHealingEvents({ taskId: 'task_1', limit: 0 }), []);
  await assert.rejects(client().tasks.getHealingEvents({ taskId: 'task_1', limit: -5 }), RangeError);
  assert.equal(received.length, 0);
});

test('getHealingEvents stops at limit across pages', async () => {
  const event = { id: 'heal_1', timestamp: '2026-01-02T03:04:05Z', error_type: 'timeout', status: 'deployed' };
  answers = [[200, { data: [event, { ...event, id: 'heal_2' }], next_cursor: 'c1' }]];
  const events = await client().tasks.getHealingEvents({ taskId: 'task_1', limit: 2 });
  assert.deepEqual(events.map((e) => e.id), ['heal_1', 'heal_2']);
  assert.match(received[0].url, /limit=2/);
  assert.equal(received.length, 1);
});

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

test('runs.cancel posts to the run and answers in camelCase; ids are escaped', async () => {
  answers = [[202, { id: 'run/1', status: 'running', cancel_requested_at: '2026-01-02T03:04:05Z' }]];
  const run = await client().runs.cancel({ runId: 'run/1' });
  assert.equal(received[0].method, 'POST');
  assert.equal(received[0].url, '/api/v1/runs/run%2F1/cancel');
  assert.equal(run.cancelRequestedAt, '2026-01-02T03:04:05Z');
});

test('healingEvents.list is the review queue across tasks, or one task\u2019s heals, in snake_case', async () => {
  answers = [[200, { data: [{ id: 'heal_1', status: 'pending_review', error_type: 'timeout' }], next_cursor: null }]];
  const anchor = client();
  const queue = await anchor.healingEvents.list({ status: 'pending_review', limit: 10 });
  assert.equal(queue.data[0].errorType, 'timeout');
  assert.equal(received[0].url, '/api/v1/healing-events?status=pending_review&limit=10');
  await anchor.healingEvents.list({ taskId: 'task_1', errorType: 'timeout' });
  assert.equal(received[1].url, '/api/v1/healing-events?task=task_1&error_type=timeout');
});

test('deployVersion sends its reason only when given', async () => {
  answers = [[200, { id: 'task_1', current_version: 1 }]];
  const anchor = client();
  await anchor.tasks.deployVersion({ taskId: 'task_1', number: 1 });
  assert.equal(received[0].url, '/api/v1/tasks/task_1/versions/1/deploy');
  assert.equal(received[0].body, undefined);
  await anchor.tasks.deployVersion({ taskId: 'task_1', number: 1, reason: 'v2 broke checkout' });
  assert.deepEqual(received[1].body, { reason: 'v2 broke checkout' });
});

test('a missing id is a TypeError before any request', async () => {
  await assert.rejects(client().tasks.update({ selfHealing: false }), TypeError);
  assert.equal(received.length, 0);
});

// -- webhooks ------------------------------------------------------------------------------------------------

const ENDPOINT = {
  id: 'wh_1',
  url: 'https://hooks.example.test/anchor',
  description: 'ops channel',
  event_types: ['healing.deployed'],
  task: null,
  enabled: true,
  disabled_reason: '',
  disabled_at: null,
  consecutive_failures: 0,
  previous_secret_expires_at: null,
  created_at: '2026-01-02T03:04:05Z',
};
const DELIVERY = {
  id: 7,
  endpoint: 'wh_1',
  message_id: 'msg_1',
  event_type: 'webhook.test',
  attempt: 1,
  trigger: 'test',
  status: 'pending',
  response_code: null,
  payload: { type: 'webhook.test', timestamp: '2026-01-02T03:04:05Z', data: { endpoint: 'wh_1' } },
  next_attempt_at: '2026-01-02T03:04:05Z',
};

test('webhooks.create sends snake_case and answers with the secret, in camelCase', async () => {
  answers = [[201, { ...ENDPOINT, secret: 'whsec_c2VjcmV0' }]];
  const endpoint = await client().webhooks.create({
    url: 'https://hooks.example.test/anchor', eventTypes: ['healing.deployed'], task: 'task_1', description: 'ops channel',
  });
  assert.equal(received[0].method, 'POST');
  assert.equal(received[0].url, '/api/v1/webhooks');
  assert.deepEqual(received[0].body, {
    url: 'https://hooks.example.test/anchor', event_types: ['healing.deployed'], task: 'task_1', description: 'ops channel',
  });
  assert.equal(endpoint.secret, 'whsec_c2VjcmV0');
  assert.deepEqual(endpoint.eventTypes, ['healing.deployed']);
  assert.equal(endpoint.consecutiveFailures, 0);
});

test('webhooks.list is a page that async-iterates through the rest; get and delete', async () => {
  answers = [
    [200, { data: [ENDPOINT], next_cursor: 'c1' }],
    [200, { data: [{ ...ENDPOINT, id: 'wh_2' }], next_cursor: null }],
  ];
  const first = await client().webhooks.list({ limit: 1 });
  assert.equal(received[0].url, '/api/v1/webhooks?limit=1');
  const ids = [];
  for await (const endpoint of first) ids.push(endpoint.id);
  assert.deepEqual(ids, ['wh_1', 'wh_2']);
  assert.match(received[1].url, /cursor=c1/);

  received = [];
  answers = [[200, ENDPOINT]];
  const endpoint = await client().webhooks.get('wh_1');
  assert.equal(endpoint.disabledReason, '');
  assert.deepEqual([received[0].method, received[0].url], ['GET', '/api/v1/webhooks/wh_1']);

  received = [];
  answers = [[204, null]];
  assert.equal(await client().webhooks.delete({ endpointId: 'wh_1' }), undefined);
  assert.deepEqual([received[0].method, received[0].url], ['DELETE', '/api/v1/webhooks/wh_1']);
});

test('webhooks.update PATCHes only what is given, null for every task', async () => {
  answers = [[200, { ...ENDPOINT, enabled: true }]];
  const endpoint = await client().webhooks.update({ endpointId: 'wh_1', enabled: true, task: null, eventTypes: [] });
  assert.deepEqual([received[0].method, received[0].url], ['PATCH', '/api/v1/webhooks/wh_1']);
  assert.deepEqual(received[0].body, { enabled: true, task: null, event_types: [] });
  assert.equal(endpoint.enabled, true);
});

test('webhooks.rotateSecret returns the new secret; graceSeconds is sent only when given', async () => {
  answers = [[200, { secret: 'whsec_bmV3', previous_secret_expires_at: '2026-01-03T03:04:05Z' }]];
  const anchor = client();
  const rotated = await anchor.webhooks.rotateSecret('wh_1');
  assert.deepEqual([received[0].method, received[0].url], ['POST', '/api/v1/webhooks/wh_1/rotate-secret']);
  assert.equal(received[0].body, undefined);
  assert.deepEqual(rotated, { secret: 'whsec_bmV3', previousSecretExpiresAt: '2026-01-03T03:04:05Z' });
  await anchor.webhooks.rotateSecret({ endpointId: 'wh_1', graceSeconds: 0 });
  assert.deepEqual(received[1].body, { grace_seconds: 0 });
});

test('webhooks.sendTest and redeliver answer with the queued attempt', async () => {
  answers = [[202, DELIVERY]];
  const anchor = client();
  const delivery = await anchor.webhooks.sendTest({ endpointId: 'wh_1' });
  assert.deepEqual([received[0].method, received[0].url, received[0].body], ['POST', '/api/v1/webhooks/wh_1/test', undefined]);
  assert.equal(delivery.messageId, 'msg_1');
  assert.equal(delivery.nextAttemptAt, '2026-01-02T03:04:05Z');
  assert.deepEqual(delivery.payload.data, { endpoint: 'wh_1' });

  const again = await anchor.webhooks.redeliver({ endpointId: 'wh_1', deliveryId: 7 });
  assert.deepEqual([received[1].method, received[1].url], ['POST', '/api/v1/webhooks/wh_1/deliveries/7/redeliver']);
  assert.equal(again.id, 7);
  await assert.rejects(anchor.webhooks.redeliver({ endpointId: 'wh_1' }), TypeError);
  await assert.rejects(anchor.webhooks.redeliver({ endpointId: 'wh_1', deliveryId: '../7' }), TypeError);
  assert.equal(received.length, 2);
});

test('webhooks.listDeliveries filters in snake_case and pages', async () => {
  answers = [
    [200, { data: [{ ...DELIVERY, status: 'failed' }], next_cursor: 'c1' }],
    [200, { data: [{ ...DELIVERY, id: 6, status: 'failed' }], next_cursor: null }],
  ];
  const first = await client().webhooks.listDeliveries({ endpointId: 'wh/1', status: 'failed', messageId: 'msg_1', limit: 1 });
  assert.equal(received[0].method, 'GET');
  assert.equal(received[0].url, '/api/v1/webhooks/wh%2F1/deliveries?status=failed&message_id=msg_1&limit=1');
  const ids = [];
  for await (const delivery of first) ids.push(delivery.id);
  assert.deepEqual(ids, [7, 6]);
  assert.match(received[1].url, /cursor=c1/);
});

// -- verifyWebhook ---------------------------------------------------------------------------------------------

const SECRET = `whsec_${Buffer.from(Array.from({ length: 32 }, (_, i) => i)).toString('base64')}`;
const OLD_SECRET = `whsec_${Buffer.from('the previous secret, 32 bytes!!').toString('base64')}`;
const NOW = 1767225600; // 2026-01-01T00:00:00Z, in seconds
const BODY = '{"type":"healing.deployed","timestamp":"2026-01-01T00:00:00+00:00","data":{"id":"heal_1","status":"deployed","new_version":3}}';

// The signature Anchor sends, computed from the Standard Webhooks spec (not from the code under test).
const sign = (secret, msgId, timestamp, body) =>
  `v1,${createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64')).update(`${msgId}.${timestamp}.${body}`).digest('base64')}`;
const headers = (signatures, { timestamp = NOW, msgId = 'msg_1' } = {}) => ({
  'webhook-id': msgId, 'webhook-timestamp': String(timestamp), 'webhook-signature': [].concat(signatures).join(' '),
});
const at = (seconds) => ({ now: new Date(seconds * 1000) });
const refusedWith = (code) => (err) => err instanceof WebhookVerificationError && err.code === code;

test('verifyWebhook accepts a message signed by the product\u2019s library (standardwebhooks), in camelCase', async () => {
  // Made with Python's standardwebhooks.Webhook(SECRET).sign(msg_id="msg_1", timestamp=NOW, data=body), as Anchor signs.
  const body = '{"type":"webhook.test","timestamp":"2026-01-01T00:00:00+00:00","data":{"endpoint":"wh_1","message":"Test event from Anchor","error_type":null}}';
  const signature = 'v1,z1aAxgJGwt6qXMtqwfwpd07F4sRoyo+te81nghnOX0c=';
  const message = await verifyWebhook(Buffer.from(body), headers(signature), SECRET, at(NOW + 60));
  assert.deepEqual(message, {
    type: 'webhook.test', timestamp: '2026-01-01T00:00:00+00:00', data: { endpoint: 'wh_1', message: 'Test event from Anchor', errorType: null },
  });
});

test('verifyWebhook takes a string, Buffer or ArrayBuffer body and fetch Headers or a plain object in any case', async () => {
  const signature = sign(SECRET, 'msg_1', NOW, BODY);
  const upper = { 'Webhook-Id': 'msg_1', 'WEBHOOK-TIMESTAMP': String(NOW), 'Webhook-Signature': signature };
  for (const [body, given] of [
    [BODY, upper],
    [Buffer.from(BODY), headers(signature)],
    [new TextEncoder().encode(BODY).buffer, new Headers(headers(signature))],
  ]) {
    const message = await verifyWebhook(body, given, SECRET, { now: NOW * 1000 });
    assert.equal(message.data.newVersion, 3);
  }
});

test('verifyWebhook during a rotation accepts either secret, and neither other', async () => {
  const both = headers([sign(SECRET, 'msg_1', NOW, BODY), sign(OLD_SECRET, 'msg_1', NOW, BODY)]);
  assert.equal((await verifyWebhook(BODY, both, SECRET, at(NOW))).type, 'healing.deployed');
  assert.equal((await verifyWebhook(BODY, both, OLD_SECRET, at(NOW))).type, 'healing.deployed');
  const other = `whsec_${Buffer.alloc(32, 'x').toString('base64')}`;
  await assert.rejects(verifyWebhook(BODY, both, other, at(NOW)), refusedWith('invalid_signature'));
});

test('verifyWebhook refuses a changed body, a wrong secret, and a changed id or timestamp', async () => {
  const signature = sign(SECRET, 'msg_1', NOW, BODY);
  const tampered = BODY.replace('"deployed"', '"rejected"');
  await assert.rejects(verifyWebhook(tampered, headers(signature), SECRET, at(NOW)), (err) => {
    assert.ok(refusedWith('invalid_signature')(err));
    assert.match(err.message, /raw body/);
    return true;
  });
  const wrong = `whsec_${Buffer.alloc(32, 'y').toString('base64')}`;
  await assert.rejects(verifyWebhook(BODY, headers(signature), wrong, at(NOW)), refusedWith('invalid_signature'));
  await assert.rejects(verifyWebhook(BODY, headers(signature, { msgId: 'msg_2' }), SECRET, at(NOW)), refusedWith('invalid_signature'));
  await assert.rejects(verifyWebhook(BODY, headers(signature, { timestamp: NOW + 1 }), SECRET, at(NOW)), refusedWith('invalid_signature'));
});

test('verifyWebhook refuses a timestamp more than the tolerance (ms) off', async () => {
  const signedAt = (t) => headers(sign(SECRET, 'msg_1', t, BODY), { timestamp: t });
  await assert.rejects(verifyWebhook(BODY, signedAt(NOW - 301), SECRET, at(NOW)), refusedWith('timestamp_too_old'));
  await assert.rejects(verifyWebhook(BODY, signedAt(NOW + 301), SECRET, at(NOW)), refusedWith('timestamp_too_new'));
  assert.equal((await verifyWebhook(BODY, signedAt(NOW - 300), SECRET, at(NOW))).type, 'healing.deployed');
  assert.equal((await verifyWebhook(BODY, signedAt(NOW - 301), SECRET, { ...at(NOW), tolerance: 600_000 })).type, 'healing.deployed');
  // Without `now`, the current time: a message signed long ago is refused.
  await assert.rejects(verifyWebhook(BODY, signedAt(NOW), SECRET), refusedWith('timestamp_too_old'));
});

test('verifyWebhook refuses missing or malformed headers and skips signatures it cannot read', async () => {
  const good = headers(sign(SECRET, 'msg_1', NOW, BODY));
  for (const [changes, code] of [
    [{ 'webhook-id': '' }, 'missing_header'],
    [{ 'webhook-signature': undefined }, 'missing_header'],
    [{ 'webhook-timestamp': '1767225600.5' }, 'invalid_timestamp'],
    [{ 'webhook-timestamp': 'soon' }, 'invalid_timestamp'],
    [{ 'webhook-signature': 'v1a,c2lnbmF0dXJl v1,not*base64 nocomma' }, 'invalid_signature'],
  ]) {
    await assert.rejects(verifyWebhook(BODY, { ...good, ...changes }, SECRET, at(NOW)), refusedWith(code), JSON.stringify(changes));
  }
  const mixed = headers(['v1a,c2lnbmF0dXJl', 'garbage', 'v1,%%%', good['webhook-signature']]);
  assert.equal((await verifyWebhook(BODY, mixed, SECRET, at(NOW))).data.id, 'heal_1');
});

test('verifyWebhook refuses a bad secret or an already parsed body with a TypeError', async () => {
  const good = headers(sign(SECRET, 'msg_1', NOW, BODY));
  await assert.rejects(verifyWebhook(BODY, good, 'whsec_not base64!', at(NOW)), TypeError);
  await assert.rejects(verifyWebhook(BODY, good, 'whsec_', at(NOW)), TypeError);
  await assert.rejects(verifyWebhook(JSON.parse(BODY), good, SECRET, at(NOW)), TypeError);
});
