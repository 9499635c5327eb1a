// Type declarations for Vite-handled imports (CSS, assets).
/// <reference types="vite/client" />
