import './csp-shim';
import './workers';
// GraphiQL's CSS without graphiql/style.css's second copy of Monaco's CSS (Monaco's own chunk
// brings it) and without the Roboto font (~260 kB; the UI uses the system font). Fira Code is
// kept: GraphiQL configures Monaco with it, and without it the editors fall back to a
// proportional font.
import '@graphiql/react/font/fira-code.css';
import '@graphiql/react/style.css';
import '@graphiql/plugin-doc-explorer/style.css';
import '@graphiql/plugin-history/style.css';
import 'graphiql/graphiql.css';
import './styles.css';
import { StrictMode, useMemo } from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import { loadConfig, type PlaygroundConfig } from './config';
import { EXAMPLES } from './examples';
import { createFetcher } from './fetcher';
import { namespacedStorage } from './storage';
import { HeaderSync } from './HeaderSync';
import { totpPlugin } from './TotpPlugin';

function Header({ config }: { config: PlaygroundConfig }) {
  return (
    <header className="tf-header">
      <h1 className="tf-title">Twofold playground</h1>
      <nav className="tf-nav">
        <a href="/docs">REST API docs</a>
      </nav>
      {config.authorization ? (
        <p className="tf-note tf-note-dev" data-testid="auth-note">
          Dev mode: the headers carry a demo token for this server run.
        </p>
      ) : (
        <p className="tf-note" data-testid="auth-hint">
          {config.hint || 'Put "Authorization": "Bearer <token>" into the headers.'}
        </p>
      )}
    </header>
  );
}

const PLUGINS = [totpPlugin];

function App({ config }: { config: PlaygroundConfig }) {
  const headers = config.authorization ? JSON.stringify({ Authorization: config.authorization }, null, 2) : '';
  const fetcher = useMemo(() => createFetcher(config.endpoint), [config.endpoint]);
  const storage = useMemo(() => namespacedStorage(), []);
  const tabs = EXAMPLES.map((t) => ({ query: t.query, variables: t.variables, headers }));
  return (
    <div className="tf-app">
      <Header config={config} />
      <main className="tf-graphiql">
        <GraphiQL
          fetcher={fetcher}
          defaultTabs={tabs}
          defaultHeaders={headers}
          initialHeaders={headers}
          defaultEditorToolsVisibility="headers"
          shouldPersistHeaders={false}
          showPersistHeadersSettings={false}
          storage={storage}
          plugins={PLUGINS}
          visiblePlugin={totpPlugin}
        >
          <GraphiQL.Logo>
            {null}
          </GraphiQL.Logo>
          <HeaderSync initial={headers} />
        </GraphiQL>
      </main>
    </div>
  );
}

void loadConfig().then((config) => {
  createRoot(document.getElementById('root')!).render(
    <StrictMode>
      <App config={config} />
    </StrictMode>,
  );
});
