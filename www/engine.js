// The page's handle on the inference worker: request/reply over postMessage, and a clean
// restart (a fresh worker) when the wasm instance crashes.

export class EngineError extends Error {
  constructor(message, fatal) {
    super(message);
    this.fatal = fatal;
  }
}

export class Engine {
  constructor() {
    this.worker = null;
    this.pending = new Map();
    this.nextId = 1;
    this.info = null;
  }

  // Starts a fresh worker on `backend` ('auto', 'webgpu' or 'cpu'); resolves with
  // {backend, reason, adapter, weights, warmup_ms}.
  async start(backend) {
    this.stop();
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.worker.onmessage = ({ data }) => {
      const request = this.pending.get(data.id);
      if (!request) return;
      this.pending.delete(data.id);
      if (data.ok) request.resolve(data.result);
      else request.reject(new EngineError(data.message, data.fatal));
    };
    this.worker.onerror = (event) => {
      event.preventDefault();
      this.failAll(`the inference worker failed: ${event.message || 'unknown error'}`);
    };
    this.info = await this.call('start', { backend });
    return this.info;
  }

  stop() {
    if (this.worker) this.worker.terminate();
    this.worker = null;
    this.failAll('the engine was restarted');
  }

  failAll(message) {
    for (const request of this.pending.values()) request.reject(new EngineError(message, true));
    this.pending.clear();
  }

  call(type, payload = {}, transfer = []) {
    if (!this.worker) return Promise.reject(new EngineError('the engine is not running', true));
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, type, ...payload }, transfer);
    });
  }
}
