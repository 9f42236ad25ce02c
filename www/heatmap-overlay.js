// A heatmap and tissue overlay for OpenSeadragon, written the way its plugins are: installed
// once on the viewer's prototype, then `viewer.celnetHeatmap({ legend })` gives the viewer's
// overlay. Every coordinate it takes is the image's own (full-resolution) pixels, as the crate's
// plan gives them; it holds no fact of the model.

class HeatmapOverlay {
  constructor(viewer, { legend }) {
    this.viewer = viewer;
    this.legend = legend; // 256 RGBA entries of the colour map
    this.heat = null;
    this.tissue = null;
    this.opacity = 1;
    this.showTissue = true;
  }

  // Draws `element` over the image rectangle `(x, y, width, height)`.
  place(element, x, y, width, height) {
    const rect = this.viewer.viewport.imageToViewportRectangle(x, y, width, height);
    this.viewer.addOverlay({ element, location: rect });
  }

  // Removes every overlay of the viewer (the heatmap, the tissue, markers and boxes).
  clear() {
    this.viewer.clearOverlays();
    this.heat = null;
    this.tissue = null;
  }

  // The tissue mask: one byte per cell of `plan.tissue`, background shaded blue-grey.
  setTissue(cells, { cols, rows, cell }) {
    const canvas = layerCanvas(cols, rows);
    const image = new ImageData(cols, rows);
    for (let i = 0; i < cells.length; i++) {
      if (!cells[i]) image.data.set([40, 60, 90, 110], 4 * i);
    }
    canvas.getContext('2d').putImageData(image, 0, 0);
    this.tissue = canvas;
    this.place(canvas, 0, 0, cols * cell, rows * cell);
    this.style();
  }

  // An empty heatmap over the plan's grid: cell (col, row) is window (col, row)'s square.
  setGrid(plan) {
    const [cols, rows] = plan.grid;
    const { x, y, side } = plan.cells;
    const canvas = layerCanvas(cols, rows);
    this.heat = { canvas, cols, rows, cells: plan.cells, probabilities: null, image: new ImageData(cols, rows) };
    this.place(canvas, x, y, cols * side, rows * side);
    this.style();
  }

  // Paints window probabilities (row-major, NaN where not scored) in the colour map.
  paint(probabilities) {
    const heat = this.heat;
    if (!heat) return;
    heat.probabilities = probabilities;
    const data = heat.image.data;
    for (let i = 0; i < probabilities.length; i++) {
      const p = probabilities[i];
      if (Number.isNaN(p)) {
        data[4 * i + 3] = 0;
        continue;
      }
      const c = 4 * Math.min(255, Math.max(0, Math.round(p * 255)));
      data.set(this.legend.subarray(c, c + 3), 4 * i);
      data[4 * i + 3] = 255;
    }
    heat.canvas.getContext('2d').putImageData(heat.image, 0, 0);
  }

  // The probability of the window whose cell holds image point (x, y): a number, NaN where the
  // window was not scored, undefined outside the grid or before any score.
  probabilityAt(x, y) {
    const heat = this.heat;
    if (!heat || !heat.probabilities) return undefined;
    const { cells, cols, rows } = heat;
    const cell = (v, origin, n) => Math.min(n - 1, Math.max(0, Math.floor((v - origin) / cells.side)));
    return heat.probabilities[cell(y, cells.y, rows) * cols + cell(x, cells.x, cols)];
  }

  setStyle({ opacity, showTissue }) {
    this.opacity = opacity;
    this.showTissue = showTissue;
    this.style();
  }

  style() {
    if (this.heat) this.heat.canvas.style.opacity = String(this.opacity);
    if (this.tissue) this.tissue.hidden = !this.showTissue;
  }
}

function layerCanvas(width, height) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  canvas.className = 'slide-layer';
  return canvas;
}

// Adds `celnetHeatmap(options)` to OpenSeadragon's viewers: the viewer's one overlay.
export function installHeatmapOverlay(OpenSeadragon) {
  if (OpenSeadragon.Viewer.prototype.celnetHeatmap) return;
  OpenSeadragon.Viewer.prototype.celnetHeatmap = function celnetHeatmap(options) {
    this.celnetHeatmapOverlay ??= new HeatmapOverlay(this, options);
    return this.celnetHeatmapOverlay;
  };
}
