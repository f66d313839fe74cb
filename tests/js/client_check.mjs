// Drives clients/js/puomemo-client.js against a live server for tests/test_js_client.py; prints one JSON line a step.
// Needs WS_URL, HTTP_URL, BOB_KEY, DOOMED_KEY (a key the test revokes when it reads {"step": "revoke"}) and
// SHORT_TOKENS (JWTs for a tokenProvider: the first expires within seconds). Last, a client whose connection
// the server cuts (4002) while memories are written resumes from its last seq: the test compares with the log.
import { PuoMemoClient, jwtExpiry } from '../../clients/js/puomemo-client.js';

const { WS_URL, HTTP_URL, BOB_KEY, DOOMED_KEY, SHORT_TOKENS } = process.env;
const out = (line) => console.log(JSON.stringify(line));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function rest(method, path, token, body = undefined) {
  const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
  const response = await fetch(`${HTTP_URL}${path}`, { method, headers, body: body && JSON.stringify(body) });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

async function aliceToken() {
  const response = await fetch(`${HTTP_URL}/api/v4/auth/token/`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'alice', password: 'pw-live-123' }),
  });
  return (await response.json()).access;
}

const alice = new PuoMemoClient({ url: WS_URL, tokenProvider: aliceToken });
const bob = new PuoMemoClient({ url: WS_URL, token: BOB_KEY });
const doomed = new PuoMemoClient({ url: WS_URL, token: DOOMED_KEY });
const shortTokens = JSON.parse(SHORT_TOKENS);
const shortExpiry = jwtExpiry(shortTokens[0]);
const short = new PuoMemoClient({ url: WS_URL, tokenProvider: async () => shortTokens.shift() });
// Heartbeat: with a short keepalive the client pings by itself, and the server's pongs keep it open.
const beat = new PuoMemoClient({ url: WS_URL, token: BOB_KEY, channels: ['tenant.updates'], keepalive: 400 });
const beatPongs = [];
beat.on('pong', (data) => beatPongs.push(data.timestamp));
const shortEvents = [];
short.on('authenticated', (data) => shortEvents.push({ type: 'authenticated', data, at: Date.now() }));
short.on('closed', (data) => shortEvents.push({ type: 'closed', data }));
const doomedCloses = [];
const doomedStates = [];
doomed.on('closed', (data) => doomedCloses.push(data));
doomed.on('state', ({ state, code }) => doomedStates.push([state, code]));

bob.on('memory.created', (data) => {
  out({ client: 'bob', type: 'memory.created', data });
  const id = data.memory.id;
  out({ step: 'typing', first: alice.typing(id), second: alice.typing(id) });
});
bob.on('memory.typing', async (data) => {
  out({ client: 'bob', type: 'memory.typing', data });
  out({ step: 'presence', users: await alice.presence(), pong: await alice.ping() });
  out({ step: 'refresh', expires_at: await alice.refresh(await aliceToken()) });
  out({ step: 'revoke' });
});

setTimeout(() => {
  out({ step: 'timeout' });
  process.exit(1);
}, 40000);
await Promise.all([alice.connect(), bob.connect(), doomed.connect(), short.connect(), beat.connect()]);
out({ step: 'ready' });
while (!doomedCloses.length) await sleep(50);
await sleep(2500); // a client that reconnected would have closed again by now (first backoff: 0.5-1 s)
while (Date.now() < shortExpiry + 1500) await sleep(100); // past the first short token's expiry
const shortState = { events: [...shortEvents], state: short.state, first_expiry: shortExpiry };
const beatState = { pongs: beatPongs.length, state: beat.state };
for (const client of [alice, bob, short, beat]) client.disconnect();

// Resume: reconnects wait for `gate`, so the writes below happen while the client has no connection.
let gate = Promise.resolve();
let openGate = () => {};
const resumer = new PuoMemoClient({
  url: WS_URL,
  token: BOB_KEY,
  tokenProvider: async () => {
    await gate;
    return BOB_KEY;
  },
  backoffBase: 200,
});
const received = [];
const resumed = [];
const resumerCloses = [];
for (const type of ['memory.created', 'memory.updated', 'memory.deleted', 'memory.embedding_complete']) {
  // Handlers run as each frame arrives, so lastSeq is this event's seq.
  resumer.on(type, (data) => received.push({ type, seq: resumer.lastSeq, id: data.memory?.id ?? data.memory_id }));
}
resumer.on('resumed', (data) => resumed.push(data));
resumer.on('closed', (data) => resumerCloses.push(data));
const token = await aliceToken();
const memories = '/api/v4/memories/';
const startSeq = (await rest('GET', '/api/v4/events?after_seq=0&limit=1', BOB_KEY)).current_seq;
await resumer.connect();
const first = await rest('POST', memories, token, { title: 'js-before', visibility: 'team' });
while (received.length < 1) await sleep(20);
gate = new Promise((resolve) => (openGate = resolve));
for (let i = 0; i < 300; i += 1) if (!resumer.send('ping')) break; // past twice the rate limit: 4002
while (!resumerCloses.length) await sleep(20);
await rest('PATCH', `${memories}${first.id}/`, token, { title: 'js-gap' });
await rest('POST', memories, token, { title: 'js-gap-2', visibility: 'team' });
const hidden = await rest('POST', memories, token, { title: 'js-gap-private', visibility: 'private' });
openGate();
while (!resumed.length) await sleep(20);
await rest('POST', memories, token, { title: 'js-after', visibility: 'team' });
while (received.length < 4) await sleep(20);
await sleep(500); // a duplicate would have arrived by now
out({
  step: 'resume',
  start_seq: startSeq,
  received,
  resumed,
  closes: resumerCloses,
  last_seq: resumer.lastSeq,
  hidden_id: hidden.id,
});
resumer.disconnect();
out({
  step: 'done',
  doomed_closes: doomedCloses,
  doomed_close_code: doomed.closeCode,
  doomed_states: doomedStates,
  short: shortState,
  beat: beatState,
});
process.exit(0);
