// Node (and Deno) entry: instantiate the module synchronously from the file next to this one.
import { readFileSync } from 'node:fs';
import { initSync } from './mxfed_wasm.js';

initSync({ module: readFileSync(new URL('./mxfed_wasm_bg.wasm', import.meta.url)) });

export * from './api.js';
