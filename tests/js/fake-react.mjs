// A tiny stand-in for React's useState, useRef and useEffect, with the same contract: state survives re-renders,
// a setter re-renders, effects run after a render when their dependencies changed, and cleanups run before an
// effect runs again and on unmount. Enough to run a hook without React.
let rendering = null;

/** Render `component(props)` and keep it mounted; returns {result, update(props), unmount(), renders}. */
export function render(component, props) {
  const root = { component, props, hooks: [], index: 0, pending: [], busy: false, dirty: false, mounted: true };
  root.renders = 0;
  root.update = (next = root.props) => {
    root.props = next;
    run(root);
    return root.result;
  };
  root.unmount = () => {
    root.mounted = false;
    for (const hook of root.hooks) if (hook.cleanup) hook.cleanup();
  };
  run(root);
  return root;
}

function run(root) {
  if (root.busy) {
    root.dirty = true; // a setter called while rendering or running effects: render again after
    return;
  }
  root.busy = true;
  try {
    do {
      root.dirty = false;
      root.index = 0;
      root.pending = [];
      rendering = root;
      try {
        root.result = root.component(root.props);
        root.renders += 1;
      } finally {
        rendering = null;
      }
      for (const hook of root.pending) {
        if (hook.cleanup) hook.cleanup();
        hook.cleanup = hook.effect() || null;
      }
    } while (root.dirty && root.mounted);
  } finally {
    root.busy = false;
  }
}

function slot(make) {
  if (!rendering) throw new Error('hooks can only be called while rendering');
  const root = rendering;
  const index = root.index++;
  if (!root.hooks[index]) root.hooks[index] = make(root);
  return root.hooks[index];
}

export function useState(initial) {
  const hook = slot((root) => {
    const state = { value: typeof initial === 'function' ? initial() : initial };
    state.set = (value) => {
      const next = typeof value === 'function' ? value(state.value) : value;
      if (Object.is(next, state.value) || !root.mounted) return;
      state.value = next;
      run(root);
    };
    return state;
  });
  return [hook.value, hook.set];
}

export function useRef(initial) {
  return slot(() => ({ current: initial }));
}

export function useEffect(effect, deps) {
  const root = rendering;
  const hook = slot(() => ({ deps: null, cleanup: null, effect: null }));
  const same = deps && hook.deps?.length === deps.length && deps.every((d, i) => Object.is(d, hook.deps[i]));
  const changed = !same;
  if (changed) {
    hook.deps = deps;
    hook.effect = effect;
    root.pending.push(hook);
  }
}

export default { useState, useRef, useEffect };
