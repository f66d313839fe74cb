// Test doubles for the JS client's unit tests: a WebSocket the test drives by hand and a clock it moves.

/** A WebSocket class whose instances the test opens, feeds and closes; `sockets` lists every one made. */
export function fakeWebSocket() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null; // what the client passed to close()
      this.answersPings = true; // as the server does; false: a dead link
      sockets.push(this);
    }

    send(text) {
      if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
      const frame = JSON.parse(text);
      this.sent.push(frame);
      if (frame.type === 'ping' && this.answersPings) {
        queueMicrotask(() => this.readyState === 1 && this.push('pong', { timestamp: 'now' }));
      }
    }

    close(code = 1000, reason = '') {
      if (this.readyState >= 2) return;
      this.closedWith = { code, reason };
      this.readyState = 2;
      // A real close handshake ends later with the close event, carrying the code.
      queueMicrotask(() => this.drop(code, reason));
    }

    /** The handshake succeeded. */
    accept() {
      this.readyState = 1;
      this.onopen?.({});
    }

    /** The server sends a frame. */
    push(type, data = {}, extra = {}) {
      this.onmessage?.({ data: JSON.stringify({ id: `srv-${type}`, type, timestamp: 'now', data, ...extra }) });
    }

    /** Open and answer the client's subscribe, as the server does. */
    open() {
      this.accept();
      const subscribe = this.sent.find((frame) => frame.type === 'subscribe');
      this.push('subscribed', { channels: [...subscribe.data.channels].sort() });
    }

    /** The connection ends with `code` (the server closed it, or it dropped). */
    drop(code = 1006, reason = '') {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }

    frames(type) {
      return this.sent.filter((frame) => frame.type === type);
    }
  }
  FakeWebSocket.sockets = sockets;
  return FakeWebSocket;
}

/** A clock with {setTimeout, clearTimeout, now} that moves only when the test advances it. */
export class FakeClock {
  constructor(start = 1_700_000_000_000) {
    this.time = start;
    this.timers = new Map();
    this.nextId = 1;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.time + Math.max(0, ms), fn, id });
      return id;
    };
    this.clearTimeout = (id) => this.timers.delete(id);
    this.now = () => this.time;
  }

  /** Move time forward by `ms`, firing due timers in order (and letting promises settle after each). */
  async advance(ms) {
    const end = this.time + ms;
    await flush();
    for (;;) {
      const due = [...this.timers.values()].filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers.delete(due.id);
      this.time = due.at;
      due.fn();
      await flush();
    }
    this.time = end;
  }

  /** Milliseconds until the next timer fires, or null. */
  nextIn() {
    const ats = [...this.timers.values()].map((t) => t.at);
    return ats.length ? Math.min(...ats) - this.time : null;
  }
}

/** Let pending promise callbacks and microtasks run. */
export function flush() {
  return new Promise((resolve) => setImmediate(resolve));
}

export const silent = { warn() {}, error() {}, info() {}, log() {} };

/** A JWT-shaped token (unsigned) whose `exp` is `expMs` (milliseconds). */
export function fakeJwt(expMs, name = 'user') {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'HS256' })}.${part({ exp: Math.floor(expMs / 1000), sub: name })}.sig`;
}
