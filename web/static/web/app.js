// The memory page: the server-rendered list made live over /ws (session cookie, no token), with resume from the
// snapshot's seq, a polling fallback on GET /api/v4/events, a connection indicator and who is online.

import { PuoMemoClient } from '/static/puomemo/puomemo-client.js';
import { LiveList } from './live-list.js';

const POLL_MS = 3000;
// Failed attempts in a row, never reaching 'open', before the page polls meanwhile.
const FAILURES_BEFORE_POLLING = 2;

const boot = JSON.parse(document.getElementById('boot').textContent);
const indicator = document.getElementById('connection');
const list = new LiveList(document.getElementById('memories'), {
  snapshot: boot,
  metaUrl: boot.urls.meta,
  actions: document.getElementById('memory-actions'),
  empty: document.getElementById('empty'),
});

function show(state, text) {
  indicator.className = `indicator indicator-${state}`;
  indicator.textContent = text;
  indicator.dataset.state = state;
}

/** Reload the list (events older than the log, or a 410 while polling). */
async function resync() {
  const response = await fetch(boot.urls.snapshot, { credentials: 'same-origin' });
  if (response.ok) list.replace(await response.json());
}

// --- Presence -----------------------------------------------------------------

const online = new Map(); // user_id -> {user_name, connections}

function drawPresence() {
  const root = document.getElementById('presence');
  const users = [...online.values()].sort((a, b) => a.user_name.localeCompare(b.user_name));
  root.replaceChildren(
    ...users.map((u) => {
      const li = document.createElement('li');
      li.textContent = u.connections > 1 ? `${u.user_name} (${u.connections})` : u.user_name;
      return li;
    }),
  );
}

function joined({ user_id, user_name }, delta) {
  const user = online.get(user_id) ?? { user_name, connections: 0 };
  user.connections += delta;
  if (user.connections > 0) online.set(user_id, user);
  else online.delete(user_id);
  drawPresence();
}

// --- Polling fallback -----------------------------------------------------------

let pollTimer = null;

async function poll() {
  pollTimer = null;
  let more = false;
  try {
    const response = await fetch(`${boot.urls.events}?after_seq=${list.seq}&limit=1000`, {
      credentials: 'same-origin',
      headers: { Accept: 'application/json' },
    });
    if (response.status === 410) {
      await resync();
    } else if (response.status === 401 || response.status === 403) {
      signedOut();
      return;
    } else if (!response.ok) {
      throw new Error(`HTTP ${response.status}`);
    } else {
      const page = await response.json();
      for (const frame of page.events) list.push(frame);
      list.flush();
      list.seq = Math.max(list.seq, page.last_seq);
      more = page.last_seq < page.current_seq;
    }
    if (client.state !== 'open') show('polling', 'offline (polling)');
  } catch {
    if (client.state !== 'open') show('reconnecting', 'reconnecting…'); // the server itself is away
  }
  if (polling) pollTimer = setTimeout(poll, more ? 0 : POLL_MS);
}

let polling = false;

function startPolling() {
  if (polling) return;
  polling = true;
  poll();
}

function stopPolling() {
  polling = false;
  clearTimeout(pollTimer);
  pollTimer = null;
}

function signedOut() {
  stopPolling();
  show('offline', 'signed out');
  const link = document.createElement('a');
  link.href = boot.urls.login;
  link.textContent = ' log in again';
  indicator.append(link);
}

// --- The socket -------------------------------------------------------------------

const client = new PuoMemoClient({ lastSeq: boot.seq });
let failures = 0;
// A 4001 can mean only that this socket's session was replaced (a password change in another tab gives the
// browser a new session cookie): one reconnect a 4001 in a row finds out; 'open' allows the next one.
let reconnectedAfter4001 = false;

/** After a 4001: reconnect if this browser is still signed in, else show "signed out". */
async function authFailed() {
  if (reconnectedAfter4001) {
    signedOut(); // the reconnect with the current cookie was refused too
    return;
  }
  reconnectedAfter4001 = true;
  show('reconnecting', 'reconnecting…');
  let response;
  try {
    // Any cheap authenticated URL: the same-origin fetch sends the cookie the browser has now.
    response = await fetch(`${boot.urls.events}?after_seq=${list.seq}&limit=1`, {
      credentials: 'same-origin',
      headers: { Accept: 'application/json' },
    });
  } catch {
    show('offline', 'offline'); // the server is away: poll, as after other closes
    startPolling();
    return;
  }
  // 401/403: the cookie signs no one in. Anything else got past authentication (a 410 too); a reconnect that
  // still fails with 4001 ends in "signed out" above.
  if (response.status === 401 || response.status === 403) signedOut();
  else client.connect().catch(() => {}); // stops are reported through 'state'
}

client.on('*', (frame) => {
  if (frame.type === 'tenant.user_joined') joined(frame.data, +1);
  else if (frame.type === 'tenant.user_left') joined(frame.data, -1);
  else if (frame.type === 'memory.typing') list.typing(frame.data);
  else list.push(frame);
});
client.on('resync_required', () => resync());
client.on('state', ({ state, code }) => {
  if (state === 'open') {
    failures = 0;
    reconnectedAfter4001 = false;
    stopPolling();
    show('live', 'live');
    client
      .presence()
      .then((users) => {
        online.clear();
        for (const u of users) online.set(u.user_id, { user_name: u.user_name, connections: u.connections });
        drawPresence();
      })
      .catch(() => {});
  } else if (state === 'reconnecting') {
    failures += 1;
    if (failures >= FAILURES_BEFORE_POLLING) startPolling(); // the client keeps retrying meanwhile
    else show('reconnecting', 'reconnecting…');
  } else if (state === 'connecting') {
    if (!polling && indicator.dataset.state !== 'reconnecting') show('connecting', 'connecting…');
  } else if (state === 'closed') {
    if (code === 4001) authFailed();
    else {
      show('offline', 'offline');
      startPolling();
    }
  }
});
client.connect().catch(() => {}); // stops are reported through 'state'
window.puomemo = { client, list }; // for the browser tests and the curious
