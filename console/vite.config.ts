import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The security console: built into dist/console, served by the gateway at /console. No inline
 * script or style in the output (the console's Content-Security-Policy forbids both).
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/console/',
  publicDir: false,
  logLevel: 'warn',
  build: {
    outDir: fileURLToPath(new URL('../dist/console', import.meta.url)),
    emptyOutDir: true,
    // Never inline assets as data: URLs into CSS or JS; everything is a file of this origin.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: 'es2022',
    sourcemap: false,
  },
});
