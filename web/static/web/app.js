// The memory page: the server-rendered list made live over /ws (session cookie, no token), with resume from the
// snapshot's seq, a polling fallback on GET /api/v4/events, a connection indicator, who is online, older pages
// and delete with Undo.

import { PuoMemoClient } from '/static/puomemo/puomemo-client.js';
import { LiveList } from './live-list.js';

const POLL_MS = 3000;
// Failed attempts in a row, never reaching 'open', before the page polls meanwhile.
const FAILURES_BEFORE_POLLING = 2;

const boot = JSON.parse(document.getElementById('boot').textContent);
const indicator = document.getElementById('connection');
const list = new LiveList(document.getElementById('memories'), {
  snapshot: boot,
  filters: boot.filters,
  urls: boot.urls,
  actions: document.getElementById('memory-actions'),
  empty: document.getElementById('empty'),
  older: document.getElementById('load-older'),
  userId: boot.user_id,
});

function show(state, text) {
  indicator.className = `indicator indicator-${state}`;
  indicator.textContent = text;
  indicator.dataset.state = state;
}

/**
 * Reload the list: on every `resync_required` reason (the log no longer has the events: 'expired'; more than one
 * resume replays: 'too_many'; the position is ahead of the server, or its stream was numbered anew after a
 * restore: 'ahead', 'epoch'), and on a 410 while polling.
 */
async function resync() {
  const response = await fetch(`${boot.urls.snapshot}?${list.query()}`, { credentials: 'same-origin' });
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

/** Who is online, from the server: counting join and leave events would race its first answer. */
async function refreshPresence() {
  try {
    const users = await client.presence();
    online.clear();
    for (const u of users) online.set(u.user_id, { user_name: u.user_name, connections: u.connections });
    drawPresence();
  } catch {
    // the socket closed meanwhile: the next 'open' asks again
  }
}

let presenceTimer = null;

function presenceChanged() {
  clearTimeout(presenceTimer);
  presenceTimer = setTimeout(refreshPresence, 200); // one question for a burst of joins and leaves
}

// --- Polling fallback -----------------------------------------------------------

let pollTimer = null;

async function poll() {
  pollTimer = null;
  let more = false;
  try {
    const epoch = list.epoch ? `&epoch=${encodeURIComponent(list.epoch)}` : '';
    const response = await fetch(`${boot.urls.events}?after_seq=${list.seq}&limit=1000${epoch}`, {
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
    // Not live, but the changes still arrive (every 3 s).
    if (client.state !== 'open') show('polling', 'polling');
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

const client = new PuoMemoClient({ lastSeq: boot.seq, epoch: boot.epoch ?? null });
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
  if (frame.type === 'tenant.user_joined' || frame.type === 'tenant.user_left') presenceChanged();
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
    refreshPresence();
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

// --- Older pages ---------------------------------------------------------------------

const older = document.getElementById('load-older');
older.addEventListener('click', async () => {
  older.disabled = true;
  try {
    await list.loadOlder();
  } catch {
    toast('Could not load older memories; try again.');
  } finally {
    older.disabled = false;
  }
});

// --- Delete with Undo ------------------------------------------------------------------

const UNDO_MS = 10_000;

function toast(text, action = null) {
  const box = document.createElement('div');
  box.className = 'toast';
  box.append(document.createElement('span'));
  box.firstChild.textContent = text;
  if (action) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'small';
    button.textContent = action.label;
    button.addEventListener('click', () => {
      box.remove();
      action.run();
    });
    box.append(' ', button);
  }
  document.getElementById('toasts').append(box);
  setTimeout(() => box.remove(), action ? UNDO_MS : 5000);
  return box;
}

/** POST a form's fields with fetch; a redirect to the login page (the session ended) goes there. */
async function post(url, body) {
  const response = await fetch(url, {
    method: 'POST',
    body,
    credentials: 'same-origin',
    headers: { Accept: 'application/json' },
  });
  if (response.redirected && new URL(response.url).pathname === boot.urls.login) {
    window.location.assign(`${boot.urls.login}?next=${encodeURIComponent(window.location.pathname)}`);
    return null;
  }
  return response;
}

async function undo(id, title, csrf) {
  const body = new FormData();
  body.append('csrfmiddlewaretoken', csrf);
  // The restore answers 204; the memory comes back to every open page with its memory.restored event.
  const response = await post(`/memories/${id}/restore/`, body).catch(() => null);
  if (response && !response.ok) toast(`Could not restore “${title}” (HTTP ${response.status}); it is in the trash.`);
  else if (!response) toast(`Could not restore “${title}”; it is in the trash.`);
}

// No confirmation: the delete can be undone for a while.
document.getElementById('memories').addEventListener('submit', async (event) => {
  const form = event.target.closest('form.delete-form');
  if (!form) return;
  event.preventDefault();
  const item = form.closest('.memory');
  const id = item.dataset.id;
  const title = item.querySelector('.memory-title').textContent;
  const csrf = form.elements.csrfmiddlewaretoken.value;
  let response;
  try {
    response = await post(form.action, new FormData(form));
  } catch {
    toast(`Not deleted: the server did not answer.`);
    return;
  }
  if (response === null) return;
  if (response.status === 204 || response.status === 404) {
    const focused = item.contains(document.activeElement); // by keyboard: focus goes on to Undo, not the page
    list.leave(id); // its memory.deleted confirms it, and others' pages say who deleted it
    if (response.status === 204) {
      const box = toast(`Deleted “${title}”.`, { label: 'Undo', run: () => undo(id, title, csrf) });
      if (focused) box.querySelector('button').focus();
    }
    return;
  }
  const answer = await response.json().catch(() => ({}));
  toast(answer.detail ?? `Not deleted (HTTP ${response.status}).`);
});

window.puomemo = { client, list }; // for the browser tests and the curious

// --- Filters --------------------------------------------------------------------------

// Empty fields stay out of the URL (?tag=plans, not ?q=&tag=plans&owner=&visibility=).
document.getElementById('filters').addEventListener('submit', (event) => {
  const empty = [...event.target.elements].filter((field) => field.name && !field.value);
  for (const field of empty) field.disabled = true;
  setTimeout(() => empty.forEach((field) => (field.disabled = false))); // the form data is taken by now
});
