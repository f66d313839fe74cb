// Times on cards: relative ("2 min ago"), kept current, exact on hover.

const UNITS = [
  ['year', 365 * 24 * 3600],
  ['month', 30 * 24 * 3600],
  ['day', 24 * 3600],
  ['hour', 3600],
  ['minute', 60],
];
const relative = new Intl.RelativeTimeFormat('en', { numeric: 'auto', style: 'short' });
const exact = new Intl.DateTimeFormat('en', { dateStyle: 'medium', timeStyle: 'medium' });

/** "just now", "2 min. ago", "yesterday", ... for an ISO 8601 time. */
export function ago(iso, now = Date.now()) {
  const seconds = Math.round((Date.parse(iso) - now) / 1000);
  if (Math.abs(seconds) < 45) return 'just now';
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size || unit === 'minute') return relative.format(Math.round(seconds / size), unit);
  }
  return 'just now';
}

/** Write the relative time into every <time datetime> under root, the exact one into its title. */
export function refreshTimes(root = document) {
  const now = Date.now();
  for (const node of root.querySelectorAll('time[datetime]')) {
    node.textContent = ago(node.dateTime, now);
    node.title = exact.format(new Date(node.dateTime));
  }
}

/** Keep the page's times current. */
export function keepTimesCurrent() {
  refreshTimes();
  setInterval(() => refreshTimes(), 30_000);
}
