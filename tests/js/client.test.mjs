// PuoMemoClient against a fake WebSocket and a fake clock: backoff, close codes, resume, heartbeat, states, handlers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  PuoMemoClient,
  PuoMemoClosedError,
  PuoMemoWebSocket,
  backoffDelay,
} from '../../clients/js/puomemo-client.js';
import { FakeClock, fakeJwt, fakeWebSocket, flush, silent } from './fakes.mjs';

const URL = 'ws://memo.test/ws';
const STEPS_S = [1, 2, 4, 8, 16, 32, 60, 60, 60];

function setup(options = {}) {
  const clock = new FakeClock();
  const WebSocket = fakeWebSocket();
  const client = new PuoMemoClient({ url: URL, WebSocket, clock, random: () => 0.5, logger: silent, ...options });
  const states = [];
  const closes = [];
  client.on('state', (event) => states.push(event));
  client.on('closed', (event) => closes.push(event));
  const socket = () => WebSocket.sockets.at(-1);
  return { client, clock, WebSocket, states, closes, socket };
}

/** Connect and open the first connection; returns the setup. */
async function connected(options = {}) {
  const s = setup(options);
  const ready = s.client.connect();
  await flush();
  s.socket().open();
  await ready;
  return s;
}

/** Wait out the pending reconnect delay and return the new socket. */
async function nextSocket(s) {
  const before = s.WebSocket.sockets.length;
  await s.clock.advance(s.states.at(-1).delay);
  assert.equal(s.WebSocket.sockets.length, before + 1, 'a new connection attempt after the delay');
  return s.socket();
}

test('backoff doubles from 1 s to a 60 s cap; each retry waits exactly its delay', async () => {
  const s = setup({ random: () => 0 });
  s.client.connect();
  await flush();
  for (const step of STEPS_S) {
    s.socket().drop(1006); // the handshake failed
    const event = s.states.at(-1);
    assert.equal(event.state, 'reconnecting');
    assert.equal(event.delay, (step * 1000) / 2); // random() = 0: the bottom of [step/2, step)
    const count = s.WebSocket.sockets.length;
    await s.clock.advance(event.delay - 1);
    assert.equal(s.WebSocket.sockets.length, count, 'no attempt before the delay');
    await s.clock.advance(1);
    assert.equal(s.WebSocket.sockets.length, count + 1);
    assert.equal(s.states.at(-1).state, 'connecting');
  }
  assert.deepEqual(
    s.states.filter((e) => e.state === 'reconnecting').map((e) => e.attempt),
    STEPS_S.map((_, i) => i + 1),
  );
});

test('jitter keeps each delay in [step/2, step)', async () => {
  const draws = [0, 0.25, 0.999999, 0.5, 0.1, 0.75, 0.999999, 0, 0.3];
  const s = setup({ random: () => draws.shift() });
  const expected = [...draws];
  s.client.connect();
  await flush();
  for (const [i, step] of STEPS_S.entries()) {
    s.socket().drop(1006);
    const { delay } = s.states.at(-1);
    assert.equal(delay, (step * 1000) / 2 + expected[i] * ((step * 1000) / 2));
    assert.ok(delay >= (step * 1000) / 2 && delay < step * 1000, `${delay} for a ${step} s step`);
    await nextSocket(s);
  }
  for (let failures = 0; failures < 12; failures += 1) {
    const step = Math.min(60000, 1000 * 2 ** failures);
    for (let i = 0; i < 200; i += 1) {
      const delay = backoffDelay(failures); // the default random: Math.random
      assert.ok(delay >= step / 2 && delay < step);
    }
  }
});

test('a good connection resets the backoff; a short one does not', async () => {
  const s = setup({ random: () => 0 });
  s.client.connect();
  await flush();
  for (let i = 0; i < 3; i += 1) {
    s.socket().drop(1006);
    await nextSocket(s); // waited 1, 2, 4 s (steps)
  }
  s.socket().open();
  await s.clock.advance(1000); // open, but not for stableAfter (5 s)
  s.socket().drop(1006);
  assert.equal(s.states.at(-1).delay, 4000); // the 8 s step: no reset
  (await nextSocket(s)).open();
  await s.clock.advance(5000); // stayed open: a good connection
  s.socket().drop(1006);
  assert.equal(s.states.at(-1).delay, 500); // back to the 1 s step
  assert.equal(s.states.at(-1).attempt, 1);
});

for (const code of [4001, 4003, 1009]) {
  test(`close ${code} stops the client for good`, async () => {
    const s = await connected();
    s.socket().drop(code, 'no');
    assert.deepEqual(s.closes.at(-1), { code, reason: 'no', reconnect: false });
    const event = s.states.at(-1);
    assert.equal(event.state, 'closed');
    assert.equal(event.code, code);
    assert.equal(event.previous, 'open');
    assert.equal(s.client.state, 'closed');
    assert.equal(s.client.closeCode, code);
    assert.equal(s.clock.nextIn(), null, 'no timer left: no retry, no heartbeat');
    await s.clock.advance(10 * 60 * 1000);
    assert.equal(s.WebSocket.sockets.length, 1);
  });

  test(`close ${code} before the first open rejects connect()`, async () => {
    const s = setup();
    const ready = s.client.connect();
    await flush();
    s.socket().accept();
    s.socket().drop(code, 'refused');
    await assert.rejects(ready, (error) => error instanceof PuoMemoClosedError && error.code === code);
    assert.equal(s.states.at(-1).state, 'closed');
  });
}

for (const code of [1001, 1006, 1011, 1013, 4008, 1000, 4500]) {
  test(`close ${code} reconnects with backoff, reset after a good connection`, async () => {
    const s = await connected({ random: () => 0 });
    await s.clock.advance(60000);
    s.socket().drop(code, 'bye');
    assert.deepEqual(s.closes.at(-1), { code, reason: 'bye', reconnect: true });
    const event = s.states.at(-1);
    assert.deepEqual([event.state, event.code, event.delay, event.attempt], ['reconnecting', code, 500, 1]);
    const next = await nextSocket(s);
    next.open();
    assert.equal(s.client.state, 'open');
  });
}

for (const code of [4002, 4029]) {
  test(`close ${code} backs off: the wait grows even after connections that stayed open`, async () => {
    const s = await connected({ random: () => 0 });
    const delays = [];
    for (let i = 0; i < 3; i += 1) {
      await s.clock.advance(60000); // long past stableAfter
      s.socket().drop(code);
      assert.equal(s.closes.at(-1).reconnect, true);
      delays.push(s.states.at(-1).delay);
      (await nextSocket(s)).open();
    }
    assert.deepEqual(delays, [500, 1000, 2000]);
    await s.clock.advance(60000);
    s.socket().drop(1006); // a good connection ending otherwise resets
    assert.equal(s.states.at(-1).delay, 500);
  });
}

test('state events: connecting, open, reconnecting, connecting, open, closed', async () => {
  const s = await connected();
  s.socket().drop(1006);
  (await nextSocket(s)).open();
  s.client.disconnect();
  assert.deepEqual(
    s.states.map((e) => [e.previous, e.state]),
    [
      ['closed', 'connecting'],
      ['connecting', 'open'],
      ['open', 'reconnecting'],
      ['reconnecting', 'connecting'],
      ['connecting', 'open'],
      ['open', 'closed'],
    ],
  );
  assert.equal(s.states.at(-1).code, 1000);
  assert.deepEqual(s.socket().closedWith, { code: 1000, reason: '' });
  await flush();
  assert.deepEqual(s.closes.at(-1), { code: 1000, reason: '', reconnect: false }); // the close event still comes
  await s.clock.advance(10 * 60 * 1000);
  assert.equal(s.WebSocket.sockets.length, 2);
  assert.equal(s.client.connected, false);
});

test('disconnect() while waiting to reconnect cancels the retry; connect() starts again', async () => {
  const s = await connected();
  s.socket().drop(1011);
  s.client.disconnect();
  assert.equal(s.client.state, 'closed');
  assert.equal(s.clock.nextIn(), null);
  await s.clock.advance(120000);
  assert.equal(s.WebSocket.sockets.length, 1);
  const ready = s.client.connect();
  await flush();
  s.socket().open();
  await ready;
  assert.equal(s.client.state, 'open');
});

test('every reconnect re-subscribes its channels with last_seq, and follows resumed and resync_required', async () => {
  const s = setup({ lastSeq: 3 });
  s.client.connect();
  await flush();
  s.socket().open();
  assert.deepEqual(s.socket().frames('subscribe')[0].data, { channels: ['memories', 'tenant.updates'], last_seq: 3 });
  s.socket().push('memory.created', { memory: { id: 'm1', version: 1 } }, { seq: 7 });
  assert.equal(s.client.lastSeq, 7);
  assert.equal(s.client.unsubscribe(['tenant.updates']), true);
  assert.deepEqual(s.socket().frames('unsubscribe')[0].data, { channels: ['tenant.updates'] });
  s.socket().push('unsubscribed', { channels: ['memories'] });
  s.socket().drop(1006);
  assert.equal(s.client.subscribe(['tenant.updates']), false); // not sent now, remembered
  s.client.unsubscribe(['tenant.updates']);
  let socket = await nextSocket(s);
  socket.accept();
  assert.deepEqual(socket.sent.map((f) => [f.type, f.data]), [['subscribe', { channels: ['memories'], last_seq: 7 }]]);
  socket.push('subscribed', { channels: ['memories'] });
  socket.push('resumed', { last_seq: 12 }); // past events this connection may not see
  assert.equal(s.client.lastSeq, 12);
  socket.push('resync_required', { reason: 'expired', current_seq: 40 });
  assert.equal(s.client.lastSeq, 40);
  assert.equal(s.client.subscribe(['tenant.updates']), true);
  socket.push('subscribed', { channels: ['memories', 'tenant.updates'] });
  socket.drop(1001);
  socket = await nextSocket(s);
  socket.accept();
  assert.deepEqual(socket.frames('subscribe')[0].data, { channels: ['memories', 'tenant.updates'], last_seq: 40 });
});

test('the epoch travels with last_seq: sent, followed from frames, resumed and resync_required', async () => {
  const s = setup({ lastSeq: 3, epoch: 'e1' });
  s.client.connect();
  await flush();
  s.socket().open();
  assert.deepEqual(s.socket().frames('subscribe')[0].data, {
    channels: ['memories', 'tenant.updates'],
    last_seq: 3,
    epoch: 'e1',
  });
  s.socket().push('memory.created', { memory: { id: 'm1', version: 1 } }, { seq: 7, epoch: 'e1' });
  assert.deepEqual([s.client.lastSeq, s.client.epoch], [7, 'e1']);
  // A restored database numbers anew: the server says so first, and the client follows its position.
  s.socket().push('resync_required', { reason: 'epoch', current_seq: 2, epoch: 'e2' });
  assert.deepEqual([s.client.lastSeq, s.client.epoch], [2, 'e2']);
  // An event of another epoch is a new numbering even without that notice: its seq, not the higher old one.
  s.socket().push('memory.created', { memory: { id: 'm2', version: 1 } }, { seq: 3, epoch: 'e3' });
  assert.deepEqual([s.client.lastSeq, s.client.epoch], [3, 'e3']);
  s.socket().drop(1006);
  const socket = await nextSocket(s);
  socket.accept();
  const resubscribe = socket.frames('subscribe')[0].data;
  assert.deepEqual(resubscribe, { channels: ['memories', 'tenant.updates'], last_seq: 3, epoch: 'e3' });
  socket.push('resumed', { last_seq: 5, epoch: 'e3' });
  assert.deepEqual([s.client.lastSeq, s.client.epoch], [5, 'e3']);
  assert.throws(() => new PuoMemoClient({ url: URL, WebSocket: fakeWebSocket(), epoch: 7 }), /epoch/);
});

test('no lastSeq yet: subscribe carries none', async () => {
  const s = await connected();
  assert.deepEqual(s.socket().frames('subscribe')[0].data, { channels: ['memories', 'tenant.updates'] });
});

test('heartbeat: a ping after keepalive ms of quiet, and a dead link is dropped after replyTimeout', async () => {
  const s = await connected({ keepalive: 30000, replyTimeout: 10000 });
  await s.clock.advance(20000);
  s.client.send('typing', { memory_id: 'm1' });
  s.socket().push('pong', { timestamp: 'x' }); // anything received counts
  await s.clock.advance(29999);
  assert.equal(s.socket().frames('ping').length, 0, 'sent and received 29.999 s ago');
  await s.clock.advance(1);
  assert.equal(s.socket().frames('ping').length, 1);
  s.socket().answersPings = false; // the link dies
  await s.clock.advance(30000);
  assert.equal(s.socket().frames('ping').length, 2);
  assert.equal(s.client.state, 'open');
  await s.clock.advance(10000); // no pong within replyTimeout
  assert.equal(s.client.state, 'reconnecting');
  assert.deepEqual([s.states.at(-1).code, s.states.at(-1).reason], [1006, 'heartbeat timeout']);
  assert.deepEqual(s.closes.at(-1), { code: 1006, reason: 'heartbeat timeout', reconnect: true });
  assert.equal(s.WebSocket.sockets[0].closedWith.code, 1000);
  (await nextSocket(s)).open();
  assert.equal(s.client.state, 'open');
});

test('heartbeat off: keepalive null sends no ping', async () => {
  const s = await connected({ keepalive: null });
  await s.clock.advance(60 * 60 * 1000);
  assert.equal(s.socket().frames('ping').length, 0);
  assert.equal(s.client.state, 'open');
});

test('no subscribed reply within replyTimeout: the attempt is dropped and retried', async () => {
  const s = setup({ replyTimeout: 10000 });
  s.client.connect();
  await flush();
  s.socket().accept();
  await s.clock.advance(10000);
  assert.deepEqual([s.client.state, s.states.at(-1).reason], ['reconnecting', 'no subscribed reply']);
});

test('an unknown channel stops the client: the server would refuse every retry', async () => {
  const s = setup({ channels: ['memories', 'nope'] });
  const ready = s.client.connect();
  await flush();
  s.socket().accept();
  s.socket().push('error', { message: 'Unknown channel(s): nope' });
  await assert.rejects(ready, /Unknown channel/);
  assert.equal(s.client.state, 'closed');
  assert.equal(s.clock.nextIn(), null);
});

test('handlers: on, off, * gets every envelope, a failing handler does not stop the others', async () => {
  const s = await connected();
  const seen = [];
  const all = [];
  const first = (data, frame) => seen.push(['first', data.memory.id, frame.seq]);
  s.client.on('memory.created', () => {
    throw new Error('a broken handler');
  });
  s.client.on('memory.created', first);
  s.client.on('memory.created', (data) => seen.push(['second', data.memory.id]));
  s.client.on('*', (message) => all.push(message));
  s.socket().push('memory.created', { memory: { id: 'a', version: 1 } }, { seq: 1 });
  s.client.off('memory.created', first);
  s.socket().push('memory.created', { memory: { id: 'b', version: 1 } }, { seq: 2 });
  s.socket().push('tenant.user_joined', { user_id: '2', user_name: 'bob', connection_id: 'c' });
  assert.deepEqual(seen, [
    ['first', 'a', 1],
    ['second', 'a'],
    ['second', 'b'],
  ]);
  assert.deepEqual(
    all.map((m) => [m.type, m.seq ?? null]),
    [
      ['memory.created', 1],
      ['memory.created', 2],
      ['tenant.user_joined', null],
    ],
  );
  assert.deepEqual(Object.keys(all[0]).sort(), ['data', 'id', 'seq', 'timestamp', 'type']);
  s.client.off('memory.created');
  s.socket().push('memory.created', { memory: { id: 'c', version: 1 } }, { seq: 3 });
  assert.equal(seen.length, 3);
  assert.throws(() => s.client.on('x', 'not a function'), TypeError);
});

test('an older version of a memory than one seen is dropped', async () => {
  const s = await connected();
  const versions = [];
  s.client.on('memory.updated', (data) => versions.push(data.memory.version));
  for (const version of [2, 3, 1, 4]) s.socket().push('memory.updated', { memory: { id: 'm', version } });
  assert.deepEqual(versions, [2, 3, 4]);
});

test('auth: the session (bare URL), a token, a token provider on reconnects, a ticket per attempt', async () => {
  let s = await connected();
  assert.equal(s.socket().url, URL); // no token or ticket: the browser's cookie authenticates
  s = await connected({ token: 'k+y/1', url: `${URL}?v=4` });
  assert.equal(s.socket().url, `${URL}?v=4&token=k%2By%2F1`);
  const tokens = ['t1', 't2'];
  s = await connected({ tokenProvider: async () => tokens.shift() });
  assert.equal(s.socket().url, `${URL}?token=t1`);
  s.socket().drop(1006);
  assert.equal((await nextSocket(s)).url, `${URL}?token=t2`);
  let n = 0;
  s = await connected({ ticketProvider: async () => `wst_${++n}`, token: 'jwt' });
  s.socket().drop(1006);
  assert.equal((await nextSocket(s)).url, `${URL}?ticket=wst_2`);
  assert.deepEqual(
    s.WebSocket.sockets.map((w) => w.url),
    [`${URL}?ticket=wst_1`, `${URL}?ticket=wst_2`],
  );
});

test('a token provider that fails counts as a failed attempt and is retried with backoff', async () => {
  let fail = true;
  const s = setup({
    random: () => 0,
    tokenProvider: async () => {
      if (fail) throw new Error('offline');
      return 'fresh';
    },
  });
  const ready = s.client.connect();
  await flush();
  assert.equal(s.WebSocket.sockets.length, 0);
  const event = s.states.at(-1);
  assert.deepEqual(
    [event.state, event.delay, event.code, event.reason],
    ['reconnecting', 500, 1006, 'no token or ticket: offline'],
  );
  assert.deepEqual(s.closes, []); // no socket was opened, so none closed
  fail = false;
  await s.clock.advance(500);
  s.socket().open();
  await ready;
  assert.equal(s.socket().url, `${URL}?token=fresh`);
});

test('a JWT from a token provider is renewed in-band 60 s before it expires', async () => {
  const clock = new FakeClock();
  const tokens = [fakeJwt(clock.now() + 300000), fakeJwt(clock.now() + 900000)];
  const s = await connected({ clock, tokenProvider: async () => tokens.shift() });
  s.clock = clock;
  await clock.advance(239999);
  assert.equal(s.socket().frames('auth').length, 0);
  await clock.advance(1);
  const [auth] = s.socket().frames('auth');
  assert.ok(auth, 'auth sent 60 s before exp');
  s.socket().push('authenticated', { expires_at: '2023-11-14T22:28:20Z' });
  await flush();
  assert.equal(s.client.token, auth.data.token);
});

test('ping, presence and refresh resolve with replies; unanswered ones time out; a close rejects them', async () => {
  const s = await connected({ replyTimeout: 5000 });
  s.socket().answersPings = false;
  const pong = s.client.ping();
  s.socket().push('pong', { timestamp: '2026-01-01T00:00:00Z' });
  assert.deepEqual(await pong, { timestamp: '2026-01-01T00:00:00Z' });
  const presence = s.client.presence();
  s.socket().push('presence', { users: [{ user_id: '1', user_name: 'alice', connections: 2 }] });
  assert.deepEqual(await presence, [{ user_id: '1', user_name: 'alice', connections: 2 }]);
  const refresh = s.client.refresh('new-key');
  assert.deepEqual(s.socket().frames('auth')[0].data, { token: 'new-key' });
  s.socket().push('authenticated', { expires_at: null });
  assert.equal(await refresh, null);
  assert.equal(s.client.token, 'new-key');
  const late = assert.rejects(s.client.presence(), /No presence reply within 5000 ms/);
  await s.clock.advance(5000);
  await late;
  const cut = assert.rejects(s.client.ping(), /WebSocket closed/);
  s.socket().drop(1006);
  await cut;
  await assert.rejects(s.client.ping(), /not connected/);
  assert.equal(s.client.send('ping'), false);
});

test('frames sent are the envelope {id, type, timestamp, data}, timestamped by the clock', async () => {
  const s = await connected();
  assert.equal(s.client.send('ping'), true);
  const frame = s.socket().frames('ping')[0];
  assert.deepEqual(Object.keys(frame).sort(), ['data', 'id', 'timestamp', 'type']);
  assert.equal(frame.timestamp, new Date(s.clock.now()).toISOString());
  assert.equal(typeof frame.id, 'string');
});

test('typing is throttled per memory by the clock', async () => {
  const s = await connected();
  assert.equal(s.client.typing('m1'), true);
  assert.equal(s.client.typing('m1'), false);
  assert.equal(s.client.typing('m2'), true);
  await s.clock.advance(2000);
  assert.equal(s.client.typing('m1'), true);
  assert.deepEqual(
    s.socket().frames('typing').map((f) => f.data.memory_id),
    ['m1', 'm2', 'm1'],
  );
});

test('the default URL is same-origin /ws, wss on https pages', () => {
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'location');
  const WebSocket = fakeWebSocket();
  try {
    for (const [protocol, expected] of [
      ['https:', 'wss://memo.example:8443/ws'],
      ['http:', 'ws://memo.example:8443/ws'],
    ]) {
      const location = { protocol, host: 'memo.example:8443' };
      Object.defineProperty(globalThis, 'location', { value: location, configurable: true });
      assert.equal(new PuoMemoClient({ WebSocket }).url, expected);
    }
  } finally {
    if (saved) Object.defineProperty(globalThis, 'location', saved);
    else delete globalThis.location;
  }
  assert.throws(() => new PuoMemoClient({ WebSocket }), /needs options.url/);
});

test('bad options are refused clearly', () => {
  const WebSocket = fakeWebSocket();
  assert.throws(() => new PuoMemoClient({ url: URL, WebSocket, lastSeq: -1 }), /lastSeq/);
  assert.throws(() => new PuoMemoClient({ url: URL, WebSocket, channels: 'memories' }), /channels/);
  assert.throws(() => new PuoMemoClient({ url: URL, WebSocket: undefined }), /No WebSocket/);
});

test('a WebSocket constructor that throws (a malformed URL) stops the client', async () => {
  class Throwing {
    constructor() {
      throw new SyntaxError('Invalid URL');
    }
  }
  const s = setup({ WebSocket: Throwing });
  await assert.rejects(s.client.connect(), /Invalid URL/);
  assert.equal(s.client.state, 'closed');
});

test("PuoMemoWebSocket keeps the spec's constructor (token, url, options)", async () => {
  const WebSocket = fakeWebSocket();
  const ws = new PuoMemoWebSocket('key', URL, { WebSocket, clock: new FakeClock(), logger: silent });
  assert.ok(ws instanceof PuoMemoClient);
  ws.connect();
  await flush();
  assert.equal(WebSocket.sockets[0].url, `${URL}?token=key`);
  ws.disconnect();
});

test('close 1012 (a restart) reconnects at once after a random wait of up to restartJitter, not the backoff', async () => {
  const s = await connected({ random: () => 0.25, restartJitter: 1000 });
  for (let i = 0; i < 3; i += 1) {
    s.socket().drop(1012, 'restart'); // brief connections: a backoff would have grown
    assert.deepEqual(s.closes.at(-1), { code: 1012, reason: 'restart', reconnect: true });
    const event = s.states.at(-1);
    assert.deepEqual([event.state, event.code, event.delay], ['reconnecting', 1012, 250]);
    (await nextSocket(s)).open();
  }
  s.socket().drop(1006); // the next failure backs off as usual
  assert.ok(s.states.at(-1).delay > 250);
});
