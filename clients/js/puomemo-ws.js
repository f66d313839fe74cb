// PUO Memo real-time client: the spec's API (on, off, send, connect, disconnect) plus reconnects with
// backoff that resubscribe and resume from the last seq seen, in-band token refresh, presence, typing and tickets.
// An ES module with no dependencies: browsers, and Node >= 20 with a global WebSocket
// (`node --experimental-websocket` on Node 20, built in from Node 22). Usage: README.md next to this file.

const DEFAULT_URL = 'wss://api.puomemo.com/ws';
const DEFAULT_CHANNELS = ['memories', 'tenant.updates'];
// 4001 (auth failed, expired, revoked) and 4003 (invalid format): the same connection would fail again.
const STOP_CODES = new Set([4001, 4003]);
const TYPING_INTERVAL_MS = 2000; // the server relays one `typing` a memory per 2 s per connection
const MAX_TIMER_MS = 2 ** 31 - 1; // setTimeout fires at once for longer delays
const MAX_TRACKED_VERSIONS = 10000; // memories whose last version seen is kept, to drop stale events

/** The server closed with a code that reconnecting cannot fix (4001 or 4003): the client stopped. */
export class PuoMemoClosedError extends Error {
  constructor(code, reason = '') {
    super(`WebSocket closed with ${code}${reason ? `: ${reason}` : ''}`);
    this.name = 'PuoMemoClosedError';
    this.code = code;
    this.reason = reason;
  }
}

/** A JWT's `exp` in milliseconds, read without verifying; null for API keys and anything unreadable. */
export function jwtExpiry(token) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const payload = JSON.parse(atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4)));
    return typeof payload?.exp === 'number' ? payload.exp * 1000 : null;
  } catch {
    return null;
  }
}

/** Milliseconds before reconnect `attempt` (0, 1, …): 1 s, 2 s, 4 s … capped at 30 s, with equal jitter. */
export function backoffDelay(attempt, base = 1000, cap = 30000) {
  const step = Math.min(cap, base * 2 ** Math.min(attempt, 32));
  return step / 2 + Math.random() * (step / 2);
}

/** Milliseconds until a token with `remaining` ms left should be renewed: 60 s before, or at 80% if short. */
export function refreshDelay(remaining, lead = 60000) {
  return Math.max(0, remaining - Math.min(lead, remaining * 0.2));
}

export class PuoMemoWebSocket {
  /**
   * @param {string|null} token  a JWT or API key (null when a provider supplies one)
   * @param {string} url  the /ws endpoint
   * @param {object} [options]
   * @param {() => Promise<string>} [options.tokenProvider]  a fresh token: for reconnects and in-band refresh
   * @param {() => Promise<string>} [options.ticketProvider]  a fresh ticket per connection attempt (browsers)
   * @param {string[]} [options.channels]  subscribed on every connection
   * @param {number|null} [options.keepalive]  ms without sending before a `ping` (null: never)
   * @param {number} [options.replyTimeout]  ms to wait for `presence` and `authenticated` replies
   * @param {number|null} [options.lastSeq]  resume from this seq (a REST snapshot's `seq`) on the first connection
   */
  constructor(token, url = DEFAULT_URL, options = {}) {
    const {
      tokenProvider = null,
      ticketProvider = null,
      channels = DEFAULT_CHANNELS,
      keepalive = 60000,
      replyTimeout = 10000,
      backoffBase = 1000,
      backoffCap = 30000,
      lastSeq = null,
    } = options;
    if (!token && !tokenProvider && !ticketProvider) {
      throw new Error('PuoMemoWebSocket needs a token, a tokenProvider or a ticketProvider');
    }
    if (lastSeq !== null && !isWhole(lastSeq)) throw new Error('lastSeq must be a whole number or null');
    this.token = token || null;
    this.url = url;
    this.tokenProvider = tokenProvider;
    this.ticketProvider = ticketProvider;
    this.channels = [...channels]; // as the server last confirmed them; resubscribed after reconnects
    this.keepalive = keepalive;
    this.replyTimeout = replyTimeout;
    this.backoffBase = backoffBase;
    this.backoffCap = backoffCap;
    this.ws = null;
    this.handlers = new Map();
    this.connected = false; // open and subscribed
    this.closeCode = null; // the code that stopped the client, if one did
    this._running = false;
    this._attempt = 0;
    this._connections = 0;
    this._waiters = new Map();
    this._typingSent = new Map();
    this._lastSent = 0;
    this._timers = new Set();
    this._lastSeq = lastSeq;
    this._versions = new Map(); // memory id -> the newest `version` seen, at most MAX_TRACKED_VERSIONS
  }

  /**
   * The tenant's event position the client has reached, sent as `last_seq` on every (re)subscribe: the highest
   * `seq` of the memory events received and of `resumed`; after `resync_required`, its `current_seq`. null until
   * the first of these (unless given as the `lastSeq` option).
   */
  get lastSeq() {
    return this._lastSeq;
  }

  /** Register a handler called with each `event`'s data, or the client event `closed` ({code, reason, reconnect}). */
  on(event, handler) {
    if (!this.handlers.has(event)) this.handlers.set(event, []);
    this.handlers.get(event).push(handler);
    return this;
  }

  /** Remove one handler of `event`, or all of them. */
  off(event, handler) {
    if (handler === undefined) this.handlers.delete(event);
    else this.handlers.set(event, (this.handlers.get(event) || []).filter((h) => h !== handler));
    return this;
  }

  /** Start connecting; resolves once connected and subscribed, rejects if the client stops first. */
  connect() {
    if (this._running) return this._ready;
    this._running = true;
    this.closeCode = null;
    this._attempt = 0;
    this._connections = 0;
    this._ready = new Promise((resolve, reject) => {
      this._settleReady = { resolve, reject };
    });
    this._ready.catch(() => {}); // a caller that never awaits connect() learns of stops from `closed`
    this._open();
    return this._ready;
  }

  /** Close the connection and stop reconnecting. */
  disconnect() {
    this._running = false;
    clearTimeout(this._retryTimer);
    this._settle(new Error('disconnected'));
    if (this.ws) this.ws.close(1000);
  }

  /** Send a frame; returns false (and warns) when no connection is open. */
  send(type, data = null) {
    if (!this.ws || this.ws.readyState !== 1) {
      console.warn('PuoMemoWebSocket: not connected');
      return false;
    }
    const frame = { id: randomId(), type, timestamp: new Date().toISOString(), data };
    this.ws.send(JSON.stringify(frame));
    this._lastSent = Date.now();
    return true;
  }

  /** Renew the connection's credentials in-band (`auth`); resolves to `expires_at` (null for API keys). */
  async refresh(token) {
    const data = await this._request('auth', { token }, 'authenticated');
    this.token = token;
    this._scheduleRefresh();
    return data.expires_at ?? null;
  }

  /** The tenant's connected users: [{user_id, user_name, connections}]. */
  async presence() {
    return (await this._request('presence', null, 'presence')).users;
  }

  /** Tell teammates this user is typing in a memory; at most one a memory per 2 s (false when throttled). */
  typing(memoryId) {
    const now = Date.now();
    if (now - (this._typingSent.get(memoryId) ?? -Infinity) < TYPING_INTERVAL_MS) return false;
    if (!this.send('typing', { memory_id: memoryId })) return false;
    for (const [id, at] of this._typingSent) if (now - at >= TYPING_INTERVAL_MS) this._typingSent.delete(id);
    this._typingSent.set(memoryId, now);
    return true;
  }

  async _open() {
    let url;
    try {
      url = await this._connectUrl(this._connections > 0 || this._attempt > 0);
    } catch (error) {
      console.warn('PuoMemoWebSocket: could not get a token or ticket:', error);
      this._closed(1006, '', false);
      return;
    }
    if (!this._running) return;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (error) {
      console.warn('PuoMemoWebSocket: cannot connect:', error);
      this._closed(1006, '', false);
      return;
    }
    this.ws = ws;
    let established = false;
    ws.onopen = () => {
      const subscribe = { channels: this.channels };
      if (this._lastSeq !== null) subscribe.last_seq = this._lastSeq; // the server replays what was missed
      this.send('subscribe', subscribe);
    };
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        console.error('PuoMemoWebSocket: failed to parse message', event.data);
        return;
      }
      if (typeof frame?.type !== 'string') return;
      const { type, data } = frame;
      if (!this._track(type, frame.seq, data)) return; // an older version of a memory than one already seen
      if ((type === 'subscribed' || type === 'unsubscribed') && Array.isArray(data?.channels)) {
        this.channels = [...data.channels];
      }
      if (type === 'subscribed' && !established) {
        established = true;
        this.connected = true;
        this._attempt = 0;
        this._connections += 1;
        this._scheduleRefresh();
        this._scheduleKeepalive();
        this._settle(null);
      }
      this._resolve(type, data);
      this._emit(type, data);
    };
    ws.onclose = (event) => {
      if (this.ws === ws) this.ws = null;
      this._closed(event.code || 1006, event.reason || '', established);
    };
  }

  /** Follow the event position; false for a memory event older than a version already seen. */
  _track(type, seq, data) {
    if (isWhole(seq)) this._lastSeq = this._lastSeq === null ? seq : Math.max(this._lastSeq, seq);
    if (!data || typeof data !== 'object') return true;
    if (type === 'resumed' && isWhole(data.last_seq)) {
      this._lastSeq = Math.max(this._lastSeq ?? 0, data.last_seq);
    } else if (type === 'resync_required' && isWhole(data.current_seq)) {
      // Handlers reload over REST; the client goes on from the tenant's current position.
      this._lastSeq = data.current_seq;
      this._versions.clear(); // an "ahead" server may have been restored from a backup: versions too
      if (!this.handlers.get('resync_required')?.length) {
        console.warn(`PuoMemoWebSocket: resync required (${data.reason}) and no handler: reload the state over REST`);
      }
    } else if (type === 'memory.created' || type === 'memory.updated') {
      const id = data.memory?.id;
      const version = data.memory?.version;
      if (typeof id === 'string' && isWhole(version)) {
        const seen = this._versions.get(id);
        if (seen !== undefined && version < seen) return false;
        this._versions.delete(id); // re-inserted last: the oldest entries go first
        this._versions.set(id, version);
        if (this._versions.size > MAX_TRACKED_VERSIONS) this._versions.delete(this._versions.keys().next().value);
      }
    }
    return true;
  }

  async _connectUrl(fresh) {
    const separator = this.url.includes('?') ? '&' : '?';
    if (this.ticketProvider) {
      // The ticket's connection lives as long as the token it was asked with: this.token, if given, times refresh.
      return `${this.url}${separator}ticket=${encodeURIComponent(await this.ticketProvider())}`;
    }
    if (this.tokenProvider && (fresh || !this.token)) this.token = await this.tokenProvider();
    return `${this.url}${separator}token=${encodeURIComponent(this.token)}`;
  }

  _closed(code, reason, established) {
    this.connected = false;
    for (const timer of this._timers) clearTimeout(timer);
    this._timers.clear();
    for (const waiters of this._waiters.values()) {
      for (const waiter of waiters.splice(0)) waiter.reject(new Error('WebSocket closed'));
    }
    const stop = STOP_CODES.has(code);
    const reconnect = this._running && !stop;
    this._emit('closed', { code, reason, reconnect });
    if (stop) {
      this._running = false;
      this.closeCode = code;
      this._settle(new PuoMemoClosedError(code, reason));
    }
    if (!reconnect) return;
    if (!established) this._attempt += 1;
    const delay = backoffDelay(established ? 0 : this._attempt, this.backoffBase, this.backoffCap);
    this._retryTimer = setTimeout(() => this._running && this._open(), delay);
  }

  _settle(error) {
    if (!this._settleReady) return;
    if (error) this._settleReady.reject(error);
    else this._settleReady.resolve();
    this._settleReady = null;
  }

  _request(type, data, reply) {
    return new Promise((resolve, reject) => {
      const waiters = this._waiters.get(reply) || [];
      this._waiters.set(reply, waiters);
      const waiter = {
        resolve: (value) => {
          clearTimeout(waiter.timer);
          resolve(value ?? {});
        },
        reject: (error) => {
          clearTimeout(waiter.timer);
          reject(error);
        },
      };
      waiter.timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(waiter), 1);
        reject(new Error(`No ${reply} reply within ${this.replyTimeout} ms`));
      }, this.replyTimeout);
      waiters.push(waiter);
      if (!this.send(type, data)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.reject(new Error('WebSocket not connected'));
      }
    });
  }

  _resolve(type, data) {
    const waiter = this._waiters.get(type)?.shift();
    if (waiter) waiter.resolve(data);
  }

  _emit(event, data) {
    for (const handler of [...(this.handlers.get(event) || [])]) {
      try {
        const result = handler(data);
        if (result && typeof result.catch === 'function') {
          result.catch((error) => console.error(`PuoMemoWebSocket: handler for ${event} failed`, error));
        }
      } catch (error) {
        console.error(`PuoMemoWebSocket: handler for ${event} failed`, error);
      }
    }
  }

  _later(fn, delay) {
    const timer = setTimeout(() => {
      this._timers.delete(timer);
      fn();
    }, delay);
    this._timers.add(timer);
    return timer;
  }

  _scheduleRefresh(dueAt = null) {
    clearTimeout(this._refreshTimer);
    this._timers.delete(this._refreshTimer);
    const expiry = jwtExpiry(this.token);
    if (expiry === null || !this.tokenProvider || !this.connected) return;
    const due = dueAt ?? Date.now() + refreshDelay(expiry - Date.now());
    if (due - Date.now() > MAX_TIMER_MS) {
      this._refreshTimer = this._later(() => this._scheduleRefresh(due), MAX_TIMER_MS);
      return;
    }
    this._refreshTimer = this._later(async () => {
      try {
        await this.refresh(await this.tokenProvider()); // schedules the next one
      } catch (error) {
        if (!this.connected) return;
        console.warn('PuoMemoWebSocket: token refresh failed:', error);
        this._refreshTimer = this._later(() => this._scheduleRefresh(), 1000); // then again at 80% of what is left
      }
    }, Math.max(0, due - Date.now()));
  }

  _scheduleKeepalive() {
    if (!this.keepalive) return;
    const idle = Date.now() - this._lastSent;
    this._later(() => {
      if (Date.now() - this._lastSent >= this.keepalive) this.send('ping');
      this._scheduleKeepalive();
    }, Math.max(0, this.keepalive - idle));
  }
}

function isWhole(value) {
  return Number.isSafeInteger(value) && value >= 0;
}

function randomId() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  return `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}`;
}
