// The WebSocket test client: a raw /ws socket and a log of every frame both ways, with timestamps.
// With MessagePack chosen, binary frames are shown decoded (as JSON) with their size on the wire.

const $ = (id) => document.getElementById(id);
const log = $('tc-log');
const state = $('tc-state');
let ws = null;
let codec = null; // the vendored MessagePack codec, loaded when MessagePack is first chosen

const MSGPACK_PROTOCOL = 'puomemo.msgpack';

async function loadCodec() {
  // Served from clients/js (STATICFILES_DIRS "puomemo"), next to this file's static directory.
  const { Encoder, Decoder } = await import('../puomemo/vendor/msgpack/index.mjs');
  const encoder = new Encoder({ ignoreUndefined: true });
  const decoder = new Decoder();
  return { encode: (frame) => encoder.encode(frame), decode: (bytes) => decoder.decode(new Uint8Array(bytes)) };
}

/** How an incoming frame is shown: text as is, a binary frame decoded as MessagePack (or in hex if it is not). */
function shown(data) {
  if (typeof data === 'string') return data;
  try {
    return `[binary, ${data.byteLength} bytes] ${JSON.stringify(codec.decode(data))}`;
  } catch (error) {
    const hex = [...new Uint8Array(data).slice(0, 64)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    return `[binary, ${data.byteLength} bytes, not MessagePack: ${error.message}] ${hex}`;
  }
}

function stamp() {
  return new Date().toISOString().slice(11, 23);
}

function entry(direction, text) {
  const li = document.createElement('li');
  li.className = `frame frame-${direction}`;
  const time = document.createElement('time');
  time.textContent = stamp();
  const arrow = { out: '→', in: '←', info: '•' }[direction];
  const body = document.createElement('code');
  body.textContent = text;
  li.append(time, ` ${arrow} `, body);
  log.append(li);
  li.scrollIntoView({ block: 'nearest' });
}

function setState(name) {
  state.textContent = name;
  state.className = `indicator indicator-${{ open: 'live', connecting: 'connecting', closed: 'offline' }[name]}`;
  $('tc-open').disabled = name !== 'closed';
  $('tc-close').disabled = name === 'closed';
}

function csrfToken() {
  return document.cookie.match(/(?:^|; )csrftoken=([^;]+)/)?.[1] ?? '';
}

/** The /ws URL: with the session cookie as is, or with a single-use ticket bought with the token (never the token). */
async function socketUrl() {
  const base = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  if (document.querySelector('input[name=auth]:checked').value === 'session') return base;
  const response = await fetch('/api/v4/ws/ticket', {
    method: 'POST',
    headers: { Authorization: `Bearer ${$('tc-token').value.trim()}`, 'X-CSRFToken': csrfToken() },
  });
  const body = await response.json();
  if (!response.ok) throw new Error(`ticket refused (${response.status}): ${body.detail ?? JSON.stringify(body)}`);
  return `${base}?ticket=${encodeURIComponent(body.ticket)}`;
}

function send(type, data = null) {
  const text = JSON.stringify(data === null ? { type } : { type, data });
  sendRaw(text);
}

function sendRaw(text) {
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    entry('info', 'not connected');
    return;
  }
  if (ws.protocol === MSGPACK_PROTOCOL) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      ws.send(text); // not JSON: sent as a text frame, which a MessagePack connection refuses
      entry('out', `[text] ${text}`);
      return;
    }
    const bytes = codec.encode(frame);
    ws.send(bytes);
    entry('out', `[binary, ${bytes.byteLength} bytes] ${JSON.stringify(frame)}`);
    return;
  }
  ws.send(text);
  entry('out', text);
}

function channels() {
  return $('tc-channels')
    .value.split(',')
    .map((c) => c.trim())
    .filter(Boolean);
}

$('tc-connect').addEventListener('submit', async (event) => {
  event.preventDefault();
  setState('connecting');
  let url;
  try {
    url = await socketUrl();
  } catch (error) {
    entry('info', String(error.message ?? error));
    setState('closed');
    return;
  }
  const msgpack = $('tc-encoding').value === 'msgpack';
  if (msgpack && !codec) {
    try {
      codec = await loadCodec();
    } catch (error) {
      entry('info', `MessagePack codec not loaded: ${error.message ?? error}`);
      setState('closed');
      return;
    }
  }
  entry('info', `connecting to ${url.replace(/ticket=[^&]+/, 'ticket=…')}`);
  ws = msgpack ? new WebSocket(url, [MSGPACK_PROTOCOL]) : new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => {
    setState('open');
    const extensions = ws.extensions ? `, ${ws.extensions}` : '';
    entry('info', `open (${ws.protocol === MSGPACK_PROTOCOL ? 'MessagePack' : 'JSON'}${extensions})`);
  };
  ws.onmessage = (message) => entry('in', shown(message.data));
  ws.onclose = (close) => {
    setState('closed');
    entry('info', `closed ${close.code}${close.reason ? ` ${close.reason}` : ''}`);
    ws = null;
  };
});
$('tc-close').addEventListener('click', () => ws?.close(1000));
$('tc-subscribe').addEventListener('click', () => send('subscribe', { channels: channels() }));
$('tc-unsubscribe').addEventListener('click', () => send('unsubscribe', { channels: channels() }));
$('tc-ping').addEventListener('click', () => send('ping'));
$('tc-send').addEventListener('click', () => sendRaw($('tc-raw').value));
$('tc-clear').addEventListener('click', () => log.replaceChildren());
setState('closed');
