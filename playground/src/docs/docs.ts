/**
 * A small, dependency-free OpenAPI 3 renderer for GET /docs. Fetches /openapi.json (same origin)
 * and renders every path and operation with DOM APIs only (no innerHTML, no inline styles), so it
 * works under a strict Content-Security-Policy and fully offline.
 */
import './docs.css';
import { el, renderDocument, type OpenApiDoc } from './render';

const SPEC_URL = '/openapi.json';

async function main() {
  const root = document.getElementById('docs')!;
  try {
    const res = await fetch(SPEC_URL, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`);
    const doc = (await res.json()) as OpenApiDoc;
    root.replaceChildren(renderDocument(doc, SPEC_URL));
    if (doc.info?.title) document.title = `${doc.info.title} — REST API`;
    if (location.hash) document.getElementById(decodeURIComponent(location.hash.slice(1)))?.scrollIntoView();
  } catch (e) {
    root.replaceChildren(
      el('p', { className: 'docs-error', 'data-testid': 'docs-error' }, `Could not load ${SPEC_URL}: ${e instanceof Error ? e.message : String(e)}`),
    );
  }
}

void main();
