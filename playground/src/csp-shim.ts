/**
 * Makes Monaco (GraphiQL 5's editor) work under `style-src 'self'` — no 'unsafe-inline'.
 *
 * Monaco renders editor lines as HTML strings with `style="top:…px"` attributes (innerHTML /
 * insertAdjacentHTML) and writes theme and decoration CSS into `<style>` elements. A strict CSP
 * blocks both, which leaves the editor blank. CSSOM is not restricted by CSP, so:
 *
 *  1. HTML strings: `style="…"` attributes inside tags are renamed to `data-csp-style` before
 *     parsing, then applied with `element.style.cssText` (CSSOM) and removed.
 *     `setAttribute('style', …)` becomes `element.style.cssText = …`.
 *  2. Script-created `<style>` elements: text written to them (textContent / innerText /
 *     innerHTML / appendChild(text node)) goes into a constructed `CSSStyleSheet`, adopted by the
 *     document (or shadow root) while the element is "inserted"; `element.sheet` returns that
 *     sheet, so `insertRule` keeps working. The element itself is never put into the DOM (even an
 *     empty inline <style> is a CSP violation); parentNode/remove()/removeChild() behave as if.
 *
 * Import this module before anything that loads Monaco.
 */

type StyleRoot = Document | ShadowRoot;
interface Managed {
  sheet: CSSStyleSheet;
  text: string;
  /** Where the page put the element (it is never really inserted). */
  parent: Node | null;
  adoptedIn: StyleRoot | null;
}

const TAG = /<[a-zA-Z][^<>]*>/g;
const STYLE_ATTR = /(\s)style\s*=\s*("[^"]*"|'[^']*')/gi;
const MARK = 'data-csp-style';

function needsRewrite(html: string): boolean {
  return html.includes('style') && /<[a-zA-Z][^<>]*\sstyle\s*=/i.test(html);
}

function rewrite(html: string): string {
  return html.replace(TAG, (tag) => tag.replace(STYLE_ATTR, `$1${MARK}=$2`));
}

function hydrate(root: ParentNode | null | undefined): void {
  if (!root || !('querySelectorAll' in root)) return;
  const apply = (el: Element) => {
    const css = el.getAttribute(MARK);
    el.removeAttribute(MARK);
    const style = (el as HTMLElement).style;
    if (css !== null && style) style.cssText = css;
  };
  if (root instanceof Element && root.hasAttribute(MARK)) apply(root);
  root.querySelectorAll(`[${MARK}]`).forEach(apply);
}

function install(): void {
  const w = window as unknown as { __twofoldCspShim?: boolean };
  if (typeof window === 'undefined' || w.__twofoldCspShim || typeof CSSStyleSheet === 'undefined' || !('adoptedStyleSheets' in Document.prototype)) {
    return;
  }
  w.__twofoldCspShim = true;

  const setAttribute = Element.prototype.setAttribute;

  // ---- 2. <style> elements -------------------------------------------------------------------
  // A script-created <style> is never really inserted: even an empty one is an inline-style
  // violation (the hash of ""). It gets a "virtual" parent instead, and its text lives in a
  // constructed sheet adopted by that parent's document or shadow root.
  const managed = new WeakMap<HTMLStyleElement, Managed>();
  const record = (el: HTMLStyleElement): Managed => {
    let r = managed.get(el);
    if (!r) {
      r = { sheet: new CSSStyleSheet(), text: '', parent: null, adoptedIn: null };
      managed.set(el, r);
    }
    return r;
  };
  const rootOf = (n: Node): StyleRoot => {
    const root = n.getRootNode();
    return root instanceof Document || root instanceof ShadowRoot ? root : document;
  };
  const sync = (el: HTMLStyleElement) => {
    const r = managed.get(el);
    if (!r) return;
    const target = r.parent ? rootOf(r.parent) : null;
    if (target === r.adoptedIn) return;
    if (r.adoptedIn) r.adoptedIn.adoptedStyleSheets = r.adoptedIn.adoptedStyleSheets.filter((x) => x !== r.sheet);
    if (target) target.adoptedStyleSheets = [...target.adoptedStyleSheets, r.sheet];
    r.adoptedIn = target;
  };
  const setText = (el: HTMLStyleElement, text: string) => {
    const r = record(el);
    r.text = text;
    try {
      r.sheet.replaceSync(text);
    } catch {
      /* @import is not allowed in constructed sheets: ignore */
    }
    sync(el);
  };
  /** Script-created, not (really) in a document, and without parsed text: ours to manage. */
  const manageable = (n: unknown): n is HTMLStyleElement =>
    n instanceof HTMLStyleElement && (managed.has(n) || (!n.isConnected && n.childNodes.length === 0));
  const virtualInsert = (el: HTMLStyleElement, parent: Node | null) => {
    const r = record(el);
    r.parent = parent;
    sync(el);
  };
  const virtualRemove = (el: HTMLStyleElement) => {
    const r = managed.get(el);
    if (!r) return;
    r.parent = null;
    sync(el);
  };

  const styleProto = HTMLStyleElement.prototype;
  const nodeText = Object.getOwnPropertyDescriptor(Node.prototype, 'textContent')!;
  const sheetDesc = Object.getOwnPropertyDescriptor(styleProto, 'sheet')!;
  const parentNodeDesc = Object.getOwnPropertyDescriptor(Node.prototype, 'parentNode')!;
  const parentElementDesc = Object.getOwnPropertyDescriptor(Node.prototype, 'parentElement')!;
  const isConnectedDesc = Object.getOwnPropertyDescriptor(Node.prototype, 'isConnected')!;
  const define = (name: string, get: (this: HTMLStyleElement) => unknown, set?: (this: HTMLStyleElement, v: unknown) => void) =>
    Object.defineProperty(styleProto, name, { configurable: true, enumerable: true, get, set });

  for (const prop of ['textContent', 'innerText', 'innerHTML']) {
    define(
      prop,
      function () {
        const r = managed.get(this);
        return r ? r.text : nodeText.get!.call(this);
      },
      function (value) {
        setText(this, value == null ? '' : String(value));
      },
    );
  }
  define('sheet', function () {
    const own = sheetDesc.get!.call(this) as CSSStyleSheet | null;
    if (own && !managed.has(this)) return own; // a <style> from the page's own HTML
    return record(this).sheet;
  });
  define('parentNode', function () {
    const r = managed.get(this);
    return r ? r.parent : parentNodeDesc.get!.call(this);
  });
  define('parentElement', function () {
    const r = managed.get(this);
    return r ? (r.parent instanceof Element ? r.parent : null) : parentElementDesc.get!.call(this);
  });
  define('isConnected', function () {
    const r = managed.get(this);
    return r ? !!r.parent && isConnectedDesc.get!.call(r.parent) : isConnectedDesc.get!.call(this);
  });
  const origAppendChild = Node.prototype.appendChild;
  const origInsertBefore = Node.prototype.insertBefore;
  const origRemoveChild = Node.prototype.removeChild;
  styleProto.appendChild = function <T extends Node>(this: HTMLStyleElement, node: T): T {
    if (node.nodeType === Node.TEXT_NODE && manageable(this)) {
      setText(this, (managed.get(this)?.text ?? '') + (node as unknown as Text).data);
      return node;
    }
    return origAppendChild.call(this, node) as T;
  };
  styleProto.insertBefore = function <T extends Node>(this: HTMLStyleElement, node: T, child: Node | null): T {
    if (node.nodeType === Node.TEXT_NODE && manageable(this)) {
      setText(this, (node as unknown as Text).data + (managed.get(this)?.text ?? ''));
      return node;
    }
    return origInsertBefore.call(this, node, child) as T;
  };
  const elementRemove = Element.prototype.remove;
  styleProto.remove = function (this: HTMLStyleElement) {
    if (managed.has(this)) virtualRemove(this);
    else elementRemove.call(this);
  };

  // Insertion points: a manageable <style> gets a virtual parent instead of a real one.
  const nodeProto = Node.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
  nodeProto.appendChild = function (this: Node, node: unknown) {
    if (manageable(node)) {
      virtualInsert(node, this);
      return node;
    }
    return origAppendChild.call(this, node as Node);
  };
  nodeProto.insertBefore = function (this: Node, node: unknown, child: unknown) {
    if (manageable(node)) {
      virtualInsert(node, this);
      return node;
    }
    return origInsertBefore.call(this, node as Node, child as Node | null);
  };
  nodeProto.removeChild = function (this: Node, child: unknown) {
    if (child instanceof HTMLStyleElement && managed.get(child)?.parent === this) {
      virtualRemove(child);
      return child;
    }
    return origRemoveChild.call(this, child as Node);
  };
  const wrapVariadic = (proto: object, name: 'append' | 'prepend' | 'before' | 'after', parentOf: (self: Node) => Node | null) => {
    const p = proto as Record<string, (...a: unknown[]) => unknown>;
    const orig = p[name];
    if (typeof orig !== 'function') return;
    p[name] = function (this: Node, ...nodes: unknown[]) {
      const rest = nodes.filter((n) => {
        if (!manageable(n)) return true;
        virtualInsert(n, parentOf(this));
        return false;
      });
      return orig.apply(this, rest);
    };
  };
  for (const proto of [Element.prototype, Document.prototype, DocumentFragment.prototype]) {
    wrapVariadic(proto, 'append', (self) => self);
    wrapVariadic(proto, 'prepend', (self) => self);
  }
  wrapVariadic(Element.prototype, 'before', (self) => parentNodeDesc.get!.call(self) as Node | null);
  wrapVariadic(Element.prototype, 'after', (self) => parentNodeDesc.get!.call(self) as Node | null);

  // ---- 1. style attributes in HTML strings ---------------------------------------------------
  const innerHTML = Object.getOwnPropertyDescriptor(Element.prototype, 'innerHTML')!;
  Object.defineProperty(Element.prototype, 'innerHTML', {
    configurable: true,
    enumerable: true,
    get: innerHTML.get,
    set(this: Element, value: unknown) {
      const html = value == null ? '' : String(value);
      if (!needsRewrite(html)) {
        innerHTML.set!.call(this, value);
        return;
      }
      innerHTML.set!.call(this, rewrite(html));
      hydrate(this instanceof HTMLTemplateElement ? this.content : this);
    },
  });
  const outerHTML = Object.getOwnPropertyDescriptor(Element.prototype, 'outerHTML')!;
  Object.defineProperty(Element.prototype, 'outerHTML', {
    configurable: true,
    enumerable: true,
    get: outerHTML.get,
    set(this: Element, value: unknown) {
      const html = value == null ? '' : String(value);
      if (!needsRewrite(html)) {
        outerHTML.set!.call(this, value);
        return;
      }
      const parent = this.parentNode;
      outerHTML.set!.call(this, rewrite(html));
      hydrate(parent);
    },
  });
  const insertAdjacentHTML = Element.prototype.insertAdjacentHTML;
  Element.prototype.insertAdjacentHTML = function (this: Element, position: InsertPosition, value: string) {
    const html = value == null ? '' : String(value);
    if (!needsRewrite(html)) return insertAdjacentHTML.call(this, position, value);
    insertAdjacentHTML.call(this, position, rewrite(html));
    const p = position.toLowerCase();
    hydrate(p === 'beforebegin' || p === 'afterend' ? this.parentNode : this);
  };
  const createContextualFragment = Range.prototype.createContextualFragment;
  Range.prototype.createContextualFragment = function (this: Range, value: string) {
    const html = value == null ? '' : String(value);
    if (!needsRewrite(html)) return createContextualFragment.call(this, value);
    const frag = createContextualFragment.call(this, rewrite(html));
    hydrate(frag);
    return frag;
  };
  Element.prototype.setAttribute = function (this: Element, name: string, value: string) {
    const style = (this as HTMLElement).style;
    if (style && typeof name === 'string' && name.toLowerCase() === 'style') {
      style.cssText = String(value);
      return;
    }
    setAttribute.call(this, name, value);
  };
}

install();
