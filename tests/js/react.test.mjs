// usePuoMemoWebSocket on PuoMemoClient, rendered with a small fake of React's hooks (fake-react.mjs).
import assert from 'node:assert/strict';
import { register } from 'node:module';
import { test } from 'node:test';
import { makeUsePuoMemoWebSocket } from '../../clients/js/puomemo-hook.js';
import * as React from './fake-react.mjs';
import { FakeClock, fakeWebSocket, flush, silent } from './fakes.mjs';

const URL = 'ws://memo.test/ws';

function mount(usePuoMemoWebSocket, props) {
  const WebSocket = fakeWebSocket();
  const clock = new FakeClock();
  const base = { url: URL, WebSocket, clock, logger: silent, keepalive: null };
  const root = React.render((p) => usePuoMemoWebSocket({ ...base, ...p }), props);
  return { root, clock, WebSocket, socket: () => WebSocket.sockets.at(-1) };
}

test('the hook connects on mount, reports its state, calls the latest callbacks, disconnects on unmount', async () => {
  const usePuoMemoWebSocket = makeUsePuoMemoWebSocket(React);
  const created = [];
  const { root, clock, WebSocket, socket } = mount(usePuoMemoWebSocket, {
    token: 'key-1',
    onMemoryCreated: (data) => created.push(['first', data.memory.id]),
  });
  await flush();
  assert.equal(WebSocket.sockets.length, 1);
  assert.equal(socket().url, `${URL}?token=key-1`);
  assert.deepEqual([root.result.isConnected, root.result.state], [false, 'connecting']);
  assert.equal(root.result.send('ping'), false);
  socket().open();
  assert.deepEqual([root.result.isConnected, root.result.state], [true, 'open']);
  assert.equal(root.result.send('ping'), true);
  assert.equal(root.result.client.state, 'open');

  socket().push('memory.created', { memory: { id: 'a', version: 1 } }, { seq: 1 });
  // A new callback on re-render is used from then on, without reconnecting.
  const updated = [];
  const deleted = [];
  const states = [];
  root.update({
    token: 'key-1',
    onMemoryCreated: (data) => created.push(['second', data.memory.id]),
    onMemoryUpdated: (data) => updated.push(data.memory.id),
    onMemoryDeleted: (data) => deleted.push(data.memory_id),
    onStateChange: (event) => states.push(event.state),
  });
  socket().push('memory.created', { memory: { id: 'b', version: 1 } }, { seq: 2 });
  socket().push('memory.updated', { memory: { id: 'b', version: 2 } }, { seq: 3 });
  socket().push('memory.deleted', { memory_id: 'a' }, { seq: 4 });
  assert.deepEqual(created, [
    ['first', 'a'],
    ['second', 'b'],
  ]);
  assert.deepEqual([updated, deleted], [['b'], ['a']]);
  assert.equal(WebSocket.sockets.length, 1);

  socket().drop(1006);
  assert.deepEqual([root.result.isConnected, root.result.state], [false, 'reconnecting']);
  assert.deepEqual(states, ['reconnecting']);

  const client = root.result.client;
  root.unmount();
  assert.equal(client.state, 'closed');
  await clock.advance(120000);
  assert.equal(WebSocket.sockets.length, 1, 'no reconnect after unmount');
});

test('a new token reconnects with it; unmount closes the socket', async () => {
  const usePuoMemoWebSocket = makeUsePuoMemoWebSocket(React);
  const { root, WebSocket, socket } = mount(usePuoMemoWebSocket, { token: 'old' });
  await flush();
  socket().open();
  const first = socket();
  root.update({ token: 'new' });
  await flush();
  assert.deepEqual(first.closedWith, { code: 1000, reason: '' });
  assert.equal(WebSocket.sockets.length, 2);
  assert.equal(socket().url, `${URL}?token=new`);
  socket().open();
  assert.equal(root.result.isConnected, true);
  const client = root.result.client;
  root.unmount();
  assert.deepEqual(socket().closedWith, { code: 1000, reason: '' });
  assert.equal(client.state, 'closed');
});

test('without a token the hook uses the session (the bare URL)', async () => {
  const usePuoMemoWebSocket = makeUsePuoMemoWebSocket(React);
  const { root, socket } = mount(usePuoMemoWebSocket, {});
  await flush();
  assert.equal(socket().url, URL);
  root.unmount();
});

test("puomemo-react.js imports 'react' by name and exports the hook made from it", async () => {
  // Resolve the bare specifier 'react' to the fake, as a bundler or an import map would to React.
  const fake = new globalThis.URL('./fake-react.mjs', import.meta.url).href;
  const hooks = `export async function resolve(specifier, context, next) {
    return specifier === 'react' ? { url: ${JSON.stringify(fake)}, shortCircuit: true } : next(specifier, context);
  }`;
  register(`data:text/javascript,${encodeURIComponent(hooks)}`);
  const module = await import('../../clients/js/puomemo-react.js');
  assert.equal(typeof module.makeUsePuoMemoWebSocket, 'function');
  const { root, socket } = mount(module.usePuoMemoWebSocket, { token: 'k' });
  await flush();
  socket().open();
  assert.equal(root.result.isConnected, true);
  root.unmount();
  assert.equal(root.result.client.state, 'closed');
});

test('the client module loads without React and without a global WebSocket', async () => {
  const source = await import('node:fs/promises').then((fs) =>
    fs.readFile(new globalThis.URL('../../clients/js/puomemo-client.js', import.meta.url), 'utf8'),
  );
  assert.doesNotMatch(source, /from\s+['"]react['"]/);
  const { PuoMemoClient } = await import('../../clients/js/puomemo-client.js');
  assert.equal(typeof PuoMemoClient, 'function');
});
