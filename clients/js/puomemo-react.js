// The spec's React hook, usePuoMemoWebSocket, on PuoMemoClient. It imports 'react' by its bare name: a bundler
// resolves it, or an import map in a page without one. makeUsePuoMemoWebSocket (puomemo-hook.js) takes the hooks
// as a parameter instead.
import { useEffect, useRef, useState } from 'react';
import { makeUsePuoMemoWebSocket } from './puomemo-hook.js';

export { makeUsePuoMemoWebSocket };
export const usePuoMemoWebSocket = makeUsePuoMemoWebSocket({ useEffect, useRef, useState });
