/**
 * localStorage for GraphiQL under a versioned namespace, so a playground with new example tabs
 * starts afresh instead of restoring tabs saved by an older build. Older namespaces are removed.
 * Headers are never persisted (GraphiQL's default): restored tabs get the configured headers again.
 */
const PREFIX = 'twofold-playground:';
const NAMESPACE = `${PREFIX}v3:`;

export function namespacedStorage(): Storage | undefined {
  let ls: Storage;
  try {
    ls = window.localStorage;
    ls.getItem(NAMESPACE);
  } catch {
    return undefined; // storage disabled: GraphiQL falls back to its default
  }
  for (let i = ls.length - 1; i >= 0; i--) {
    const k = ls.key(i);
    if (k && k.startsWith(PREFIX) && !k.startsWith(NAMESPACE)) ls.removeItem(k);
  }
  const keys = () => {
    const out: string[] = [];
    for (let i = 0; i < ls.length; i++) {
      const k = ls.key(i);
      if (k && k.startsWith(NAMESPACE)) out.push(k);
    }
    return out;
  };
  return {
    getItem: (key: string) => ls.getItem(NAMESPACE + key),
    setItem: (key: string, value: string) => ls.setItem(NAMESPACE + key, value),
    removeItem: (key: string) => ls.removeItem(NAMESPACE + key),
    clear: () => keys().forEach((k) => ls.removeItem(k)),
    key: (index: number) => keys()[index]?.slice(NAMESPACE.length) ?? null,
    get length() {
      return keys().length;
    },
  };
}
