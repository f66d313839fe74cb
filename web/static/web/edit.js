// The edit page: while you edit, say at once when someone else changes or deletes the memory (before you save).

import { PuoMemoClient } from '/static/puomemo/puomemo-client.js';

const boot = JSON.parse(document.getElementById('boot').textContent);
const notice = document.getElementById('live-conflict');
const text = document.getElementById('live-conflict-text');
const load = document.getElementById('live-conflict-load');
const version = document.querySelector('input[name=expected_version]');
let theirs = null;

const client = new PuoMemoClient({ lastSeq: boot.seq, epoch: boot.epoch ?? null, channels: ['memories'] });
client.on('memory.updated', (data) => {
  if (data.memory.id !== boot.memory_id || data.memory.version <= Number(version.value)) return;
  theirs = data.memory;
  text.textContent = `Changed by ${data.user_name} meanwhile.`;
  load.hidden = false;
  notice.hidden = false;
});
client.on('memory.deleted', (data) => {
  if (data.memory_id !== boot.memory_id) return;
  const what = data.reason === 'visibility' ? 'Hidden from you' : 'Deleted';
  text.textContent = `${what} by ${data.user_name} meanwhile.`;
  load.hidden = true;
  notice.hidden = false;
});
load.addEventListener('click', () => {
  document.getElementById('id_title').value = theirs.title;
  document.getElementById('id_content').value = theirs.content;
  document.getElementById('id_tags').value = theirs.tags.join(', ');
  document.getElementById('id_visibility').value = theirs.visibility;
  version.value = theirs.version;
  notice.hidden = true;
  document.getElementById('id_title').focus();
});
// Others' lists show that you are editing (the client sends at most one a memory every 2 s).
document.getElementById('edit-form').addEventListener('input', () => client.typing(boot.memory_id));
client.connect().catch(() => {});
window.puomemo = { client }; // for the browser tests and the curious
