import { resolve } from 'node:path';
import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';
import type { Plugin } from 'vite';

const here = import.meta.dirname;

/** Swap @graphiql/react's prettier-based JSON formatter for a jsonc-parser one (see the shim). */
function graphiqlJsoncShim(): Plugin {
  const shim = resolve(here, 'src/shims/graphiql-jsonc.ts');
  return {
    name: 'twofold:graphiql-jsonc-shim',
    enforce: 'pre',
    resolveId(source, importer) {
      if (importer && /[\\/]@graphiql[\\/]react[\\/]dist[\\/]/.test(importer) && /(^|\/)jsonc\.js$/.test(source)) {
        return shim;
      }
      return null;
    },
  };
}

// Served by the Rust binary: every file of dist/ at /playground/assets/<relative path>;
// /graphiql and /playground return dist/index.html, /docs returns dist/docs.html.
export default defineConfig({
  base: '/playground/assets/',
  plugins: [graphiqlJsoncShim(), react()],
  resolve: {
    // @graphiql/react imports both names of prettier's GraphQL plugin: bundle it once.
    alias: [{ find: /^prettier\/parser-graphql$/, replacement: 'prettier/plugins/graphql' }],
  },
  build: {
    outDir: 'dist',
    assetsDir: '',
    emptyOutDir: true,
    sourcemap: false,
    minify: true,
    cssCodeSplit: true,
    // Keep fonts/images as files, never inline `data:` stylesheets or scripts.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 4096,
    reportCompressedSize: false,
    rollupOptions: {
      onwarn(warning, warn) {
        // @graphiql/react's "use no memo" directives (React Compiler hints) are meaningless here.
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        warn(warning);
      },
      input: {
        index: resolve(here, 'index.html'),
        docs: resolve(here, 'docs.html'),
      },
    },
  },
  worker: {
    format: 'es',
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
