// Scoring a prepared slide tile by tile: on the inference worker alone (WebGPU, or one core),
// or spread over a pool of CPU workers. The inference worker holds the file: it cuts each
// tile's crop and keeps the results, the pool runs the network. Cancelling is asking
// `current()`: once it answers false, no new tile starts.

// Scores every tile of `plan` and calls `progress({windows, pixels, probabilities})` after each.
// `call(type, payload, transfer)` talks to the inference worker, `pool` is the list of extra
// workers (empty for none). Resolves with `{workers, seconds}`: how many workers scored, and
// with a pool the seconds its workers spent, summed over them, waiting for crops (`crop`),
// scoring (`score`) and handing results back (`accept`).
export async function scoreTiles({ call, pool, plan, current, progress }) {
  let next = 0;
  if (pool.length === 0) {
    for (; next < plan.tiles && current(); next++) {
      const scored = await call('slideScore', { index: next });
      if (current()) progress(scored);
    }
    return { workers: 1, seconds: null };
  }
  const seconds = { crop: 0, score: 0, accept: 0 };
  const timed = async (part, promise) => {
    const start = performance.now();
    const value = await promise;
    seconds[part] += (performance.now() - start) / 1000;
    return value;
  };
  // The next tile and its crop, asked for at once: a worker's next crop is cut while it scores.
  const claim = () => {
    if (!current() || next >= plan.tiles) return null;
    const index = next++;
    const crop = call('slideCrop', { index });
    crop.catch(() => {}); // awaited (and reported) when its turn comes, unless cancelled first
    return { index, crop };
  };
  const drain = async (scorer) => {
    for (let tile = claim(); tile; ) {
      const { rgb, width, height, kept, context } = await timed('crop', tile.crop);
      const following = claim();
      const request = { rgb, width, height, kept, context, stride: plan.stride, tta: plan.tta };
      const transfer = [rgb.buffer, kept.buffer];
      const { logits } = await timed('score', scorer.call('windowLogits', request, transfer));
      if (!current()) return;
      const { index } = tile;
      progress(await timed('accept', call('slideAccept', { index, logits }, [logits.buffer])));
      tile = following;
    }
  };
  await Promise.all(pool.map(drain));
  return { workers: pool.length, seconds };
}
