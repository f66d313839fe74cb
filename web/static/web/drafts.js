// Drafts: what is typed in the new and edit forms stays in localStorage until the server says it was saved,
// so a session that ended elsewhere (Save leads to the login page) loses nothing.

const FIELDS = ['title', 'content', 'tags', 'visibility', 'expected_version'];

function keyOf(form) {
  return `puomemo:draft:${document.body.dataset.user}:${form.dataset.draft}`;
}

function read(form) {
  const fields = FIELDS.filter((name) => form.elements[name]);
  return Object.fromEntries(fields.map((name) => [name, form.elements[name].value]));
}

function write(form, draft) {
  for (const name of FIELDS) if (form.elements[name] && name in draft) form.elements[name].value = draft[name];
}

/** Keep one form's draft, and restore it if the server did not render the form with its own values. */
export function keepDraft(form) {
  const key = keyOf(form);
  const saved = localStorage.getItem(key);
  // A re-rendered form (errors, a conflict) shows what the server has: the draft is kept, not restored over it.
  if (saved && !form.hasAttribute('data-bound')) {
    const initial = read(form);
    write(form, JSON.parse(saved));
    const note = document.createElement('p');
    note.className = 'draft-note';
    note.setAttribute('role', 'status');
    note.textContent = 'Your unsaved draft is back. ';
    const discard = document.createElement('button');
    discard.type = 'button';
    discard.className = 'link';
    discard.textContent = 'Discard it';
    discard.addEventListener('click', () => {
      localStorage.removeItem(key);
      write(form, initial);
      note.remove();
    });
    note.append(discard);
    form.prepend(note);
  }
  const keep = () => localStorage.setItem(key, JSON.stringify(read(form)));
  form.addEventListener('input', keep);
  // Again on Save: a logout in another tab cleared the drafts, but this page still holds the text.
  form.addEventListener('submit', keep);
}

/** Drop the drafts the server confirmed as saved (its "Saved." message names them), then keep the page's. */
export function keepDrafts() {
  const user = document.body.dataset.user;
  if (!user) return; // the login page: drafts wait for the user to be back
  for (const node of document.querySelectorAll('[data-saved-draft]')) {
    localStorage.removeItem(`puomemo:draft:${user}:${node.dataset.savedDraft}`);
  }
  for (const form of document.querySelectorAll('form[data-draft]')) keepDraft(form);
  // Logging out on purpose (a shared computer) leaves no text behind for the next person.
  document.querySelector('form[data-logout]')?.addEventListener('submit', () => {
    const prefix = `puomemo:draft:${user}:`;
    for (const key of Object.keys(localStorage)) if (key.startsWith(prefix)) localStorage.removeItem(key);
  });
}
