// The memory list, kept current from events: queued, then applied and drawn together at most every 100 ms.
// The list holds the first page of the memories that match its filters (newest first, or oldest first) and,
// after "Load older", the pages after it, down to a cursor: the (created_at, id) of the last memory held.
// Events for memories before the cursor are drawn; those after it wait for their page.

import { refreshTimes } from './time.js';

const MEMORY_EVENTS = new Set([
  'memory.created',
  'memory.updated',
  'memory.deleted',
  'memory.restored',
  'memory.embedding_complete',
]);
const FLUSH_MS = 100;
const LEAVE_MS = 4000; // how long a card deleted by someone else says so before it goes
const CHANGE_NOTE_MS = 6000; // how long an updated card says what changed
const LONG_CHARS = 600; // longer memories are collapsed, with "Show more"
const LONG_LINES = 10;

/** A sortable key of an ISO 8601 UTC time, to the microsecond ("...:05Z" and "...:05.5Z" compare right). */
export function timeKey(iso) {
  const [whole, fraction = ''] = iso.replace(/Z$|\+00:00$/, '').split('.');
  return `${whole}.${fraction.padEnd(6, '0')}`;
}

/** Whether memory a comes before memory b in the list (newest first, then by id, as the server orders). */
function newer(a, b) {
  const ka = timeKey(a.created_at);
  const kb = timeKey(b.created_at);
  return ka === kb ? a.id > b.id : ka > kb;
}

export class LiveList {
  /**
   * @param {HTMLElement} root  the <ul> the server rendered the snapshot into
   * @param {object} options  {snapshot: {seq, epoch, memories, more}, filters, urls: {meta, snapshot}, actions:
   *   <template>, empty: element, older: the "Load older" button, userId: the viewer's id}
   */
  constructor(root, { snapshot, filters, urls, actions, empty, older, userId }) {
    this.root = root;
    this.filters = filters ?? {};
    this.urls = urls;
    this.actions = actions;
    this.empty = empty;
    this.older = older;
    this.userId = userId;
    this.queue = [];
    this.timer = null;
    this.replace(snapshot, { redraw: false }); // the server drew it already
    for (const li of this.root.children) this.collapse(li, this.memories.get(li.dataset.id));
  }

  get filtered() {
    return Object.keys(this.filters).some((name) => name !== 'sort');
  }

  /** Whether memory a comes before memory b in this list's order. */
  precedes(a, b) {
    return this.filters.sort === 'oldest' ? a.id !== b.id && !newer(a, b) : newer(a, b);
  }

  /** The filters as query parameters, for the server's endpoints (the same selector as REST decides). */
  query(extra = {}) {
    const params = new URLSearchParams({ ...this.filters, ...extra });
    return params.toString();
  }

  /** Start over from a snapshot {seq, memories, more} (the page's, or a fresh one after resync_required). */
  replace(snapshot, { redraw = true } = {}) {
    this.seq = snapshot.seq;
    this.epoch = snapshot.epoch ?? null; // the numbering `seq` belongs to: polling sends it with after_seq
    this.memories = new Map(snapshot.memories.map((m) => [m.id, m]));
    this.more = snapshot.more;
    this.cursor = snapshot.memories.at(-1) ?? null; // the oldest memory held
    this.later = new Map(); // id -> {seq, memory (null: deleted)}: events below the cursor, for their page
    this.queue = [];
    if (redraw) {
      this.root.replaceChildren(...[...this.memories.values()].map((m) => this.render(m)));
      refreshTimes(this.root);
    }
    this.updateEmpty();
  }

  /** Whether a memory lies past the cursor while further pages are still to load: its page will bring it. */
  belowCursor(memory) {
    return this.more && this.cursor !== null && this.precedes(this.cursor, memory);
  }

  /** Load the next page ("Load older"), merged with what events said meanwhile. */
  async loadOlder() {
    if (!this.more || this.cursor === null) return;
    const cursor = { before: this.cursor.created_at, before_id: this.cursor.id };
    const response = await fetch(`${this.urls.snapshot}?${this.query(cursor)}`, { credentials: 'same-origin' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const page = await response.json();
    if (this.cursor === null || this.cursor.id !== cursor.before_id) return; // a resync started over meanwhile
    const recheck = [];
    for (let memory of page.memories) {
      const later = this.later.get(memory.id);
      this.later.delete(memory.id);
      if (later && later.seq > page.seq) {
        if (later.memory === null) continue; // deleted after the page was read
        if (later.memory.version > memory.version) {
          recheck.push(later.memory.id); // changed since: does it still match, and how does it look now?
          memory = { ...memory, ...later.memory, html: null };
        }
      }
      if (this.memories.has(memory.id)) continue;
      this.memories.set(memory.id, memory);
      this.root.append(this.render(memory));
    }
    this.cursor = page.memories.at(-1) ?? this.cursor;
    this.more = page.more;
    refreshTimes(this.root);
    this.updateEmpty();
    if (recheck.length) this.fetchMeta(new Map(recheck.map((id) => [id, { type: 'memory.updated' }])));
  }

  /** Queue a server frame; memory events are applied in seq order on the next flush. */
  push(frame) {
    if (!MEMORY_EVENTS.has(frame.type)) return;
    this.queue.push(frame);
    if (this.timer === null) this.timer = setTimeout(() => this.flush(), FLUSH_MS);
  }

  flush() {
    clearTimeout(this.timer);
    this.timer = null;
    const frames = this.queue.splice(0);
    const pending = new Map(); // id -> what happened, drawn once the server said how it looks and matches
    for (const frame of frames) {
      // The socket's replay after a reconnect may repeat what polling already brought.
      if (Number.isInteger(frame.seq)) {
        if (frame.seq <= this.seq) continue;
        this.seq = frame.seq;
      }
      const data = frame.data ?? {};
      if (frame.type === 'memory.deleted') {
        pending.delete(data.memory_id);
        this.deleted(data, frame.seq);
      } else if (frame.type === 'memory.embedding_complete') {
        const memory = this.memories.get(data.memory_id);
        if (memory) {
          memory.embedding_status = 'ready';
          this.draw(memory.id);
        }
      } else if (data.memory?.id) {
        this.changed(frame.type, data, frame.seq, pending);
      }
    }
    this.updateEmpty();
    if (pending.size) this.fetchMeta(pending);
  }

  /** A memory.created, .updated or .restored: note it, to be drawn with what the server says of it. */
  changed(type, data, seq, pending) {
    const incoming = data.memory;
    const held = this.memories.get(incoming.id);
    if (held && held.version >= incoming.version) return; // already as new (a page or a REST answer)
    if (!held && this.belowCursor(incoming)) {
      this.later.set(incoming.id, { seq, memory: incoming });
      return;
    }
    const before = pending.get(incoming.id);
    const fields = Object.keys(data.changes ?? {});
    if (held && !before && !this.filtered && fields.length && fields.every((f) => f === 'title' || f === 'tags')) {
      // Nothing the server renders or decides changed (content, visibility, filters): no need to ask it.
      const embedding_status = fields.includes('title') ? 'pending' : held.embedding_status; // embedded again
      this.memories.set(incoming.id, { ...held, ...incoming, embedding_status, updated_by_name: data.user_name });
      this.draw(incoming.id, { changes: data.changes, user_name: data.user_name });
      return;
    }
    pending.set(incoming.id, {
      type: before?.type === 'memory.created' ? before.type : type,
      memory: incoming,
      user_name: data.user_name,
      changes: { ...before?.changes, ...data.changes },
    });
  }

  /** A memory.deleted: a card deleted by someone else says so, then leaves. */
  deleted(data, seq) {
    const held = this.memories.get(data.memory_id);
    if (!held) {
      this.later.set(data.memory_id, { seq, memory: null });
      return;
    }
    this.memories.delete(data.memory_id);
    const item = document.getElementById(`memory-${data.memory_id}`);
    if (!item) return;
    if (data.user_id === this.userId && data.reason !== 'visibility') {
      item.remove(); // this user's own delete: the page shows an Undo instead
      return;
    }
    const note = el('p', { class: 'gone-note', role: 'status' });
    note.textContent =
      data.reason === 'visibility'
        ? `Hidden from you by ${data.user_name} (no longer shared with you)`
        : `Deleted by ${data.user_name}`;
    item.classList.add('leaving');
    item.querySelector('.actions')?.remove();
    item.prepend(note);
    setTimeout(() => item.remove(), LEAVE_MS);
  }

  /**
   * Ask the server how the memories look now to this viewer (Markdown, owner, controls) and whether they match
   * the filters (the same selector as REST and the page), then draw them.
   */
  async fetchMeta(pending) {
    const ids = [...pending.keys()];
    const query = this.query();
    const url = `${this.urls.meta}?${ids.map((id) => `id=${encodeURIComponent(id)}`).join('&')}&${query}`;
    let meta = null;
    try {
      const response = await fetch(url, { credentials: 'same-origin' });
      if (response.ok) meta = await response.json();
    } catch {
      // the server is away: drawn from the event alone below
    }
    for (const [id, change] of pending) {
      const now = meta?.[id];
      const held = this.memories.get(id);
      if (meta !== null && (!now || !now.matches)) {
        // Gone meanwhile (its delete event follows), or it does not match the filters (any more).
        if (held) this.leave(id);
        continue;
      }
      if (meta === null && (this.filtered || !change.memory)) continue; // nothing to check the filters with
      let memory = now ?? { ...held, ...change.memory, html: null, can_edit: held?.can_edit ?? false };
      if (change.memory && change.memory.version > memory.version) {
        memory = { ...memory, ...change.memory, html: null }; // newer than what the server read: the event's
      }
      if (held && held.version > memory.version) continue; // a later event or page drew a newer one
      if (change.type === 'memory.updated' && change.user_name) memory.updated_by_name ??= change.user_name;
      this.memories.set(id, memory);
      this.draw(id, held ? change : { ...change, fresh: true });
    }
    this.updateEmpty();
  }

  /** A card that stops matching the filters leaves. */
  leave(id) {
    this.memories.delete(id);
    document.getElementById(`memory-${id}`)?.remove();
  }

  /** Show for a few seconds that someone is editing a memory. */
  typing({ memory_id, user_name }) {
    const item = document.getElementById(`memory-${memory_id}`);
    if (!item) return;
    let note = item.querySelector('.typing');
    if (!note) {
      note = el('p', { class: 'typing' });
      item.append(note);
    }
    note.textContent = `${user_name} is editing…`;
    clearTimeout(note.timer);
    note.timer = setTimeout(() => note.remove(), 3000);
  }

  /** Redraw one memory in place, or insert it in (created_at, id) order; `change` says what to show changed. */
  draw(id, change = null) {
    const old = document.getElementById(`memory-${id}`);
    const memory = this.memories.get(id);
    if (!memory) return;
    const item = this.render(memory);
    if (change?.changes && Object.keys(change.changes).length && !change.fresh) this.showChanges(item, change);
    if (old) {
      old.replaceWith(item);
    } else {
      const after = [...this.root.children].find((li) => {
        const other = this.memories.get(li.dataset.id);
        return other && this.precedes(memory, other);
      });
      this.root.insertBefore(item, after ?? null);
    }
    if (change?.fresh) item.classList.add('fresh');
    refreshTimes(item);
  }

  /** An updated card says briefly who changed what, and the changed parts are highlighted. */
  showChanges(item, { changes, user_name }) {
    const fields = Object.keys(changes);
    const note = el('p', { class: 'change-note' }, `${user_name ?? 'Someone'} changed ${fields.join(', ')}`);
    item.prepend(note);
    item.classList.add('changed');
    for (const field of fields) item.querySelector(`[data-field=${field}]`)?.classList.add('changed-field');
    setTimeout(() => {
      note.remove();
      item.classList.remove('changed');
      for (const node of item.querySelectorAll('.changed-field')) node.classList.remove('changed-field');
    }, CHANGE_NOTE_MS);
  }

  updateEmpty() {
    this.empty.hidden = this.memories.size > 0;
    this.older.hidden = !this.more;
  }

  /** The same markup as the server's web/_memory.html. */
  render(m) {
    const li = el('li', { class: 'memory', id: `memory-${m.id}` });
    li.dataset.id = m.id;
    li.dataset.version = m.version;
    li.append(el('h3', { class: 'memory-title', 'data-field': 'title' }, m.title || '(untitled)'));
    if (m.content) {
      const content = el('div', { class: 'memory-content', 'data-field': 'content' });
      if (typeof m.html === 'string') content.innerHTML = m.html; // rendered and sanitised by the server (nh3)
      else content.append(el('p', { class: 'pre' }, m.content)); // the event's text, until the server's
      li.append(content);
    }
    const meta = el('p', { class: 'meta' });
    meta.append(el('span', { class: `badge badge-${m.visibility}`, 'data-field': 'visibility' }, m.visibility), ' ');
    const tags = el('span', { class: 'tags', 'data-field': 'tags' });
    for (const tag of m.tags ?? []) {
      tags.append(el('a', { class: 'tag', href: `?tag=${encodeURIComponent(tag)}` }, `#${tag}`), ' ');
    }
    meta.append(tags);
    const owner = m.owner?.username;
    if (owner) {
      meta.append(el('a', { class: 'owner', href: `?owner=${encodeURIComponent(owner)}` }, `by ${owner}`), ' ');
    }
    const created = el('span', { class: 'when' }, 'created ');
    created.append(el('time', { class: 'created', datetime: m.created_at }, m.created_at));
    meta.append(created, ' ');
    if (m.version > 1) {
      const edited = el('span', { class: 'edited' }, 'edited ');
      edited.append(el('time', { datetime: m.updated_at }, m.updated_at), ' by ');
      edited.append(el('span', { class: 'editor' }, m.updated_by_name ?? ''));
      meta.append(edited, ' ');
    }
    const ready = m.embedding_status === 'ready';
    meta.append(el('span', { class: `embedding embedding-${m.embedding_status}` }, ready ? 'searchable' : 'indexing…'));
    li.append(meta);
    if (m.can_edit) li.append(this.controls(m));
    this.collapse(li, m);
    return li;
  }

  /** Collapse a long memory in the list, with a "Show more" button. */
  collapse(li, m) {
    const content = li.querySelector('.memory-content');
    if (!content || !m || (m.content.length <= LONG_CHARS && m.content.split('\n').length <= LONG_LINES)) return;
    content.classList.add('collapsed');
    content.id = `content-${m.id}`;
    const more = el(
      'button',
      { type: 'button', class: 'link show-more', 'aria-controls': content.id, 'aria-expanded': 'false' },
      'Show more',
    );
    more.addEventListener('click', () => {
      const open = content.classList.toggle('collapsed') === false;
      more.setAttribute('aria-expanded', String(open));
      more.textContent = open ? 'Show less' : 'Show more';
    });
    content.after(more);
  }

  controls(m) {
    const actions = this.actions.content.firstElementChild.cloneNode(true);
    const link = actions.querySelector('a');
    link.href = `/memories/${m.id}/edit/`;
    link.querySelector('.visually-hidden').textContent = ` ${m.title}`;
    const form = actions.querySelector('form');
    form.action = `/memories/${m.id}/delete/`;
    form.querySelector('input[name=expected_version]').value = m.version;
    form.querySelector('.visually-hidden').textContent = ` ${m.title}`;
    return actions;
  }
}

function el(tag, attributes = {}, text = null) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== null) node.textContent = text;
  return node;
}
