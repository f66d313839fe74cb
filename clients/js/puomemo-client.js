// PUO Memo real-time client for `/ws`: one ES module with no build step, for browsers and Node >= 20 (global
// WebSocket: `node --experimental-websocket` on Node 20, built in from Node 22). Its only dependency, a vendored
// MessagePack codec (vendor/msgpack/), is imported when a client asks for `encoding: 'msgpack'`, never before.
// Reconnects with backoff, re-subscribes and resumes from the last seq seen, renews tokens in-band, sends heartbeat
// pings, and reports its state. Usage and the rules it follows: README.md next to this file.

const DEFAULT_CHANNELS = ['memories', 'tenant.updates'];
/** Close codes after which the same connection would fail again: the client stops (state 'closed'). */
export const STOP_CODES = Object.freeze([4001, 4003, 1009]);
/** Close codes that ask the client to slow down: the connection counts as a failed attempt, however long it lasted. */
export const BACKOFF_CODES = Object.freeze([4002, 4029]);
/** The server restarts (1012): reconnect at once, after a random wait of up to `restartJitter` ms. */
export const RESTART_CODES = Object.freeze([1012]);
export const STATES = Object.freeze(['connecting', 'open', 'reconnecting', 'closed']);
const TYPING_INTERVAL_MS = 2000; // the server relays one `typing` a memory per 2 s per connection
const MAX_TIMER_MS = 2 ** 31 - 1; // setTimeout fires at once for longer delays
const MAX_TRACKED_VERSIONS = 10000; // memories whose last version seen is kept, to drop stale events
const OPEN = 1; // WebSocket.OPEN, which an injected constructor need not define
export const ENCODINGS = Object.freeze(['json', 'msgpack']);
/** The subprotocol a msgpack client offers; a server that echoes nothing speaks JSON on that connection. */
export const MSGPACK_PROTOCOL = 'puomemo.msgpack';
/** Names `publish()` accepts and custom events arrive under (the server checks the same pattern). */
export const CUSTOM_EVENT_PATTERN = /^custom\.[a-z0-9][a-z0-9_.-]{0,63}$/;

/** The client stopped for good: a close code reconnecting cannot fix (4001, 4003, 1009), or the server refused it. */
export class PuoMemoClosedError extends Error {
  constructor(code, reason = '') {
    super(code === null ? reason : `WebSocket closed with ${code}${reason ? `: ${reason}` : ''}`);
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

/** Milliseconds before retry `failures` (0, 1, …): steps of 1, 2, 4 … 60 s (the cap), jittered in [step/2, step). */
export function backoffDelay(failures, { base = 1000, cap = 60000, random = Math.random } = {}) {
  const step = Math.min(cap, base * 2 ** Math.min(failures, 32));
  return step / 2 + random() * (step / 2);
}

/** Milliseconds until a token with `remaining` ms left should be renewed: 60 s before, or at 80% if short. */
export function refreshDelay(remaining, lead = 60000) {
  return Math.max(0, remaining - Math.min(lead, remaining * 0.2));
}

const systemClock = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (timer) => globalThis.clearTimeout(timer),
  now: () => Date.now(),
};

export class PuoMemoClient {
  /**
   * @param {object} [options]  see README.md: url, token, tokenProvider, ticketProvider, channels, lastSeq,
   *   epoch, encoding, keepalive, replyTimeout, backoffBase, backoffCap, stableAfter, restartJitter, WebSocket, clock,
   *   random, logger
   */
  constructor(options = {}) {
    const {
      url = defaultUrl(),
      token = null,
      tokenProvider = null,
      ticketProvider = null,
      channels = DEFAULT_CHANNELS,
      lastSeq = null,
      epoch = null,
      encoding = 'json',
      keepalive = 30000,
      replyTimeout = 10000,
      backoffBase = 1000,
      backoffCap = 60000,
      stableAfter = 5000,
      restartJitter = 1000,
      WebSocket = globalThis.WebSocket,
      clock = systemClock,
      random = Math.random,
      logger = console,
    } = options;
    if (lastSeq !== null && !isWhole(lastSeq)) throw new TypeError('lastSeq must be a whole number or null');
    if (epoch !== null && typeof epoch !== 'string') throw new TypeError('epoch must be a string or null');
    if (!Array.isArray(channels)) throw new TypeError('channels must be an array of channel names');
    if (!ENCODINGS.includes(encoding)) throw new TypeError(`encoding must be 'json' or 'msgpack', not ${encoding}`);
    if (!WebSocket) {
      throw new TypeError('No WebSocket: pass options.WebSocket, or run Node 20 with --experimental-websocket');
    }
    this.url = url;
    this.token = token || null;
    this.tokenProvider = tokenProvider;
    this.ticketProvider = ticketProvider;
    this.channels = [...channels]; // re-subscribed after every reconnect
    this.encoding = encoding; // asked for; wireEncoding is what the open connection uses
    this.keepalive = keepalive;
    this.replyTimeout = replyTimeout;
    this.backoffBase = backoffBase;
    this.backoffCap = backoffCap;
    this.stableAfter = stableAfter;
    this.restartJitter = restartJitter;
    this.closeCode = null; // the code that stopped the client, if one did
    this._WebSocket = WebSocket;
    this._clock = clock;
    this._random = random;
    this._log = logger;
    this._loadCodec = loadMsgpack;
    this._warnedFallback = false;
    this._state = 'closed';
    this._handlers = new Map();
    this._running = false;
    this._generation = 0; // bumped by disconnect() and stops: an attempt in flight then gives up
    this._failures = 0; // retries since the last good connection: the backoff step
    this._connections = 0;
    this._conn = null; // {ws, codec, binary, established, openedAt, lastSent, lastReceived, closed}
    this._retryTimer = null;
    this._timers = new Set(); // the connection's: heartbeat, refresh, reply timeouts
    this._waiters = new Map();
    this._typingSent = new Map();
    this._lastSeq = lastSeq;
    this._epoch = epoch;
    this._versions = new Map(); // memory id -> the newest `version` seen, at most MAX_TRACKED_VERSIONS
    this._ready = Promise.resolve();
    this._settleReady = null;
  }

  /** 'connecting' | 'open' (connected and subscribed) | 'reconnecting' (waiting to retry) | 'closed'. */
  get state() {
    return this._state;
  }

  /** True while the state is 'open'. */
  get connected() {
    return this._state === 'open';
  }

  /** 'msgpack' or 'json': the encoding of the open connection (JSON when the server chose no subprotocol); or null. */
  get wireEncoding() {
    const conn = this._conn;
    if (!conn || conn.binary === null) return null;
    return conn.binary ? 'msgpack' : 'json';
  }

  /**
   * The tenant's event position reached, sent as `last_seq` on every (re)subscribe: the highest `seq` of the memory
   * events received and of `resumed`; after `resync_required`, its `current_seq`. null until the first of these.
   */
  get lastSeq() {
    return this._lastSeq;
  }

  /**
   * The epoch `lastSeq` belongs to, sent with it: a server whose stream was numbered anew (a restored database)
   * answers `resync_required` with reason 'epoch' instead of replaying the wrong events. null until known.
   */
  get epoch() {
    return this._epoch;
  }

  /** Call `handler(data, message)` for each server message of `type`; also 'state', 'closed' and '*' (every frame). */
  on(type, handler) {
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    if (!this._handlers.has(type)) this._handlers.set(type, []);
    this._handlers.get(type).push(handler);
    return this;
  }

  /** Remove one handler of `type`, or all of them when `handler` is left out. */
  off(type, handler) {
    if (handler === undefined) this._handlers.delete(type);
    else this._handlers.set(type, (this._handlers.get(type) || []).filter((h) => h !== handler));
    return this;
  }

  /** Start connecting; resolves once open and subscribed, rejects if the client stops first. */
  connect() {
    if (this._running) return this._ready;
    this._running = true;
    this.closeCode = null;
    this._failures = 0;
    this._ready = new Promise((resolve, reject) => {
      this._settleReady = { resolve, reject };
    });
    this._ready.catch(() => {}); // a caller that never awaits connect() learns of stops from 'state'
    this._attempt();
    return this._ready;
  }

  /** Close the connection and stop for good (state 'closed'); connect() starts again. */
  disconnect() {
    this._halt(1000, 'disconnect', new Error('disconnected'));
  }

  /** Add channels; sent now if open, and re-subscribed after every reconnect. Returns whether it was sent now. */
  subscribe(channels) {
    for (const channel of channels) if (!this.channels.includes(channel)) this.channels.push(channel);
    return this._send('subscribe', { channels: [...channels] });
  }

  /** Remove channels, now if open and from the channels re-subscribed after reconnects. */
  unsubscribe(channels) {
    this.channels = this.channels.filter((channel) => !channels.includes(channel));
    return this._send('unsubscribe', { channels: [...channels] });
  }

  /** Send a frame `{id, type, timestamp, data}`; returns false when the socket is not open. */
  send(type, data = null) {
    return this._send(type, data);
  }

  /** Send a `ping`; resolves with the `pong`'s data ({timestamp}). */
  ping() {
    return this._request('ping', null, 'pong');
  }

  /** The tenant's connected users: [{user_id, user_name, connections}]. */
  async presence() {
    return (await this._request('presence', null, 'presence')).users;
  }

  /**
   * Relay a custom event `custom.<name>` with a payload object to the tenant's other connections subscribed to
   * `custom` (only those that may see `memoryId` when given). Returns false when the client is not open.
   */
  publish(event, payload, memoryId = null) {
    if (typeof event !== 'string' || !CUSTOM_EVENT_PATTERN.test(event)) {
      throw new TypeError(`event must match ${CUSTOM_EVENT_PATTERN}, not ${JSON.stringify(event)}`);
    }
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
      throw new TypeError('payload must be an object');
    }
    if (memoryId !== null && memoryId !== undefined && typeof memoryId !== 'string') {
      throw new TypeError('memoryId must be a string (a memory id) or left out');
    }
    if (this._state !== 'open') return false; // an error reply before `subscribed` would stop the client
    const data = { event, payload };
    if (typeof memoryId === 'string') data.memory_id = memoryId;
    return this._send('publish', data);
  }

  /** Tell teammates this user is typing in a memory; at most one a memory per 2 s (false when throttled). */
  typing(memoryId) {
    const now = this._clock.now();
    if (now - (this._typingSent.get(memoryId) ?? -Infinity) < TYPING_INTERVAL_MS) return false;
    if (!this._send('typing', { memory_id: memoryId })) return false;
    for (const [id, at] of this._typingSent) if (now - at >= TYPING_INTERVAL_MS) this._typingSent.delete(id);
    this._typingSent.set(memoryId, now);
    return true;
  }

  /** Renew the connection's credentials in-band (`auth`); resolves with `expires_at` (null for API keys). */
  async refresh(token) {
    const data = await this._request('auth', { token }, 'authenticated');
    this.token = token;
    this._scheduleRefresh(this._conn);
    return data.expires_at ?? null;
  }

  async _attempt() {
    const generation = ++this._generation;
    this._setState('connecting', { attempt: this._failures });
    let codec = null;
    try {
      if (this.encoding === 'msgpack') codec = await this._loadCodec(); // before the URL: a ticket is single-use
    } catch (error) {
      if (generation !== this._generation) return;
      this._log.warn('PuoMemoClient: could not load the MessagePack codec:', error);
      this._retry(1006, `no MessagePack codec: ${error?.message ?? error}`, false);
      return;
    }
    if (generation !== this._generation) return;
    let url;
    try {
      url = await this._connectUrl(this._connections > 0 || this._failures > 0);
    } catch (error) {
      if (generation !== this._generation) return;
      this._log.warn('PuoMemoClient: could not get a token or ticket:', error);
      this._retry(1006, `no token or ticket: ${error?.message ?? error}`, false);
      return;
    }
    if (generation !== this._generation) return; // disconnect() while the provider ran
    let ws;
    try {
      ws = codec ? new this._WebSocket(url, [MSGPACK_PROTOCOL]) : new this._WebSocket(url);
      if (codec) ws.binaryType = 'arraybuffer';
    } catch (error) {
      // A malformed URL, or ws:// from an https page: every retry would throw too.
      this._halt(null, String(error?.message ?? error), new PuoMemoClosedError(null, String(error?.message ?? error)));
      return;
    }
    const now = this._clock.now();
    const conn = {
      ws,
      codec,
      binary: null, // whether frames are MessagePack, known once open
      established: false,
      openedAt: null,
      lastSent: now,
      lastReceived: now,
      closed: false,
    };
    this._conn = conn;
    ws.onopen = () => {
      if (this._conn !== conn) return;
      conn.lastReceived = this._clock.now();
      // The server echoes the subprotocol it picked; none is a server from before MessagePack: JSON, both ways.
      conn.binary = codec !== null && ws.protocol === MSGPACK_PROTOCOL;
      if (codec && !conn.binary && !this._warnedFallback) {
        this._warnedFallback = true;
        this._log.warn('PuoMemoClient: the server chose no subprotocol (it predates MessagePack): using JSON');
      }
      if (!this.channels.length) {
        this._established(conn);
        return;
      }
      const subscribe = { channels: [...this.channels] };
      if (this._lastSeq !== null) {
        subscribe.last_seq = this._lastSeq; // the server replays what was missed...
        if (this._epoch !== null) subscribe.epoch = this._epoch; // ...if its numbering is still the one it came from
      }
      this._send('subscribe', subscribe);
      this._later(() => {
        if (this._conn === conn && !conn.established) this._abandon(conn, 'no subscribed reply');
      }, this.replyTimeout);
    };
    ws.onmessage = (event) => {
      if (this._conn === conn) this._receive(conn, event.data);
    };
    ws.onerror = () => {
      // Once open, the close event that follows says what happened. A failed handshake gets no close event from
      // Node 20's WebSocket (nodejs/undici#3546), so it ends the attempt here, as the browser's 1006 would.
      if (this._conn === conn && conn.binary === null) this._abandon(conn, 'handshake failed');
    };
    ws.onclose = (event) => this._socketClosed(conn, event?.code || 1006, event?.reason || '');
  }

  _receive(conn, message) {
    conn.lastReceived = this._clock.now();
    let frame;
    try {
      // Each frame is read by its kind: a text frame is JSON, a binary one MessagePack.
      frame = typeof message === 'string' ? JSON.parse(message) : decodeBinary(conn.codec, message);
    } catch (error) {
      this._log.error('PuoMemoClient: failed to parse message', message, error);
      return;
    }
    if (typeof frame?.type !== 'string') return;
    const { type, data } = frame;
    if (!this._track(type, frame.seq, data, frame.epoch)) return; // an older version of a memory than one already seen
    if ((type === 'subscribed' || type === 'unsubscribed') && Array.isArray(data?.channels)) {
      this.channels = [...data.channels];
    }
    if (type === 'subscribed' && !conn.established) this._established(conn);
    this._emit('*', frame);
    this._resolve(type, data);
    this._emit(type, data, frame);
    if (type === 'error' && !conn.established && this._conn === conn) {
      // The server refused the subscription itself (an unknown channel): retrying would be refused again.
      const reason = String(data?.message ?? 'subscribe refused');
      this._halt(null, reason, new PuoMemoClosedError(null, reason));
    }
  }

  _established(conn) {
    conn.established = true;
    conn.openedAt = this._clock.now();
    this._connections += 1;
    this._setState('open');
    this._settle(null);
    this._scheduleHeartbeat(conn);
    this._scheduleRefresh(conn);
  }

  /** Follow the event position; false for a memory event older than a version already seen. */
  _track(type, seq, data, epoch) {
    if (isWhole(seq)) {
      if (typeof epoch === 'string' && epoch !== this._epoch) {
        this._lastSeq = seq; // numbered anew: the old position means nothing now
        this._epoch = epoch;
      } else {
        this._lastSeq = this._lastSeq === null ? seq : Math.max(this._lastSeq, seq);
      }
    }
    if (!data || typeof data !== 'object') return true;
    if (type === 'resumed' && isWhole(data.last_seq)) {
      this._lastSeq = Math.max(this._lastSeq ?? 0, data.last_seq);
      if (typeof data.epoch === 'string') this._epoch = data.epoch;
    } else if (type === 'resync_required' && isWhole(data.current_seq)) {
      // Handlers reload over REST; the client goes on from the tenant's current position.
      this._lastSeq = data.current_seq;
      this._epoch = typeof data.epoch === 'string' ? data.epoch : null;
      this._versions.clear(); // an "ahead" server may have been restored from a backup: versions too
      if (!this._handlers.get('resync_required')?.length) {
        this._log.warn(`PuoMemoClient: resync required (${data.reason}) and no handler: reload the state over REST`);
      }
    } else if (type === 'memory.created' || type === 'memory.restored' || type === 'memory.updated') {
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
      // A ticket's connection lives as long as the token it was asked with: this.token, if given, times refresh.
      return `${this.url}${separator}ticket=${encodeURIComponent(await this.ticketProvider())}`;
    }
    if (this.tokenProvider && (fresh || !this.token)) this.token = await this.tokenProvider();
    if (!this.token) return this.url; // session auth: the browser sends its cookie with the same-origin handshake
    return `${this.url}${separator}token=${encodeURIComponent(this.token)}`;
  }

  _socketClosed(conn, code, reason) {
    if (conn.closed) return;
    conn.closed = true;
    const current = this._conn === conn;
    if (current) {
      this._conn = null;
      this._dropConnection();
    }
    const stop = STOP_CODES.includes(code);
    this._emit('closed', { code, reason, reconnect: current && this._running && !stop });
    if (!current || !this._running) return;
    if (stop) {
      this._halt(code, reason, new PuoMemoClosedError(code, reason));
      return;
    }
    const good = conn.established && this._clock.now() - conn.openedAt >= this.stableAfter;
    const restart = RESTART_CODES.includes(code) ? this._random() * this.restartJitter : null;
    this._retry(code, reason, good && !BACKOFF_CODES.includes(code), restart);
  }

  _retry(code, reason, good, soon = null) {
    if (good) this._failures = 0;
    const delay =
      soon ?? backoffDelay(this._failures, { base: this.backoffBase, cap: this.backoffCap, random: this._random });
    this._failures += 1;
    this._setState('reconnecting', { code, reason, delay, attempt: this._failures });
    this._retryTimer = this._clock.setTimeout(() => {
      this._retryTimer = null;
      if (this._running) this._attempt();
    }, delay);
  }

  /** Stop for good: close the socket, cancel the retry, reject connect(), state 'closed'. */
  _halt(code, reason, error) {
    const wasRunning = this._running || this._state !== 'closed';
    this._running = false;
    this._generation += 1;
    this.closeCode = code === 1000 ? null : code;
    if (this._retryTimer !== null) this._clock.clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const conn = this._conn;
    this._conn = null;
    this._dropConnection();
    if (conn && !conn.closed) {
      try {
        conn.ws.close(1000); // its close event still reaches 'closed' handlers
      } catch (error) {
        this._log.warn('PuoMemoClient: close failed:', error);
      }
    }
    this._settle(error);
    if (wasRunning) this._setState('closed', { code, reason });
  }

  /** The connection is gone: its timers stop and requests waiting for replies fail. */
  _dropConnection() {
    for (const timer of this._timers) this._clock.clearTimeout(timer);
    this._timers.clear();
    for (const waiters of this._waiters.values()) {
      for (const waiter of waiters.splice(0)) waiter.reject(new Error('WebSocket closed'));
    }
  }

  /** Give up on a connection that stopped answering: it counts as dropped (1006) without waiting for TCP. */
  _abandon(conn, reason) {
    conn.ws.onopen = conn.ws.onmessage = conn.ws.onclose = conn.ws.onerror = null; // close() may fire them again
    try {
      conn.ws.close(1000);
    } catch {
      // nothing to do: the socket is being dropped anyway
    }
    this._socketClosed(conn, 1006, reason);
  }

  _setState(state, details = {}) {
    const previous = this._state;
    this._state = state;
    const event = { state, previous, code: null, reason: '', delay: null, attempt: this._failures, ...details };
    this._emit('state', event);
  }

  _settle(error) {
    if (!this._settleReady) return;
    if (error) this._settleReady.reject(error);
    else this._settleReady.resolve();
    this._settleReady = null;
  }

  _send(type, data) {
    const conn = this._conn;
    if (!conn || conn.ws.readyState !== OPEN) return false;
    const frame = { id: randomId(), type, timestamp: new Date(this._clock.now()).toISOString(), data };
    conn.ws.send(conn.binary ? conn.codec.encode(frame) : JSON.stringify(frame));
    conn.lastSent = this._clock.now();
    return true;
  }

  _request(type, data, reply) {
    return new Promise((resolve, reject) => {
      const waiters = this._waiters.get(reply) || [];
      this._waiters.set(reply, waiters);
      const waiter = {
        resolve: (value) => {
          this._cancel(waiter.timer);
          resolve(value ?? {});
        },
        reject: (error) => {
          this._cancel(waiter.timer);
          reject(error);
        },
      };
      waiters.push(waiter);
      if (!this._send(type, data)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        reject(new Error('WebSocket not connected'));
        return;
      }
      if (!waiters.includes(waiter)) return; // answered while sending
      waiter.timer = this._later(() => {
        waiters.splice(waiters.indexOf(waiter), 1);
        reject(new Error(`No ${reply} reply within ${this.replyTimeout} ms`));
      }, this.replyTimeout);
    });
  }

  _resolve(type, data) {
    const waiter = this._waiters.get(type)?.shift();
    if (waiter) waiter.resolve(data);
  }

  _emit(type, payload, frame = undefined) {
    for (const handler of [...(this._handlers.get(type) || [])]) {
      try {
        const result = handler(payload, frame);
        if (result && typeof result.catch === 'function') {
          result.catch((error) => this._log.error(`PuoMemoClient: handler for ${type} failed`, error));
        }
      } catch (error) {
        this._log.error(`PuoMemoClient: handler for ${type} failed`, error);
      }
    }
  }

  /** A timer of the current connection: cleared when it closes. */
  _later(fn, delay) {
    const timer = this._clock.setTimeout(() => {
      this._timers.delete(timer);
      fn();
    }, delay);
    this._timers.add(timer);
    return timer;
  }

  _cancel(timer) {
    if (timer === undefined) return;
    this._clock.clearTimeout(timer);
    this._timers.delete(timer);
  }

  _scheduleHeartbeat(conn) {
    if (!this.keepalive || this._conn !== conn) return;
    const now = this._clock.now();
    const wait = Math.min(conn.lastSent, conn.lastReceived) + this.keepalive - now;
    if (wait > 0) {
      this._later(() => this._scheduleHeartbeat(conn), wait);
      return;
    }
    // Nothing sent (the server closes idle sockets with 4008) or nothing received (a dead link) for `keepalive` ms.
    this.ping().catch(() => {
      if (this._conn === conn && !conn.closed) this._abandon(conn, 'heartbeat timeout');
    });
    this._later(() => this._scheduleHeartbeat(conn), this.keepalive);
  }

  _scheduleRefresh(conn, dueAt = null) {
    this._cancel(this._refreshTimer);
    this._refreshTimer = undefined;
    const expiry = jwtExpiry(this.token);
    if (expiry === null || !this.tokenProvider || !conn || this._conn !== conn || !conn.established) return;
    const now = this._clock.now();
    const due = dueAt ?? now + refreshDelay(expiry - now);
    if (due - now > MAX_TIMER_MS) {
      this._refreshTimer = this._later(() => this._scheduleRefresh(conn, due), MAX_TIMER_MS);
      return;
    }
    this._refreshTimer = this._later(async () => {
      try {
        await this.refresh(await this.tokenProvider()); // schedules the next one
      } catch (error) {
        if (this._conn !== conn) return;
        this._log.warn('PuoMemoClient: token refresh failed:', error);
        this._refreshTimer = this._later(() => this._scheduleRefresh(conn), 1000); // then at 80% of what is left
      }
    }, Math.max(0, due - now));
  }
}

/** The spec's constructor, `new PuoMemoWebSocket(token, url, options)`, on PuoMemoClient. */
export class PuoMemoWebSocket extends PuoMemoClient {
  constructor(token = null, url = undefined, options = {}) {
    super({ ...options, token, url: url ?? options.url ?? defaultUrl() });
  }
}

function defaultUrl() {
  const location = globalThis.location;
  if (!location?.host) throw new TypeError('PuoMemoClient needs options.url outside a browser page');
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

let msgpackCodec = null;

/** The vendored MessagePack codec, imported once on first use; a failed import is tried again next time. */
function loadMsgpack() {
  msgpackCodec ??= import('./vendor/msgpack/index.mjs').then(
    ({ Encoder, Decoder }) => {
      // Undefined members are left out, as JSON.stringify leaves them out: the same envelope in both encodings.
      const encoder = new Encoder({ ignoreUndefined: true });
      const decoder = new Decoder();
      return { encode: (frame) => encoder.encode(frame), decode: (bytes) => decoder.decode(bytes) };
    },
    (error) => {
      msgpackCodec = null;
      throw error;
    },
  );
  return msgpackCodec;
}

/** A binary frame's envelope: an ArrayBuffer or a typed array (Node's Buffer), decoded as MessagePack. */
function decodeBinary(codec, message) {
  if (!codec) throw new TypeError('a binary frame on a JSON client');
  if (message instanceof ArrayBuffer) return codec.decode(new Uint8Array(message));
  if (ArrayBuffer.isView(message)) {
    return codec.decode(new Uint8Array(message.buffer, message.byteOffset, message.byteLength));
  }
  throw new TypeError(`a binary frame as ${Object.prototype.toString.call(message)}, not an ArrayBuffer`);
}

function isWhole(value) {
  return Number.isSafeInteger(value) && value >= 0;
}

function randomId() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  return `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}`;
}
