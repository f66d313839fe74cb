// Drives clients/js/puomemo-ws.js against a live server for tests/test_clients.py; prints one JSON line per step.
// Needs WS_URL, HTTP_URL, BOB_KEY, DOOMED_KEY (a key the test revokes when it reads {"step": "revoke"}) and
// SHORT_TOKENS (JWTs for a tokenProvider: the first expires within seconds).
import { PuoMemoWebSocket, jwtExpiry } from '../../clients/js/puomemo-ws.js';

const { WS_URL, HTTP_URL, BOB_KEY, DOOMED_KEY, SHORT_TOKENS } = process.env;
const out = (line) => console.log(JSON.stringify(line));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function aliceToken() {
  const response = await fetch(`${HTTP_URL}/api/v4/auth/token/`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'alice', password: 'pw-live-123' }),
  });
  return (await response.json()).access;
}

const alice = new PuoMemoWebSocket(null, WS_URL, { tokenProvider: aliceToken });
const bob = new PuoMemoWebSocket(BOB_KEY, WS_URL);
const doomed = new PuoMemoWebSocket(DOOMED_KEY, WS_URL);
const shortTokens = JSON.parse(SHORT_TOKENS);
const shortExpiry = jwtExpiry(shortTokens[0]);
const short = new PuoMemoWebSocket(null, WS_URL, { tokenProvider: async () => shortTokens.shift() });
const shortEvents = [];
short.on('authenticated', (data) => shortEvents.push({ type: 'authenticated', data, at: Date.now() }));
short.on('closed', (data) => shortEvents.push({ type: 'closed', data }));
const doomedCloses = [];
doomed.on('closed', (data) => doomedCloses.push(data));

bob.on('memory.created', (data) => {
  out({ client: 'bob', type: 'memory.created', data });
  const id = data.memory.id;
  out({ step: 'typing', first: alice.typing(id), second: alice.typing(id) });
});
bob.on('memory.typing', async (data) => {
  out({ client: 'bob', type: 'memory.typing', data });
  out({ step: 'presence', users: await alice.presence() });
  out({ step: 'refresh', expires_at: await alice.refresh(await aliceToken()) });
  out({ step: 'revoke' });
});

setTimeout(() => {
  out({ step: 'timeout' });
  process.exit(1);
}, 30000);
await Promise.all([alice.connect(), bob.connect(), doomed.connect(), short.connect()]);
out({ step: 'ready' });
while (!doomedCloses.length) await sleep(50);
await sleep(2500); // a client that reconnected would have closed again by now (first backoff: 0.5-1 s)
while (Date.now() < shortExpiry + 1500) await sleep(100); // past the first short token's expiry
const shortState = { events: shortEvents, connected: short.connected, first_expiry: shortExpiry };
out({ step: 'done', doomed_closes: doomedCloses, doomed_close_code: doomed.closeCode, short: shortState });
for (const client of [alice, bob, short]) client.disconnect();
process.exit(0);
