// The web page's pure helpers: the list's time ordering and relative times.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { timeKey } from '../../web/static/web/live-list.js';
import { ago } from '../../web/static/web/time.js';

test('timeKey orders times to the microsecond, whatever fraction the server wrote', () => {
  const ordered = [
    '2026-12-05T10:00:04.999999Z',
    '2026-12-05T10:00:05Z',
    '2026-12-05T10:00:05.000001Z',
    '2026-12-05T10:00:05.5Z',
  ];
  const shuffled = [ordered[3], ordered[1], ordered[0], ordered[2]];
  assert.deepEqual(shuffled.sort((a, b) => (timeKey(a) < timeKey(b) ? -1 : 1)), ordered);
  assert.equal(timeKey('2026-12-05T10:00:05+00:00'), timeKey('2026-12-05T10:00:05Z'));
});

test('ago says just now, then minutes, hours and days', () => {
  const now = Date.parse('2026-12-05T12:00:00Z');
  assert.equal(ago('2026-12-05T11:59:30Z', now), 'just now');
  assert.equal(ago('2026-12-05T11:58:00Z', now), '2 min. ago');
  assert.equal(ago('2026-12-05T09:00:00Z', now), '3 hr. ago');
  assert.equal(ago('2026-12-04T12:00:00Z', now), 'yesterday');
  assert.equal(ago('2026-11-25T12:00:00Z', now), '10 days ago');
});
