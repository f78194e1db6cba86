export interface PlaygroundConfig {
  /** GraphQL endpoint, same origin, e.g. "/graphql". */
  endpoint: string;
  /** "Bearer …" in dev mode (a demo token), null when the operator configured a JWT key. */
  authorization: string | null;
  /** Shown when authorization is null, e.g. how to mint a token. */
  hint?: string | null;
}

export const CONFIG_URL = '/playground/config.json';

export async function loadConfig(): Promise<PlaygroundConfig> {
  try {
    const res = await fetch(CONFIG_URL, { headers: { Accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const raw = (await res.json()) as Partial<PlaygroundConfig>;
    return {
      endpoint: typeof raw.endpoint === 'string' && raw.endpoint ? raw.endpoint : '/graphql',
      authorization: typeof raw.authorization === 'string' && raw.authorization ? raw.authorization : null,
      hint: typeof raw.hint === 'string' ? raw.hint : null,
    };
  } catch (e) {
    return {
      endpoint: '/graphql',
      authorization: null,
      hint: `Could not load ${CONFIG_URL} (${e instanceof Error ? e.message : String(e)}). Put "Authorization": "Bearer <token>" into the headers.`,
    };
  }
}
