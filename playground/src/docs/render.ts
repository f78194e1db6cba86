/* OpenAPI 3.x → DOM. Only the parts a reader of a REST reference needs. */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface SchemaObject {
  $ref?: string;
  type?: string | string[];
  format?: string;
  description?: string;
  title?: string;
  enum?: Json[];
  const?: Json;
  default?: Json;
  example?: Json;
  examples?: Json[];
  nullable?: boolean;
  items?: SchemaObject;
  properties?: Record<string, SchemaObject>;
  required?: string[];
  additionalProperties?: boolean | SchemaObject;
  oneOf?: SchemaObject[];
  anyOf?: SchemaObject[];
  allOf?: SchemaObject[];
  minItems?: number;
  maxItems?: number;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
}

interface MediaType {
  schema?: SchemaObject;
  example?: Json;
  examples?: Record<string, { summary?: string; value?: Json; $ref?: string }>;
}
interface Parameter {
  $ref?: string;
  name: string;
  in: string;
  description?: string;
  required?: boolean;
  schema?: SchemaObject;
  example?: Json;
}
interface ResponseObject {
  $ref?: string;
  description?: string;
  headers?: Record<string, { description?: string; schema?: SchemaObject; $ref?: string }>;
  content?: Record<string, MediaType>;
}
interface Operation {
  operationId?: string;
  summary?: string;
  description?: string;
  tags?: string[];
  deprecated?: boolean;
  parameters?: Parameter[];
  requestBody?: { $ref?: string; description?: string; required?: boolean; content?: Record<string, MediaType> };
  responses?: Record<string, ResponseObject>;
  security?: Record<string, string[]>[];
}
type PathItem = { parameters?: Parameter[]; summary?: string; description?: string } & Partial<Record<Method, Operation>>;

export interface OpenApiDoc {
  openapi?: string;
  info?: { title?: string; version?: string; description?: string };
  servers?: { url: string; description?: string }[];
  tags?: { name: string; description?: string }[];
  paths?: Record<string, PathItem>;
  components?: {
    schemas?: Record<string, SchemaObject>;
    parameters?: Record<string, Parameter>;
    responses?: Record<string, ResponseObject>;
    requestBodies?: Record<string, Operation['requestBody']>;
    securitySchemes?: Record<string, { type?: string; scheme?: string; bearerFormat?: string; description?: string; name?: string; in?: string }>;
  };
  security?: Record<string, string[]>[];
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
type Method = (typeof METHODS)[number];

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | undefined> & { className?: string };

/** Creates an element; text children become text nodes (never parsed as HTML). */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs | null = null, ...children: (Child | Child[])[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined) continue;
      if (k === 'className') e.className = v;
      else e.setAttribute(k, v);
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return e;
}

/** Paragraphs from plain/markdown-ish text, with `code` spans. */
function prose(text: string | undefined, className = 'docs-prose'): HTMLElement | null {
  if (!text) return null;
  const box = el('div', { className });
  for (const para of text.split(/\n{2,}/)) {
    const p = el('p');
    para.split(/(`[^`]+`)/).forEach((part) => {
      if (part.startsWith('`') && part.endsWith('`') && part.length > 1) p.append(el('code', null, part.slice(1, -1)));
      else if (part) p.append(document.createTextNode(part));
    });
    box.append(p);
  }
  return box;
}

function slug(s: string): string {
  return s.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '').toLowerCase();
}

export function operationAnchor(method: string, path: string): string {
  return `op-${method}-${slug(path) || 'root'}`;
}

class Renderer {
  constructor(private doc: OpenApiDoc) {}

  private resolve<T extends { $ref?: string }>(obj: T | undefined, depth = 0): T | undefined {
    if (!obj || !obj.$ref || depth > 20) return obj;
    const m = /^#\/(.*)$/.exec(obj.$ref);
    if (!m) return obj;
    let cur: unknown = this.doc;
    for (const seg of m[1].split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))) {
      cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[seg] : undefined;
    }
    return cur ? this.resolve(cur as T, depth + 1) : obj;
  }

  private refName(ref: string): string {
    return ref.split('/').pop() ?? ref;
  }

  /** One-line type label, e.g. `string (date-time)`, `array of Foo`, `"a" | "b"`. */
  typeLabel(s: SchemaObject | undefined, depth = 0): string {
    if (!s) return 'any';
    if (s.$ref) return this.refName(s.$ref);
    if (depth > 6) return '…';
    if (s.const !== undefined) return JSON.stringify(s.const);
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
    const alts = s.oneOf ?? s.anyOf;
    if (alts) return alts.map((a) => this.typeLabel(a, depth + 1)).join(' | ');
    if (s.allOf) return s.allOf.map((a) => this.typeLabel(a, depth + 1)).join(' & ');
    const types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : s.properties ? ['object'] : [];
    const parts = types.map((t) => {
      if (t === 'array') return `array of ${this.typeLabel(s.items, depth + 1)}`;
      return s.format ? `${t} (${s.format})` : t;
    });
    let label = parts.join(' | ') || 'any';
    if (s.nullable) label += ' | null';
    return label;
  }

  private constraints(s: SchemaObject): string[] {
    const out: string[] = [];
    if (s.minLength !== undefined) out.push(`minLength ${s.minLength}`);
    if (s.maxLength !== undefined) out.push(`maxLength ${s.maxLength}`);
    if (s.minimum !== undefined) out.push(`≥ ${s.minimum}`);
    if (s.maximum !== undefined) out.push(`≤ ${s.maximum}`);
    if (s.minItems !== undefined) out.push(`minItems ${s.minItems}`);
    if (s.maxItems !== undefined) out.push(`maxItems ${s.maxItems}`);
    if (s.pattern) out.push(`pattern ${s.pattern}`);
    if (s.default !== undefined) out.push(`default ${JSON.stringify(s.default)}`);
    const ex = s.example ?? s.examples?.[0];
    if (ex !== undefined) out.push(`example ${JSON.stringify(ex)}`);
    return out;
  }

  /** Nested property table for an object schema (refs expanded up to a depth). */
  schema(s: SchemaObject | undefined, depth = 0, seen: string[] = []): HTMLElement {
    const box = el('div', { className: 'docs-schema' });
    if (!s) return box;
    const resolved = this.resolve(s) ?? s;
    const refName = s.$ref ? this.refName(s.$ref) : null;
    if (refName) box.append(el('div', { className: 'docs-schema-name' }, el('a', { href: `#schema-${slug(refName)}` }, refName)));
    if (refName && (seen.includes(refName) || depth > 4)) return box;
    const nextSeen = refName ? [...seen, refName] : seen;
    const props = this.collectProperties(resolved);
    if (props) {
      const list = el('ul', { className: 'docs-props' });
      for (const [name, ps] of Object.entries(props.properties)) {
        const p = this.resolve(ps) ?? ps;
        const req = props.required.includes(name);
        const li = el(
          'li',
          null,
          el('code', { className: 'docs-prop-name' }, name),
          req ? el('span', { className: 'docs-required', title: 'required' }, 'required') : null,
          el('span', { className: 'docs-type' }, this.typeLabel(ps)),
          ...this.constraints(p).map((c) => el('span', { className: 'docs-constraint' }, c)),
          prose(p.description ?? ps.description, 'docs-prose docs-prop-desc'),
        );
        const nested = ps.$ref ? ps : p.type === 'array' && p.items ? p.items : p.properties ? p : null;
        if (nested && (nested.$ref || nested.properties) && depth < 4) {
          const nestedResolved = this.resolve(nested);
          if (nestedResolved?.properties || nestedResolved?.allOf) li.append(this.schema(nested, depth + 1, nextSeen));
        }
        list.append(li);
      }
      box.append(list);
    } else {
      box.append(
        el('div', { className: 'docs-schema-scalar' }, el('span', { className: 'docs-type' }, this.typeLabel(resolved)), ...this.constraints(resolved).map((c) => el('span', { className: 'docs-constraint' }, c))),
      );
      if (!refName) box.append(prose(resolved.description) ?? '');
      const alts = resolved.oneOf ?? resolved.anyOf;
      if (alts && depth < 4) alts.forEach((a) => box.append(this.schema(a, depth + 1, nextSeen)));
      if (resolved.type === 'array' && resolved.items && (resolved.items.$ref || resolved.items.properties)) {
        box.append(this.schema(resolved.items, depth + 1, nextSeen));
      }
    }
    return box;
  }

  private collectProperties(s: SchemaObject): { properties: Record<string, SchemaObject>; required: string[] } | null {
    if (s.allOf) {
      const out = { properties: {} as Record<string, SchemaObject>, required: [] as string[] };
      for (const part of s.allOf) {
        const r = this.resolve(part);
        const sub = r ? this.collectProperties(r) : null;
        if (sub) {
          Object.assign(out.properties, sub.properties);
          out.required.push(...sub.required);
        }
      }
      return Object.keys(out.properties).length ? out : null;
    }
    if (s.properties) return { properties: s.properties, required: s.required ?? [] };
    return null;
  }

  private examples(mt: MediaType): HTMLElement[] {
    const out: HTMLElement[] = [];
    if (mt.example !== undefined) out.push(el('pre', { className: 'docs-example' }, JSON.stringify(mt.example, null, 2)));
    for (const [name, exRaw] of Object.entries(mt.examples ?? {})) {
      const ex = this.resolve(exRaw);
      if (ex?.value === undefined) continue;
      out.push(
        el('div', { className: 'docs-example-title' }, ex.summary ? `${name}: ${ex.summary}` : name),
        el('pre', { className: 'docs-example' }, typeof ex.value === 'string' ? ex.value : JSON.stringify(ex.value, null, 2)),
      );
    }
    return out;
  }

  private content(content: Record<string, MediaType> | undefined): HTMLElement | null {
    if (!content) return null;
    const box = el('div', { className: 'docs-content' });
    for (const [type, mt] of Object.entries(content)) {
      box.append(el('div', { className: 'docs-media-type' }, type), this.schema(mt.schema), ...this.examples(mt));
    }
    return box;
  }

  private parameters(params: Parameter[]): HTMLElement | null {
    const list = params.map((p) => this.resolve(p) ?? p);
    if (!list.length) return null;
    const table = el(
      'table',
      { className: 'docs-params' },
      el('thead', null, el('tr', null, el('th', null, 'Name'), el('th', null, 'In'), el('th', null, 'Type'), el('th', null, 'Description'))),
      el(
        'tbody',
        null,
        list.map((p) =>
          el(
            'tr',
            null,
            el('td', null, el('code', null, p.name), p.required ? el('span', { className: 'docs-required' }, 'required') : null),
            el('td', null, p.in),
            el('td', null, el('span', { className: 'docs-type' }, this.typeLabel(p.schema))),
            el('td', null, prose(p.description) ?? ''),
          ),
        ),
      ),
    );
    return el('section', null, el('h4', null, 'Parameters'), table);
  }

  private security(op: Operation): HTMLElement | null {
    const sec = op.security ?? this.doc.security;
    if (!sec) return null;
    if (sec.length === 0 || sec.every((s) => Object.keys(s).length === 0)) return el('p', { className: 'docs-auth' }, 'No authentication.');
    const names = [...new Set(sec.flatMap((s) => Object.keys(s)))];
    return el('p', { className: 'docs-auth' }, 'Authentication: ', names.map((n, i) => [i ? ', ' : '', el('a', { href: `#security-${slug(n)}` }, n)]).flat());
  }

  operation(path: string, method: Method, op: Operation, item: PathItem): HTMLElement {
    const id = operationAnchor(method, path);
    const params = [...(item.parameters ?? []), ...(op.parameters ?? [])];
    const body = this.resolve(op.requestBody);
    const responses = Object.entries(op.responses ?? {});
    return el(
      'article',
      { className: `docs-op docs-op-${method}${op.deprecated ? ' docs-deprecated' : ''}`, id, 'data-method': method.toUpperCase(), 'data-path': path },
      el(
        'h3',
        { className: 'docs-op-head' },
        el('span', { className: `docs-method docs-method-${method}` }, method.toUpperCase()),
        el('code', { className: 'docs-path', 'data-testid': 'docs-path' }, path),
        op.summary ? el('span', { className: 'docs-summary' }, op.summary) : null,
        op.deprecated ? el('span', { className: 'docs-badge' }, 'deprecated') : null,
      ),
      prose(op.description ?? item.description),
      this.security(op),
      this.parameters(params),
      body
        ? el('section', null, el('h4', null, `Request body${body.required ? ' (required)' : ''}`), prose(body.description), this.content(body.content))
        : null,
      responses.length
        ? el(
            'section',
            null,
            el('h4', null, 'Responses'),
            responses.map(([status, rRaw]) => {
              const r = this.resolve(rRaw) ?? rRaw;
              const headers = Object.entries(r.headers ?? {});
              return el(
                'div',
                { className: 'docs-response' },
                el('div', { className: 'docs-response-head' }, el('span', { className: `docs-status docs-status-${status[0]}` }, status), el('span', null, r.description ?? '')),
                headers.length
                  ? el(
                      'ul',
                      { className: 'docs-headers' },
                      headers.map(([h, hv]) => {
                        const hr = this.resolve(hv) ?? hv;
                        return el('li', null, 'Header ', el('code', null, h), hr.description ? `: ${hr.description}` : '');
                      }),
                    )
                  : null,
                this.content(r.content),
              );
            }),
          )
        : null,
    );
  }

  render(specUrl: string): HTMLElement {
    const doc = this.doc;
    const paths = Object.entries(doc.paths ?? {});
    type Entry = { path: string; method: Method; op: Operation; item: PathItem };
    const groups = new Map<string, Entry[]>();
    for (const [path, item] of paths) {
      for (const method of METHODS) {
        const op = item[method];
        if (!op) continue;
        const tag = op.tags?.[0] ?? (path.split('/').filter(Boolean)[0] || 'default');
        if (!groups.has(tag)) groups.set(tag, []);
        groups.get(tag)!.push({ path, method, op, item });
      }
    }
    const tagOrder = [...(doc.tags ?? []).map((t) => t.name).filter((t) => groups.has(t)), ...[...groups.keys()].filter((t) => !(doc.tags ?? []).some((d) => d.name === t))];
    const tagDesc = new Map((doc.tags ?? []).map((t) => [t.name, t.description]));

    const nav = el(
      'nav',
      { className: 'docs-nav', 'aria-label': 'Operations' },
      el('div', { className: 'docs-nav-title' }, 'Operations'),
      tagOrder.map((tag) =>
        el(
          'div',
          { className: 'docs-nav-group' },
          el('div', { className: 'docs-nav-tag' }, tag),
          el(
            'ul',
            null,
            groups.get(tag)!.map((e) =>
              el('li', null, el('a', { href: `#${operationAnchor(e.method, e.path)}` }, el('span', { className: `docs-method docs-method-${e.method}` }, e.method.toUpperCase()), el('code', null, e.path))),
            ),
          ),
        ),
      ),
    );

    const schemas = Object.entries(doc.components?.schemas ?? {});
    const securitySchemes = Object.entries(doc.components?.securitySchemes ?? {});
    const main = el(
      'main',
      { className: 'docs-main' },
      el(
        'header',
        { className: 'docs-header' },
        el('h1', null, doc.info?.title ?? 'REST API'),
        el(
          'p',
          { className: 'docs-meta' },
          doc.info?.version ? `Version ${doc.info.version}` : '',
          doc.openapi ? ` · OpenAPI ${doc.openapi}` : '',
          ' · ',
          el('a', { href: specUrl }, specUrl),
          ' · ',
          el('a', { href: '/graphiql' }, 'GraphQL playground'),
        ),
        prose(doc.info?.description),
        doc.servers?.length ? el('p', { className: 'docs-meta' }, 'Servers: ', doc.servers.map((s, i) => [i ? ', ' : '', el('code', null, s.url)]).flat()) : null,
      ),
      securitySchemes.length
        ? el(
            'section',
            { className: 'docs-section' },
            el('h2', null, 'Authentication'),
            securitySchemes.map(([name, s]) =>
              el(
                'div',
                { className: 'docs-security', id: `security-${slug(name)}` },
                el('code', null, name),
                ` — ${[s.type, s.scheme, s.bearerFormat].filter(Boolean).join(' ')}${s.name ? ` (${s.in} ${s.name})` : ''}`,
                prose(s.description),
              ),
            ),
          )
        : null,
      tagOrder.map((tag) =>
        el(
          'section',
          { className: 'docs-section docs-tag', id: `tag-${slug(tag)}` },
          el('h2', null, tag),
          prose(tagDesc.get(tag)),
          groups.get(tag)!.map((e) => this.operation(e.path, e.method, e.op, e.item)),
        ),
      ),
      schemas.length
        ? el(
            'section',
            { className: 'docs-section' },
            el('h2', null, 'Schemas'),
            schemas.map(([name, s]) =>
              el('div', { className: 'docs-schema-def', id: `schema-${slug(name)}` }, el('h3', null, name), prose(s.description), this.schema(s, 1, [name])),
            ),
          )
        : null,
      paths.length === 0 ? el('p', null, 'This document has no paths.') : null,
    );
    return el('div', { className: 'docs-layout' }, nav, main);
  }
}

export function renderDocument(doc: OpenApiDoc, specUrl: string): HTMLElement {
  return new Renderer(doc).render(specUrl);
}
