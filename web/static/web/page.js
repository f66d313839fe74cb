// Every page: the compact menu on phones, drafts that survive, times kept current.

import { keepDrafts } from './drafts.js';
import { keepTimesCurrent } from './time.js';

const toggle = document.querySelector('.menu-toggle');
toggle?.addEventListener('click', () => {
  const open = toggle.getAttribute('aria-expanded') !== 'true';
  toggle.setAttribute('aria-expanded', String(open));
  document.querySelector('.bar').classList.toggle('open', open);
});
keepDrafts();
keepTimesCurrent();
