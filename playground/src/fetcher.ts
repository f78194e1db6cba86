import type { Fetcher, FetcherParams, FetcherOpts } from '@graphiql/toolkit';
import { Kind, parse } from 'graphql';
import { publishResult } from './results';

const INTROSPECTION = /^\s*(query\s+IntrospectionQuery\b|\{\s*__schema\b)/;

/**
 * Plain same-origin POST fetcher (GraphQL over HTTP). Headers come from GraphiQL's headers editor.
 * Every non-introspection result is published to the TOTP helper plugin.
 */
/**
 * GraphiQL updates the selected operation name a moment after a tab switch; a run clicked in that
 * moment would send the previous tab's name ("Unknown operation named …"). When the name is not
 * an operation of the document and the document has exactly one operation, use that one.
 */
export function fixOperationName(params: FetcherParams): FetcherParams {
  let names: (string | null)[];
  try {
    names = parse(params.query)
      .definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION)
      .map((d) => (d.kind === Kind.OPERATION_DEFINITION ? (d.name?.value ?? null) : null));
  } catch {
    return params;
  }
  if (params.operationName && names.includes(params.operationName)) return params;
  if (names.length === 1) return { ...params, operationName: names[0] };
  return params;
}

export function createFetcher(endpoint: string): Fetcher {
  return async (rawParams: FetcherParams, opts?: FetcherOpts) => {
    const params = fixOperationName(rawParams);
    const response = await fetch(endpoint, {
      method: 'POST',
      credentials: 'same-origin',
      headers: {
        Accept: 'application/graphql-response+json, application/json;q=0.9',
        'Content-Type': 'application/json',
        ...(opts?.headers ?? {}),
      },
      body: JSON.stringify(params),
    });
    const text = await response.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = { errors: [{ message: `HTTP ${response.status} ${response.statusText}: ${text.slice(0, 500)}` }] };
    }
    if (params.operationName !== 'IntrospectionQuery' && !INTROSPECTION.test(params.query ?? '')) {
      publishResult(params.operationName ?? null, json);
    }
    return json as Record<string, unknown>;
  };
}
