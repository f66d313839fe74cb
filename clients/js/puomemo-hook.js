// The React hook of puomemo-react.js, made from React's hooks passed in: this module never imports React, so it
// loads anywhere (and tests give it a small fake of React).
import { PuoMemoClient } from './puomemo-client.js';

const CALLBACKS = {
  onMemoryCreated: 'memory.created',
  onMemoryUpdated: 'memory.updated',
  onMemoryDeleted: 'memory.deleted',
  onMemoryRestored: 'memory.restored',
  onMessage: '*',
  onStateChange: 'state',
};

/** Build `usePuoMemoWebSocket` from `{useEffect, useRef, useState}` (React's, or anything with their contract). */
export function makeUsePuoMemoWebSocket({ useEffect, useRef, useState }) {
  /**
   * The spec's hook on PuoMemoClient: `{token, url, onMemoryCreated, onMemoryUpdated, onMemoryDeleted}`, plus
   * `onMemoryRestored` (a memory back from the trash),
   * `onMessage`, `onStateChange` and any PuoMemoClient option. Connects on mount, reconnects when `token` or `url`
   * changes, disconnects on unmount. Returns `{isConnected, state, send, client}`.
   */
  return function usePuoMemoWebSocket(options = {}) {
    const latest = useRef(options);
    latest.current = options; // handlers called are always the last render's, without reconnecting
    const clientRef = useRef(null);
    const [state, setState] = useState('connecting');
    const { token, url } = options;
    useEffect(() => {
      const {
        onMemoryCreated,
        onMemoryUpdated,
        onMemoryDeleted,
        onMemoryRestored,
        onMessage,
        onStateChange,
        ...clientOptions
      } = latest.current;
      const client = new PuoMemoClient({ ...clientOptions, token, url });
      clientRef.current = client;
      for (const [name, type] of Object.entries(CALLBACKS)) {
        client.on(type, (...args) => latest.current[name]?.(...args));
      }
      client.on('state', (event) => setState(event.state));
      client.connect().catch(() => {}); // a stop shows as state 'closed'
      return () => {
        client.disconnect();
        if (clientRef.current === client) clientRef.current = null;
      };
    }, [token, url]);
    return {
      isConnected: state === 'open',
      state,
      send: (type, data) => clientRef.current?.send(type, data) ?? false,
      client: clientRef.current,
    };
  };
}
