//! Where a dense pass computes: the part of a tile that its kept windows see.
//!
//! A tile of the dense pass is a rectangle, but the windows it keeps (those on tissue) rarely
//! fill it: where tissue is scattered, its corners are glass that no kept window reads, even
//! through its context. The convolutions compute each row of a map only across the columns that
//! a kept window's footprint with its context covers there, and write zeros elsewhere, so the
//! next layer sees a zero border there, as it sees one at the tile's edge.

use std::ops::Range;

use crate::network::pooling::DenseWindows;

/// The windows of a dense pass whose logits are kept (row-major over its grid), and the context
/// in px each needs around its footprint: what the pass computes is made from them
/// ([`ActiveArea::around`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptWindows {
    pub kept: Vec<bool>,
    pub context: usize,
}

/// Per row of square cells (the side of a [`DenseWindows::block`] at the input's scale), the
/// columns of cells some kept window's footprint with its context covers; cells scale with
/// the map, so one area serves every layer of the pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveArea {
    /// Cells across the map.
    cols: usize,
    /// One range of cell columns per row of cells (empty where nothing is computed).
    rows: Vec<Range<usize>>,
}

impl ActiveArea {
    /// The footprints of `grid`'s windows where `kept` (row-major over the grid), each with
    /// `context` px around it, at the input's scale.
    ///
    /// # Panics
    /// If `kept` does not have one value per window.
    pub fn around(grid: DenseWindows, kept: &[bool], context: usize) -> ActiveArea {
        assert_eq!(kept.len(), grid.rows * grid.cols, "one value per window");
        let cell = grid.block();
        let cells = |windows: usize| ((windows - 1) * grid.stride + grid.size) / cell;
        let (cols, rows) = (cells(grid.cols), cells(grid.rows));
        // Cells `[first, end)` that window `index`'s footprint with its context covers.
        let reach = |index: usize, limit: usize| {
            let start = (index * grid.stride).saturating_sub(context) / cell;
            let end = (index * grid.stride + grid.size + context).div_ceil(cell);
            start..end.min(limit)
        };
        let mut spans: Vec<Option<Range<usize>>> = vec![None; rows];
        for (index, _) in kept.iter().enumerate().filter(|(_, k)| **k) {
            let (row, col) = (index / grid.cols, index % grid.cols);
            let across = reach(col, cols);
            for span in &mut spans[reach(row, rows)] {
                *span = Some(match span.take() {
                    Some(s) => s.start.min(across.start)..s.end.max(across.end),
                    None => across.clone(),
                });
            }
        }
        let rows = spans.into_iter().map(|s| s.unwrap_or(0..0)).collect();
        ActiveArea { cols, rows }
    }

    /// The columns of a `[height, width]` map that its rows `rows` compute: the union of their
    /// cells' spans, in the map's pixels. The whole row where the map is not made of whole
    /// cells (a map this area was not made for).
    pub fn columns(&self, [height, width]: [usize; 2], rows: Range<usize>) -> Range<usize> {
        let whole = |cells: usize, side: usize| cells > 0 && side.is_multiple_of(cells);
        if !whole(self.rows.len(), height) || !whole(self.cols, width) || rows.is_empty() {
            return 0..width;
        }
        let (down, across) = (height / self.rows.len(), width / self.cols);
        let last = ((rows.end - 1) / down).min(self.rows.len() - 1);
        let cells = &self.rows[(rows.start / down).min(last)..=last];
        let (start, end) = cells
            .iter()
            .filter(|span| !span.is_empty())
            .fold((usize::MAX, 0), |(s, e), span| {
                (s.min(span.start), e.max(span.end))
            });
        if start >= end {
            0..0
        } else {
            start * across..end * across
        }
    }

    /// One value per pixel of a `[height, width]` map, row-major: 1 where it is computed, 0
    /// elsewhere (for backends that compute the whole map and then mask it).
    pub fn mask(&self, [height, width]: [usize; 2]) -> Vec<f32> {
        let mut mask = vec![0.0; height * width];
        for (y, row) in mask.chunks_exact_mut(width.max(1)).enumerate() {
            row[self.columns([height, width], y..y + 1)].fill(1.0);
        }
        mask
    }

    /// The fraction of the map's cells computed.
    pub fn fraction(&self) -> f64 {
        let active: usize = self.rows.iter().map(|span| span.len()).sum();
        active as f64 / (self.rows.len() * self.cols).max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 96-px windows every 32 px over a 320 x 256 px input: 8 x 6 windows, 10 x 8 cells.
    const GRID: DenseWindows = DenseWindows {
        size: 96,
        stride: 32,
        rows: 6,
        cols: 8,
    };

    #[test]
    fn one_window_with_context_covers_its_square() {
        let mut scored = vec![false; 48];
        scored[2 * 8 + 3] = true; // row 2, col 3: pixels 96..192 x 64..160
        let area = ActiveArea::around(GRID, &scored, 32);
        assert_eq!((area.cols, area.rows.len()), (10, 8));
        // Cells 1..6 down (64 - 32 .. 160 + 32 px), 2..7 across (96 - 32 .. 192 + 32 px).
        for (row, span) in area.rows.iter().enumerate() {
            let expected = if (1..6).contains(&row) { 2..7 } else { 0..0 };
            assert_eq!(*span, expected, "row {row}");
        }
        // The same at half the scale, a band of rows straddling two cells, and an empty band.
        assert_eq!(area.columns([128, 160], 14..18), 32..112);
        assert_eq!(area.columns([256, 320], 0..32), 0..0);
        assert!((area.fraction() - 25.0 / 80.0).abs() < 1e-12);
    }

    #[test]
    fn context_is_clipped_at_the_edges_and_spans_are_hulls() {
        let mut scored = vec![false; 48];
        scored[0] = true; // top-left
        scored[7] = true; // top-right
        let area = ActiveArea::around(GRID, &scored, 64);
        assert_eq!(area.rows[0], 0..10);
        assert_eq!(area.rows[4], 0..10);
        assert_eq!(area.rows[5], 0..0);
        // A map of another shape computes everything.
        assert_eq!(area.columns([100, 100], 0..4), 0..100);
    }
}
