// PuoMemoClient's encodings against the fake WebSocket: MessagePack by subprotocol, the JSON fallback, bad frames.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MSGPACK_PROTOCOL, PuoMemoClient } from '../../clients/js/puomemo-client.js';
import { decode, encode } from '../../clients/js/vendor/msgpack/index.mjs';
import { FakeClock, MSGPACK, fakeWebSocket, flush } from './fakes.mjs';

const URL = 'ws://memo.test/ws';

function setup(options = {}, server = {}) {
  const clock = new FakeClock();
  const WebSocket = fakeWebSocket(server);
  const logged = [];
  const logger = {
    warn: (...args) => logged.push(['warn', ...args]),
    error: (...args) => logged.push(['error', ...args]),
  };
  const client = new PuoMemoClient({ url: URL, WebSocket, clock, random: () => 0, logger, ...options });
  const states = [];
  client.on('state', (event) => states.push(event));
  return { client, clock, WebSocket, logged, states, socket: () => WebSocket.sockets.at(-1) };
}

/** Let the client get its socket: a msgpack client first imports its codec. */
async function untilSocket(s, count) {
  for (let i = 0; i < 200 && s.WebSocket.sockets.length < count; i += 1) await flush();
  assert.equal(s.WebSocket.sockets.length, count, 'the client opened its socket');
  return s.socket();
}

/** Connect and open the first connection. */
async function connected(options = {}, server = {}) {
  const s = setup(options, server);
  const ready = s.client.connect();
  (await untilSocket(s, 1)).open();
  await ready;
  return s;
}

/** `bytes` copied into an ArrayBuffer of their own, as a browser hands a binary frame over. */
function arrayBuffer(bytes) {
  return new Uint8Array(bytes).buffer;
}

const isBytes = (data) => data instanceof Uint8Array;

test('msgpack: offers puomemo.msgpack, reads ArrayBuffers, every frame both ways is binary MessagePack', async () => {
  const s = await connected({ encoding: 'msgpack', lastSeq: 3 });
  const socket = s.socket();
  assert.deepEqual(socket.protocols, [MSGPACK_PROTOCOL]);
  assert.equal(MSGPACK_PROTOCOL, MSGPACK);
  assert.equal(socket.binaryType, 'arraybuffer');
  assert.equal(socket.protocol, MSGPACK);
  assert.equal(s.client.wireEncoding, 'msgpack');
  assert.equal(s.client.encoding, 'msgpack');
  const [subscribe] = socket.raw;
  assert.ok(isBytes(subscribe), 'the subscribe went as a binary frame');
  assert.equal(subscribe[0], 0x84, 'a MessagePack map of 4 entries');
  const envelope = decode(subscribe);
  assert.deepEqual(Object.keys(envelope).sort(), ['data', 'id', 'timestamp', 'type']);
  assert.equal(envelope.type, 'subscribe');
  assert.deepEqual(envelope.data, { channels: ['memories', 'tenant.updates'], last_seq: 3 });
  assert.equal(envelope.timestamp, new Date(s.clock.now()).toISOString()); // timestamps stay ISO strings
  const all = [];
  const created = [];
  s.client.on('*', (message) => all.push(message));
  s.client.on('memory.created', (data, message) => created.push([data.memory.title, message.seq]));
  const content = 'é🙂x'.repeat(25000); // 100,000 characters: a str 32 in MessagePack
  socket.push('memory.created', { memory: { id: 'm1', version: 1, title: 't', content } }, { seq: 9 });
  assert.deepEqual(created, [['t', 9]]);
  assert.equal(all[0].data.memory.content, content);
  assert.deepEqual(Object.keys(all[0]).sort(), ['data', 'id', 'seq', 'timestamp', 'type']);
  assert.equal(s.client.lastSeq, 9);
  const pong = s.client.ping(); // the fake answers in MessagePack
  assert.deepEqual(await pong, { timestamp: 'now' });
  assert.equal(s.client.send('typing', { memory_id: 'm1', skipped: undefined }), true); // left out, as JSON does
  assert.deepEqual(socket.frames('typing')[0].data, { memory_id: 'm1' });
  assert.ok(socket.raw.every(isBytes), 'no text frame on a msgpack connection');
  socket.drop(1006);
  await s.clock.advance(s.states.at(-1).delay);
  const next = await untilSocket(s, 2);
  next.accept();
  assert.deepEqual(next.protocols, [MSGPACK_PROTOCOL]); // offered again on every reconnect
  assert.ok(isBytes(next.raw[0]));
  assert.deepEqual(decode(next.raw[0]).data.last_seq, 9);
});

test('msgpack: a server frame built byte by byte decodes to the JSON envelope', async () => {
  const s = await connected({ encoding: 'msgpack' });
  const text = (value) => [0xa0 + value.length, ...Buffer.from(value)]; // fixstr
  const bytes = [
    0x85, // fixmap, 5 entries
    ...text('id'),
    ...text('e1'),
    ...text('type'),
    ...text('memory.updated'),
    ...text('timestamp'),
    ...text('2026-12-02T16:30:00Z'),
    ...text('seq'),
    0xcd, 0x01, 0x2c, // uint 16: 300
    ...text('data'),
    0x81, // fixmap, 1 entry
    ...text('memory'),
    0x83,
    ...text('id'),
    ...text('m1'),
    ...text('version'),
    0x02,
    ...text('tags'),
    0x92, // fixarray, 2 entries
    0xc0, // nil
    0xc3, // true
  ];
  const all = [];
  s.client.on('*', (message) => all.push(message));
  s.socket().deliver(bytes);
  assert.deepEqual(all, [
    {
      id: 'e1',
      type: 'memory.updated',
      timestamp: '2026-12-02T16:30:00Z',
      seq: 300,
      data: { memory: { id: 'm1', version: 2, tags: [null, true] } },
    },
  ]);
  assert.equal(s.client.lastSeq, 300);
});

test('msgpack against a server that chose no subprotocol: JSON both ways on that connection, one warning', async () => {
  const s = await connected({ encoding: 'msgpack' }, { serverProtocols: [] }); // a server from before MessagePack
  const socket = s.socket();
  assert.deepEqual(socket.protocols, [MSGPACK_PROTOCOL]);
  assert.equal(socket.protocol, '');
  assert.equal(s.client.wireEncoding, 'json');
  assert.equal(typeof socket.raw[0], 'string');
  assert.equal(JSON.parse(socket.raw[0]).type, 'subscribe');
  const seen = [];
  s.client.on('memory.deleted', (data) => seen.push(data.memory_id));
  socket.push('memory.deleted', { memory_id: 'm1' }, { seq: 2 }); // a text frame
  s.client.send('typing', { memory_id: 'm1' });
  assert.deepEqual(seen, ['m1']);
  assert.ok(socket.raw.every((data) => typeof data === 'string'), 'no binary frame to an old server');
  socket.drop(1006);
  await s.clock.advance(s.states.at(-1).delay);
  (await untilSocket(s, 2)).open();
  assert.equal(s.client.state, 'open');
  const warnings = s.logged.filter(([level]) => level === 'warn');
  assert.equal(warnings.length, 1, 'warned once, not on every reconnect');
  assert.match(warnings[0][1], /no subprotocol.*JSON/);
});

test('json (the default): no subprotocol offered, text frames, and a binary frame is logged and dropped', async () => {
  const s = await connected();
  const socket = s.socket();
  assert.deepEqual(socket.protocols, []);
  assert.equal(socket.binaryType, 'blob');
  assert.equal(s.client.encoding, 'json');
  assert.equal(s.client.wireEncoding, 'json');
  assert.ok(socket.raw.every((data) => typeof data === 'string'));
  const all = [];
  s.client.on('*', (message) => all.push(message.type));
  socket.deliver(encode({ id: 'x', type: 'memory.deleted', timestamp: 'now', data: { memory_id: 'm1' } }));
  assert.deepEqual(all, []);
  assert.match(s.logged.at(-1)[1], /failed to parse/);
  socket.push('pong', { timestamp: 'now' });
  assert.deepEqual(all, ['pong']);
  assert.equal(s.client.state, 'open');
});

test('msgpack: bad binary frames are logged and dropped; the connection goes on', async () => {
  const s = await connected({ encoding: 'msgpack' });
  const socket = s.socket();
  const all = [];
  s.client.on('*', (message) => all.push(message.type));
  socket.deliver([0xc1]); // a byte MessagePack never uses
  socket.deliver([0x85, 0xa2]); // cut short
  socket.deliver(encode([1, 2])); // not a map: no type
  socket.binaryType = 'blob'; // a WebSocket that ignored binaryType hands over a Blob
  socket.deliver(encode({ type: 'pong', data: {} }));
  assert.deepEqual(all, []);
  assert.equal(s.logged.filter(([level]) => level === 'error').length, 3); // the non-map decodes, and is ignored
  assert.match(String(s.logged.at(-1)[3]), /Blob/);
  socket.binaryType = 'arraybuffer';
  socket.push('pong', { timestamp: 'now' });
  socket.onmessage({ data: Buffer.from(encode({ type: 'presence', data: { users: [] } })) }); // Node's ws: a Buffer
  socket.onmessage({ data: arrayBuffer(encode({ type: 'error', data: { message: 'Invalid message format' } })) });
  assert.deepEqual(all, ['pong', 'presence', 'error']);
  assert.equal(s.client.state, 'open');
});

test('msgpack: a codec that fails to load counts as a failed attempt and is retried with backoff', async () => {
  const s = setup({ encoding: 'msgpack' });
  let fail = true;
  const load = s.client._loadCodec;
  s.client._loadCodec = async () => {
    if (fail) throw new Error('404 vendor/msgpack/index.mjs');
    return load();
  };
  const ready = s.client.connect();
  await flush();
  assert.equal(s.WebSocket.sockets.length, 0, 'no socket, no ticket spent');
  const event = s.states.at(-1);
  assert.deepEqual(
    [event.state, event.code, event.delay, event.reason],
    ['reconnecting', 1006, 500, 'no MessagePack codec: 404 vendor/msgpack/index.mjs'],
  );
  fail = false;
  await s.clock.advance(500);
  (await untilSocket(s, 1)).open();
  await ready;
  assert.equal(s.client.wireEncoding, 'msgpack');
});

test('an unknown encoding is refused; wireEncoding is null with no open connection', async () => {
  const WebSocket = fakeWebSocket();
  assert.throws(() => new PuoMemoClient({ url: URL, WebSocket, encoding: 'cbor' }), /must be 'json' or 'msgpack'/);
  const s = setup({ encoding: 'msgpack' });
  assert.equal(s.client.wireEncoding, null);
  s.client.connect();
  const socket = await untilSocket(s, 1);
  assert.equal(s.client.wireEncoding, null, 'not known before the handshake');
  socket.open();
  s.client.disconnect();
  assert.equal(s.client.wireEncoding, null);
});

test('a failed handshake is one failed attempt, with or without the close event (Node 20 fires none)', async () => {
  for (const closeEvent of [true, false]) {
    const s = setup({ encoding: 'msgpack' }, { serverProtocols: [] });
    const closes = [];
    s.client.on('closed', (event) => closes.push(event));
    s.client.connect();
    (await untilSocket(s, 1)).fail({ closeEvent });
    assert.equal(closes.length, 1, 'one closed event');
    assert.deepEqual([closes[0].code, closes[0].reconnect], [1006, true]);
    assert.deepEqual([s.client.state, s.states.at(-1).delay], ['reconnecting', 500]);
    await s.clock.advance(500);
    const next = await untilSocket(s, 2);
    next.open(); // an error after the handshake waits for its close event
    next.onerror({ type: 'error' });
    assert.equal(s.client.state, 'open');
    s.client.disconnect();
  }
});
