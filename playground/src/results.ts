/**
 * A tiny external store: the fetcher publishes every GraphQL result it receives; the TOTP helper
 * plugin subscribes (useSyncExternalStore). Independent of GraphiQL's internal stores, so it keeps
 * working across GraphiQL versions, and it keeps the last QR/secret while the panel is closed.
 */
import { viewAssertion, type AssertionView } from './assertion';
import { findTotpMaterial, type FoundAssertion, type TotpMaterial } from './extract';

export interface PublishedResult {
  seq: number;
  operationName: string | null;
  result: unknown;
}

export interface HelperState {
  last: PublishedResult | null;
  /** Last enrolment material seen (kept until a newer one arrives). */
  material: TotpMaterial | null;
  /** Last recovery codes seen. */
  recoveryCodes: string[] | null;
  /** Last verification assertion seen, decoded, with the `seq` of the result it came from. */
  assertion: (FoundAssertion & AssertionView & { seq: number }) | null;
}

type Listener = () => void;

let state: HelperState = { last: null, material: null, recoveryCodes: null, assertion: null };
let seq = 0;
const listeners = new Set<Listener>();

export function publishResult(operationName: string | null, result: unknown): void {
  const found = findTotpMaterial(result);
  const last = { seq: ++seq, operationName, result };
  state = {
    last,
    material: found.totp ?? state.material,
    recoveryCodes: found.recoveryCodes ?? state.recoveryCodes,
    assertion: found.assertion ? { ...found.assertion, ...viewAssertion(found.assertion.token), seq: last.seq } : state.assertion,
  };
  listeners.forEach((l) => l());
}

export function subscribeResults(listener: Listener): () => void {
  listeners.add(listener);
  return () => {
    listeners.delete(listener);
  };
}

export function helperState(): HelperState {
  return state;
}
