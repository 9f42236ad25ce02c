// Scoring a prepared slide tile by tile: on the inference worker alone (WebGPU, or one core),
// or spread over a pool of CPU workers. The inference worker holds the file: it cuts each
// tile's crop and keeps the results, the pool runs the network. Cancelling is asking
// `current()`: once it answers false, no new tile starts.

// Scores every tile of `plan` and calls `progress({windows, probabilities})` after each.
// `call(type, payload, transfer)` talks to the inference worker, `pool` is the list of extra
// workers (empty for none). Resolves with the number of workers that scored.
export async function scoreTiles({ call, pool, plan, current, progress }) {
  let next = 0;
  if (pool.length === 0) {
    for (; next < plan.tiles && current(); next++) {
      const scored = await call('slideScore', { index: next });
      if (current()) progress(scored);
    }
    return 1;
  }
  const drain = async (scorer) => {
    while (current() && next < plan.tiles) {
      const index = next++;
      const { rgb, width, height } = await call('slideCrop', { index });
      const request = { rgb, width, height, stride: plan.stride, tta: plan.tta };
      const { logits } = await scorer.call('windowLogits', request, [rgb.buffer]);
      if (!current()) return;
      progress(await call('slideAccept', { index, logits }, [logits.buffer]));
    }
  };
  await Promise.all(pool.map(drain));
  return pool.length;
}
