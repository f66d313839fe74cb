// The memory list, kept current from events: queued, then applied and drawn together at most every 100 ms.

const MEMORY_EVENTS = new Set(['memory.created', 'memory.updated', 'memory.deleted', 'memory.embedding_complete']);
const FLUSH_MS = 100;

export class LiveList {
  /**
   * @param {HTMLElement} root  the <ul> the server rendered the snapshot into
   * @param {object} options  {snapshot: {seq, memories}, metaUrl, actions: <template>, empty: element}
   */
  constructor(root, { snapshot, metaUrl, actions, empty }) {
    this.root = root;
    this.metaUrl = metaUrl;
    this.actions = actions;
    this.empty = empty;
    this.queue = [];
    this.timer = null;
    this.replace(snapshot, { redraw: false }); // the server drew it already
  }

  /** Start over from a snapshot {seq, memories} (the page's, or a fresh one after resync_required). */
  replace(snapshot, { redraw = true } = {}) {
    this.seq = snapshot.seq;
    this.memories = new Map(snapshot.memories.map((m) => [m.id, { ...m, owner: m.owner?.username ?? null }]));
    this.queue = [];
    if (redraw) {
      this.root.replaceChildren(...[...this.memories.values()].map((m) => this.render(m)));
      this.updateEmpty();
    }
  }

  /** Queue a server frame; memory events are applied in seq order on the next flush. */
  push(frame) {
    if (!MEMORY_EVENTS.has(frame.type)) return;
    this.queue.push(frame);
    if (this.timer === null) this.timer = setTimeout(() => this.flush(), FLUSH_MS);
  }

  flush() {
    this.timer = null;
    const frames = this.queue.splice(0);
    const touched = new Set();
    const unknown = new Set();
    for (const frame of frames) {
      // The socket's replay after a reconnect may repeat what polling already brought.
      if (Number.isInteger(frame.seq)) {
        if (frame.seq <= this.seq) continue;
        this.seq = frame.seq;
      }
      const id = this.apply(frame.type, frame.data ?? {});
      if (id === null) continue;
      touched.add(id);
      const memory = this.memories.get(id);
      if (memory && memory.can_edit === undefined) unknown.add(id);
    }
    for (const id of touched) this.draw(id);
    this.updateEmpty();
    if (unknown.size) this.fetchMeta([...unknown]);
  }

  /** Apply one event to the data; returns the memory id it touched, or null. */
  apply(type, data) {
    if (type === 'memory.deleted') {
      this.memories.delete(data.memory_id);
      return data.memory_id;
    }
    if (type === 'memory.embedding_complete') {
      const memory = this.memories.get(data.memory_id);
      if (!memory) return null;
      memory.embedding_status = 'ready';
      return data.memory_id;
    }
    const incoming = data.memory;
    if (!incoming?.id) return null;
    const held = this.memories.get(incoming.id);
    if (held && held.version >= incoming.version) return null; // already as new (a REST answer or the snapshot)
    // New text is embedded again: searchable once its memory.embedding_complete comes.
    const textChanged = !held || held.title !== incoming.title || held.content !== incoming.content;
    this.memories.set(incoming.id, {
      ...held,
      ...incoming,
      embedding_status: textChanged ? 'pending' : held.embedding_status,
      // Who owns it and who may change it are not in events: the server says (fetchMeta).
      owner: held?.owner ?? null,
      can_edit: held?.can_edit,
    });
    return incoming.id;
  }

  /** Ask the server who owns the memories and whether this user may change them, then redraw them. */
  async fetchMeta(ids) {
    const query = ids.map((id) => `id=${encodeURIComponent(id)}`).join('&');
    let meta;
    try {
      const response = await fetch(`${this.metaUrl}?${query}`, { credentials: 'same-origin' });
      if (!response.ok) return;
      meta = await response.json();
    } catch {
      return; // drawn without controls; the next change asks again
    }
    for (const id of ids) {
      const memory = this.memories.get(id);
      if (!memory) continue;
      memory.owner = meta[id]?.owner ?? memory.owner;
      memory.can_edit = meta[id]?.can_edit ?? false;
      this.draw(id);
    }
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

  /** Redraw one memory in place, insert it in created_at order, or remove it. */
  draw(id) {
    const old = document.getElementById(`memory-${id}`);
    const memory = this.memories.get(id);
    if (!memory) {
      old?.remove();
      return;
    }
    const item = this.render(memory);
    if (old) {
      old.replaceWith(item);
      return;
    }
    const after = [...this.root.children].find((li) => {
      const other = this.memories.get(li.dataset.id);
      return other && other.created_at < memory.created_at;
    });
    this.root.insertBefore(item, after ?? null);
    item.classList.add('fresh');
  }

  updateEmpty() {
    this.empty.hidden = this.memories.size > 0;
  }

  /** The same markup as the server's web/_memory.html. */
  render(m) {
    const li = el('li', { class: 'memory', id: `memory-${m.id}` });
    li.dataset.id = m.id;
    li.dataset.version = m.version;
    li.append(el('h3', { class: 'memory-title' }, m.title || '(untitled)'));
    if (m.content) li.append(el('p', { class: 'memory-content' }, m.content));
    const meta = el('p', { class: 'meta' });
    meta.append(el('span', { class: `badge badge-${m.visibility}` }, m.visibility), ' ');
    for (const tag of m.tags ?? []) meta.append(el('span', { class: 'tag' }, `#${tag}`), ' ');
    if (m.owner) meta.append(el('span', { class: 'owner' }, `by ${m.owner}`), ' ');
    const ready = m.embedding_status === 'ready';
    meta.append(el('span', { class: `embedding embedding-${m.embedding_status}` }, ready ? 'searchable' : 'indexing…'));
    li.append(meta);
    if (m.can_edit) li.append(this.controls(m));
    return li;
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
