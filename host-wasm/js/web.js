// Browsers and other ES module hosts: fetch and instantiate the module next to this one.
import init from './mxfed_wasm.js';

await init({ module_or_path: new URL('./mxfed_wasm_bg.wasm', import.meta.url) });

export * from './api.js';
