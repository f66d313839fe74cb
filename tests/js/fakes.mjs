// Test doubles for the JS client's unit tests: a WebSocket the test drives by hand and a clock it moves.
import { decode, encode } from '../../clients/js/vendor/msgpack/index.mjs';

export const MSGPACK = 'puomemo.msgpack';

/**
 * A WebSocket class whose instances the test opens, feeds and closes; `sockets` lists every one made.
 * `serverProtocols`: the subprotocols the fake server knows, as the contract's (an old server: none).
 */
export function fakeWebSocket({ serverProtocols = [MSGPACK, 'puomemo.json'] } = {}) {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocols = []) {
      this.url = url;
      this.protocols = typeof protocols === 'string' ? [protocols] : [...protocols]; // offered by the client
      this.protocol = ''; // the server's pick, set by accept()
      this.binaryType = 'blob'; // the browser's default
      this.readyState = 0;
      this.sent = []; // every frame the client sent, decoded
      this.raw = []; // the same frames as they went on the wire: strings (text) or bytes (binary)
      this.closedWith = null; // what the client passed to close()
      this.answersPings = true; // as the server does; false: a dead link
      sockets.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
      this.raw.push(data);
      const frame = typeof data === 'string' ? JSON.parse(data) : decode(data);
      this.sent.push(frame);
      if (frame.type === 'ping' && this.answersPings) {
        queueMicrotask(() => this.readyState === 1 && this.push('pong', { timestamp: 'now' }));
      }
    }

    close(code = 1000, reason = '') {
      if (this.failedWithoutClose) {
        this.onerror?.({ type: 'error' }); // as Node 20's WebSocket does: close() fails the connection again
        return;
      }
      if (this.readyState >= 2) return;
      this.closedWith = { code, reason };
      this.readyState = 2;
      // A real close handshake ends later with the close event, carrying the code.
      queueMicrotask(() => this.drop(code, reason));
    }

    /** The handshake succeeded; the server picked the first subprotocol offered that it knows, if any. */
    accept() {
      this.protocol = this.protocols.find((protocol) => serverProtocols.includes(protocol)) ?? '';
      this.readyState = 1;
      this.onopen?.({});
    }

    /** The server sends a frame, in the connection's encoding. */
    push(type, data = {}, extra = {}) {
      const frame = { id: `srv-${type}`, type, timestamp: 'now', data, ...extra };
      this.deliver(this.protocol === MSGPACK ? encode(frame) : JSON.stringify(frame));
    }

    /** The server sends a text frame (a string) or a binary one (bytes), as the browser hands it over. */
    deliver(data) {
      if (typeof data !== 'string') {
        const bytes = new Uint8Array(data);
        data = this.binaryType === 'arraybuffer' ? bytes.buffer : new Blob([bytes]);
      }
      this.onmessage?.({ data });
    }

    /** Open and answer the client's subscribe, as the server does. */
    open() {
      this.accept();
      const subscribe = this.sent.find((frame) => frame.type === 'subscribe');
      this.push('subscribed', { channels: [...subscribe.data.channels].sort() });
    }

    /** The handshake fails: an error event, then the close event (1006) unless `closeEvent` is false (Node 20). */
    fail({ closeEvent = true } = {}) {
      this.failedWithoutClose = !closeEvent;
      this.onerror?.({ type: 'error' });
      if (closeEvent) this.drop(1006);
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
