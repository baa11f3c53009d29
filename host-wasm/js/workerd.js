// Cloudflare Workers / workerd entry: the runtime (and wrangler's bundler) imports a .wasm file
// as a compiled WebAssembly.Module; instantiate it synchronously at module load.
import wasmModule from './mxfed_wasm_bg.wasm';
import { initSync } from './mxfed_wasm.js';

initSync({ module: wasmModule });

export * from './api.js';
