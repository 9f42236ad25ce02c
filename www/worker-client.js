// The page's handle on the inference worker (worker.js): request/reply over postMessage, and a
// clean restart (a fresh worker) when the wasm instance crashes.

export class WorkerError extends Error {
  constructor(message, fatal) {
    super(message);
    this.fatal = fatal;
  }
}

export class WorkerClient {
  constructor() {
    this.worker = null;
    this.pending = new Map();
    this.nextId = 1;
    this.info = null;
    // Counts worker starts: handles to kept results are only valid in the worker that made them.
    this.generation = 0;
  }

  // Starts a fresh worker. Resolves with what the page shows that the crate decides (default
  // parameters, map kinds, legend); `start(backend)` then loads the model.
  async open() {
    this.stop();
    this.generation += 1;
    const url = new URL('./worker.js', import.meta.url);
    // `?simd=simd128` on the page picks the build without relaxed SIMD (worker.js).
    const simd = new URLSearchParams(location.search).get('simd');
    if (simd) url.searchParams.set('simd', simd);
    this.worker = new Worker(url, { type: 'module' });
    this.worker.onmessage = ({ data }) => {
      const request = this.pending.get(data.id);
      if (!request) return;
      this.pending.delete(data.id);
      if (data.ok) request.resolve(data.result);
      else request.reject(new WorkerError(data.message, data.fatal));
    };
    this.worker.onerror = (event) => {
      event.preventDefault();
      this.failAll(`the inference worker failed: ${event.message || 'unknown error'}`);
    };
    return this.call('facts');
  }

  // Loads the model on `backend` ('auto', 'webgpu' or 'cpu'); resolves with
  // {backend, reason, adapter, weights, simd, warmup_ms}.
  async start(backend) {
    this.info = await this.call('start', { backend });
    return this.info;
  }

  stop() {
    if (this.worker) this.worker.terminate();
    this.worker = null;
    this.failAll('the engine was restarted');
  }

  failAll(message) {
    for (const request of this.pending.values()) request.reject(new WorkerError(message, true));
    this.pending.clear();
  }

  call(type, payload = {}, transfer = []) {
    if (!this.worker) return Promise.reject(new WorkerError('the engine is not running', true));
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, type, ...payload }, transfer);
    });
  }
}
