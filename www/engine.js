// The engine: the inference worker (worker.js, through worker-client.js) with the weights and
// test-time augmentation the user chose, restarted on the CPU when its wasm instance crashes
// (for example a lost GPU device), and the pool of extra CPU workers that score slide tiles.

import { WorkerClient } from './worker-client.js';

// An instance grows to about 197 MB scoring a full tile of the page's dense pass (the bench
// page's figure); a quarter of a gigabyte each leaves room for the page itself.
const SCORER_MEMORY_MB = 256;

export class Engine {
  // `onStatus(info, note)` reports the engine's state; `showError(message)` reports failures.
  constructor({ onStatus, showError }) {
    this.client = new WorkerClient();
    this.onStatus = onStatus;
    this.showError = showError;
    this.ready = null; // resolves with the start's info once the worker has started
    this.userWeights = null; // {bytes, name}: re-applied when a worker restarts
    this.tta = false; // test-time augmentation of scores, re-applied likewise
    this.pool = null; // a promise of the scorer workers, started when first needed
  }

  // Starts the worker: hands the crate's facts to `useFacts` as soon as the wasm module is
  // loaded, then loads the model on `backend` ('auto', 'webgpu' or 'cpu').
  boot(backend, useFacts) {
    this.ready = this.client.open()
      .then((facts) => {
        useFacts(facts);
        return this.startWorker(this.client, backend);
      })
      .then((info) => {
        this.onStatus(info);
        return info;
      });
    return this.ready;
  }

  async startWorker(client, backend) {
    const info = await client.start(backend);
    if (this.userWeights) info.weights = (await client.call('weights', this.userWeights)).weights;
    if (this.tta) await client.call('tta', { on: true });
    return info;
  }

  get info() {
    return this.client.info;
  }

  // Handles to kept results are only valid in the worker that made them.
  get generation() {
    return this.client.generation;
  }

  // Runs `type` on the worker; if the wasm instance crashed, continues on CPU with a fresh
  // worker and retries once.
  async call(type, payload, transfer = []) {
    await this.ready;
    try {
      return await this.client.call(type, payload, transfer);
    } catch (e) {
      if (!e.fatal) throw e;
      const was = this.info && this.info.backend;
      await this.client.open();
      this.ready = this.startWorker(this.client, 'cpu').then((info) => {
        info.reason = `${was === 'webgpu' ? 'WebGPU' : 'the engine'} failed (${e.message}); continuing on CPU`;
        this.onStatus(info);
        return info;
      });
      await this.ready;
      return this.client.call(type, payload, transfer);
    }
  }

  // Calls `type` without waiting for the engine or restarting it (re-fusing a kept result).
  callNow(type, payload) {
    return this.client.call(type, payload);
  }

  // New weights (bytes and name), or the default ones with `null`: the pool is dropped, its
  // instances would score with the old ones.
  async setWeights(weights) {
    await this.ready;
    const reply = weights
      ? await this.client.call('weights', weights)
      : await this.client.call('resetWeights');
    this.userWeights = weights;
    this.info.weights = reply.weights;
    await this.dropScorers();
    this.onStatus(this.info);
  }

  async setTta(on) {
    this.tta = on;
    await this.ready;
    await this.client.call('tta', { on });
    await this.dropScorers();
  }

  // Extra workers that score slide tiles in parallel on the wasm CPU path, one wasm instance
  // each: as many as the cores (`?workers=N` overrides), fewer where the device reports little
  // memory. None on WebGPU.
  async scorers() {
    await this.ready;
    if (this.info.backend !== 'cpu') return [];
    const count = scorerCount();
    if (count < 2) return [];
    this.pool ??= Promise.all(Array.from({ length: count }, async () => {
      const client = new WorkerClient();
      await client.open();
      await this.startWorker(client, 'cpu');
      return client;
    })).catch((e) => {
      this.pool = null;
      this.showError(`the CPU worker pool could not start (${e.message}); scoring on one worker`);
      return [];
    });
    return this.pool;
  }

  async dropScorers() {
    const pool = this.pool ? await this.pool : [];
    this.pool = null;
    for (const client of pool) client.stop();
  }
}

function scorerCount() {
  const forced = Number(new URLSearchParams(location.search).get('workers'));
  if (Number.isInteger(forced) && forced >= 1) return forced;
  const cores = navigator.hardwareConcurrency || 1;
  const memoryMb = (navigator.deviceMemory || 4) * 1024;
  return Math.max(1, Math.min(cores, Math.floor(memoryMb / SCORER_MEMORY_MB)));
}
