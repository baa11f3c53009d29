// A worker that runs the benchmark operations in workerd: GET /?op=NAME&n=N runs NAME N times
// and answers "ok". The caller times requests (workerd's clock does not advance while a
// request computes, as in Cloudflare's production runtime).
import * as m from 'mxfed-wasm';
import { setup } from './bench-ops.js';

const ops = setup(m);

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const f = ops[url.searchParams.get('op')];
    const n = Number(url.searchParams.get('n') ?? 1);
    if (!f) return new Response('unknown op', { status: 404 });
    for (let i = 0; i < n; i++) f();
    return new Response('ok');
  },
};
