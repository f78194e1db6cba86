import { useState } from 'react';

/** Copies `text` to the clipboard; says "Copied" for a moment. */
export function CopyButton({ text, testId, label = 'Copy' }: { text: string; testId: string; label?: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      className="totp-btn"
      data-testid={testId}
      onClick={() => {
        navigator.clipboard?.writeText(text).then(
          () => {
            setDone(true);
            window.setTimeout(() => setDone(false), 1200);
          },
          () => undefined,
        );
      }}
    >
      {done ? 'Copied' : label}
    </button>
  );
}
