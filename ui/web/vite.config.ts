// Vite build config for the Loupe web UI. The Rust build runs
// `npm run build -- --outDir <dir> --emptyOutDir`; CLI flags override build.outDir below.
import { defineConfig } from 'vite';

// Dev server only: where `npm run dev` proxies /api to (a locally running Loupe server).
const devApi = (globalThis as any).process?.env?.LOUPE_API ?? 'http://127.0.0.1:8080';

export default defineConfig({
  base: '/',
  oxc: {
    jsx: { runtime: 'automatic', importSource: 'preact' },
  },
  build: {
    outDir: '../dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 200,
  },
  server: {
    proxy: { '/api': devApi },
  },
});
