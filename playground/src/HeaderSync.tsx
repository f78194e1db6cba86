import { useEffect, useRef } from 'react';
import { useGraphiQL } from '@graphiql/react';

/**
 * GraphiQL keeps headers per tab. So that a token pasted once works in every example tab, a tab
 * whose headers are empty (when it becomes active) gets the last non-empty headers.
 */
export function HeaderSync({ initial }: { initial: string }) {
  const headerEditor = useGraphiQL((s) => s.headerEditor);
  const activeTabIndex = useGraphiQL((s) => s.activeTabIndex);
  const last = useRef(initial);
  useEffect(() => {
    if (!headerEditor) return;
    const sub = headerEditor.onDidChangeModelContent(() => {
      const v = headerEditor.getValue();
      if (v.trim()) last.current = v;
    });
    return () => sub.dispose();
  }, [headerEditor]);
  useEffect(() => {
    if (headerEditor && !headerEditor.getValue().trim() && last.current.trim()) {
      headerEditor.setValue(last.current);
    }
  }, [headerEditor, activeTabIndex]);
  return null;
}
