// PuoMemoClient's custom events against the fake WebSocket: publish() frames and checks, handlers per full name.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CUSTOM_EVENT_PATTERN, PuoMemoClient } from '../../clients/js/puomemo-client.js';
import { FakeClock, fakeWebSocket, flush, silent } from './fakes.mjs';

const URL = 'ws://memo.test/ws';

function setup(options = {}) {
  const WebSocket = fakeWebSocket();
  const client = new PuoMemoClient({ url: URL, WebSocket, clock: new FakeClock(), logger: silent, ...options });
  return { client, WebSocket, socket: () => WebSocket.sockets.at(-1) };
}

async function connected(options = {}) {
  const s = setup(options);
  const ready = s.client.connect();
  for (let i = 0; i < 200 && !s.WebSocket.sockets.length; i += 1) await flush(); // msgpack imports its codec first
  s.socket().open();
  await ready;
  return s;
}

for (const encoding of ['json', 'msgpack']) {
  test(`publish sends {type: 'publish', data: {event, payload, memory_id?}} (${encoding})`, async () => {
    const s = await connected({ encoding });
    const payload = { x: 3, nested: { list: [1, 'two', null] }, text: 'é🙂' };
    assert.equal(s.client.publish('custom.cursor.moved', payload, 'a6b1c7f0-0000-4000-8000-000000000001'), true);
    assert.equal(s.client.publish('custom.ping', {}), true);
    const [first, second] = s.socket().frames('publish');
    assert.deepEqual(Object.keys(first).sort(), ['data', 'id', 'timestamp', 'type']);
    assert.deepEqual(first.data, {
      event: 'custom.cursor.moved',
      payload,
      memory_id: 'a6b1c7f0-0000-4000-8000-000000000001',
    });
    assert.deepEqual(second.data, { event: 'custom.ping', payload: {} }); // no memory_id: the whole tenant
    assert.equal(typeof s.socket().raw.at(-1), encoding === 'json' ? 'string' : 'object');
  });
}

test('event names follow ^custom\\.[a-z0-9][a-z0-9_.-]{0,63}$; bad names and payloads throw TypeError', async () => {
  const s = await connected();
  const good = ['custom.a', 'custom.0', `custom.${'a'.repeat(64)}`, 'custom.cursor.moved', 'custom.a-b_c.d-'];
  const bad = [
    'custom.',
    'custom',
    'custom.A',
    'Custom.x',
    'custom._x',
    'custom..x',
    'custom.-x',
    'custom.a b',
    'custom.é',
    'custom.x\n',
    `custom.${'a'.repeat(65)}`,
    'memory.created',
    'x.custom.a',
    '',
    null,
    42,
  ];
  for (const name of good) assert.equal(s.client.publish(name, {}), true, name);
  for (const name of bad) assert.throws(() => s.client.publish(name, {}), TypeError, String(name));
  for (const payload of [null, undefined, [], 'text', 3]) {
    assert.throws(() => s.client.publish('custom.a', payload), /payload must be an object/);
  }
  assert.throws(() => s.client.publish('custom.a', {}, 7), /memoryId must be a string/);
  assert.equal(s.client.publish('custom.a', {}, null), true);
  assert.deepEqual(
    s.socket().frames('publish').map((frame) => frame.data.event),
    [...good, 'custom.a'],
  );
  assert.equal(CUSTOM_EVENT_PATTERN.test(`custom.${'a'.repeat(64)}`), true);
});

test('publish returns false (and sends nothing) unless open; a bad name throws even then', async () => {
  const s = setup();
  assert.equal(s.client.publish('custom.a', {}), false); // never connected
  assert.throws(() => s.client.publish('custom.A', {}), TypeError);
  s.client.connect();
  await flush();
  s.socket().accept(); // connected, not yet subscribed: an error reply now would read as a refused subscribe
  assert.equal(s.client.publish('custom.a', {}), false);
  s.socket().push('subscribed', { channels: ['memories', 'tenant.updates'] });
  assert.equal(s.client.publish('custom.a', {}), true);
  s.socket().drop(1006); // reconnecting
  assert.equal(s.client.publish('custom.a', {}), false);
  s.client.disconnect();
  assert.equal(s.client.publish('custom.a', {}), false);
  assert.equal(s.WebSocket.sockets[0].frames('publish').length, 1);
});

test("custom events reach on('custom.<name>') and '*' by full name, no seq; an error reply does not stop", async () => {
  const s = await connected({ lastSeq: 5 });
  assert.deepEqual(s.socket().frames('subscribe')[0].data.channels, ['memories', 'tenant.updates']); // not by default
  assert.equal(s.client.subscribe(['custom']), true);
  assert.deepEqual(s.socket().frames('subscribe')[1].data, { channels: ['custom'] });
  s.socket().push('subscribed', { channels: ['custom', 'memories', 'tenant.updates'] });
  const cursor = [];
  const all = [];
  const patterns = [];
  const errors = [];
  s.client.on('custom.cursor', (data, message) => cursor.push([data, message.type, 'seq' in message]));
  s.client.on('custom.*', (data) => patterns.push(data)); // a name like any other: no wildcard but '*'
  s.client.on('*', (message) => all.push(message.type));
  s.client.on('error', (data) => errors.push(data.message));
  const data = {
    event: 'custom.cursor',
    payload: { line: 4 },
    memory_id: null,
    user_id: '2',
    user_name: 'bob',
  };
  s.socket().push('custom.cursor', data);
  s.socket().push('custom.selection', { ...data, event: 'custom.selection' });
  assert.deepEqual(cursor, [[data, 'custom.cursor', false]]);
  assert.deepEqual(all, ['custom.cursor', 'custom.selection']);
  assert.deepEqual(patterns, []);
  assert.equal(s.client.lastSeq, 5, 'ephemeral: no seq to follow');
  s.client.publish('custom.cursor', { line: 5 });
  s.socket().push('error', { message: 'Custom event rate limit exceeded' });
  assert.deepEqual(errors, ['Custom event rate limit exceeded']);
  assert.equal(s.client.state, 'open');
  s.client.unsubscribe(['custom']);
  s.socket().push('unsubscribed', { channels: ['memories', 'tenant.updates'] });
  assert.deepEqual(s.client.channels, ['memories', 'tenant.updates']);
});
