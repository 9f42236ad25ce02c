//! Where the dense pass's tiles go: blocks of grid windows that hold every tissue window once,
//! cut so that the pixels the network computes (each block's crop with its context) are few.
//!
//! A tile's crop is the bounding box of its tissue windows plus context on every side, so
//! where tissue is scattered a square block computes mostly glass and holes. A block is cut in
//! two, across or down, wherever the two halves' crops together take fewer pixels than the
//! whole's, and each half is cut again the same way (a greedy search over single cuts, which
//! computed 2% more pixels than the best sequence of cuts on a region of scattered tissue).

use crate::slide::grid::WindowGrid;

/// Fewest windows on either side of a cut: thinner halves saved about 1% more pixels on a
/// region of scattered tissue, for a fifth more tiles.
const MIN_CUT: usize = 4;

/// A rectangle of grid windows: the first column and row, and how many across and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowBlock {
    pub col: usize,
    pub row: usize,
    pub cols: usize,
    pub rows: usize,
}

impl WindowBlock {
    /// The block's first `at` columns and the rest.
    fn cut_across(self, at: usize) -> (WindowBlock, WindowBlock) {
        let first = WindowBlock { cols: at, ..self };
        let second = WindowBlock {
            col: self.col + at,
            cols: self.cols - at,
            ..self
        };
        (first, second)
    }

    /// Rows for columns: cutting down is cutting the transposed block across.
    fn transposed(self) -> WindowBlock {
        WindowBlock {
            col: self.row,
            row: self.col,
            cols: self.rows,
            rows: self.cols,
        }
    }

    /// The block grown by up to `context` windows on every side, within `grid`: the windows
    /// whose pixels a tile of this block crops.
    pub fn with_context(&self, grid: WindowGrid, context: usize) -> WindowBlock {
        let (col, row) = (
            self.col.saturating_sub(context),
            self.row.saturating_sub(context),
        );
        WindowBlock {
            col,
            row,
            cols: (self.col + self.cols + context).min(grid.cols) - col,
            rows: (self.row + self.rows + context).min(grid.rows) - row,
        }
    }
}

/// Tissue windows counted by rectangle in constant time (a summed-area table).
struct TissueCounts {
    /// `(cols + 1) x (rows + 1)`: tissue windows above and left of each corner.
    sums: Vec<u32>,
    stride: usize,
}

impl TissueCounts {
    fn new(grid: WindowGrid, in_tissue: &[bool]) -> Self {
        let stride = grid.cols + 1;
        let mut sums = vec![0u32; stride * (grid.rows + 1)];
        for row in 0..grid.rows {
            let mut along = 0;
            for col in 0..grid.cols {
                along += u32::from(in_tissue[grid.index(col, row)]);
                sums[(row + 1) * stride + col + 1] = sums[row * stride + col + 1] + along;
            }
        }
        TissueCounts { sums, stride }
    }

    fn count(&self, b: &WindowBlock) -> usize {
        let at = |col: usize, row: usize| self.sums[row * self.stride + col] as usize;
        let (right, bottom) = (b.col + b.cols, b.row + b.rows);
        at(right, bottom) + at(b.col, b.row) - at(b.col, bottom) - at(right, b.row)
    }

    /// The bounding box of `block`'s tissue windows, or `None` if it has none.
    fn shrink(&self, block: WindowBlock) -> Option<WindowBlock> {
        if self.count(&block) == 0 {
            return None;
        }
        let column = |col| WindowBlock {
            col,
            cols: 1,
            ..block
        };
        let line = |row| WindowBlock {
            row,
            rows: 1,
            ..block
        };
        let ends = |n: usize, empty: &dyn Fn(usize) -> bool| {
            let first = (0..n).find(|&i| !empty(i)).expect("the block has tissue");
            let last = (0..n)
                .rev()
                .find(|&i| !empty(i))
                .expect("the block has tissue");
            (first, last)
        };
        let (left, right) = ends(block.cols, &|i| self.count(&column(block.col + i)) == 0);
        let (top, bottom) = ends(block.rows, &|i| self.count(&line(block.row + i)) == 0);
        Some(WindowBlock {
            col: block.col + left,
            row: block.row + top,
            cols: right + 1 - left,
            rows: bottom + 1 - top,
        })
    }
}

/// The blocks of the dense pass over `grid`'s tissue windows (`in_tissue`, row-major): the
/// grid cut into squares of at most `per_tile` windows, each shrunk to its tissue and cut
/// further where that computes fewer pixels, with `context` windows of context on every side;
/// each with the number of tissue windows it holds.
///
/// Where the squares fall decides how much glass and context they take in, so several layouts
/// are planned (squares of 6/8 to 8/8 of the largest side, their grid shifted by quarters of a
/// side across and down) and the one computing the fewest pixels is kept, the fewest tiles
/// breaking ties. On a 4,000 px region with a third of it tissue this cut the pixels of
/// 1,024 px tiles by 10%; on a slide of solid tissue it changes little.
pub fn tissue_blocks(
    grid: WindowGrid,
    in_tissue: &[bool],
    per_tile: usize,
    context: usize,
) -> Vec<(WindowBlock, usize)> {
    let counts = TissueCounts::new(grid, in_tissue);
    // Model-scale pixels of a block's crop: its windows and their context within the grid.
    let pixels = |b: &WindowBlock| {
        let crop = b.with_context(grid, context);
        (grid.span(crop.cols) * grid.span(crop.rows)) as u64
    };
    let plan = |side: usize, [across, down]: [usize; 2]| {
        let mut blocks = Vec::new();
        for (row, rows) in spans(grid.rows, side, down) {
            for (col, cols) in spans(grid.cols, side, across) {
                let square = WindowBlock {
                    col,
                    row,
                    cols,
                    rows,
                };
                cut(&counts, &pixels, square, &mut blocks);
            }
        }
        blocks
    };
    let cost = |blocks: &Vec<WindowBlock>| (blocks.iter().map(pixels).sum::<u64>(), blocks.len());
    let sides = SIDE_EIGHTHS.map(|eighths| (per_tile * eighths / 8).max(1));
    let layouts = sides.into_iter().flat_map(|side| {
        let shifts = (0..SHIFTS).map(move |q| side * q / SHIFTS);
        shifts
            .clone()
            .flat_map(move |down| shifts.clone().map(move |across| (side, [across, down])))
    });
    let blocks = layouts
        .map(|(side, shift)| plan(side, shift))
        .min_by_key(cost)
        .expect("at least one layout");
    blocks.into_iter().map(|b| (b, counts.count(&b))).collect()
}

/// Square sides planned, in eighths of the largest.
const SIDE_EIGHTHS: [usize; 3] = [8, 7, 6];
/// Shifts of the squares' grid planned across and down, in this fraction of a side.
const SHIFTS: usize = 4;

/// Spans `(start, length)` covering `0..n`: the first `shift` long (where not 0), the others
/// `side` long (the last cut short).
fn spans(n: usize, side: usize, shift: usize) -> impl Iterator<Item = (usize, usize)> {
    let first = if shift == 0 { side } else { shift };
    std::iter::successors(Some((0, first.min(n))), move |&(start, length)| {
        let next = start + length;
        (next < n).then(|| (next, side.min(n - next)))
    })
}

/// Appends `block`, shrunk to its tissue, or its halves cut the same way if they compute
/// fewer pixels.
fn cut(
    counts: &TissueCounts,
    pixels: &dyn Fn(&WindowBlock) -> u64,
    block: WindowBlock,
    out: &mut Vec<WindowBlock>,
) {
    let Some(block) = counts.shrink(block) else {
        return;
    };
    let halves = |across: bool, at: usize| {
        let (first, second) = if across {
            block.cut_across(at)
        } else {
            let (first, second) = block.transposed().cut_across(at);
            (first.transposed(), second.transposed())
        };
        let cost: u64 = [first, second]
            .iter()
            .filter_map(|&half| counts.shrink(half))
            .map(|half| pixels(&half))
            .sum();
        (cost, first, second)
    };
    let cuts = |n: usize| MIN_CUT..(n + 1).saturating_sub(MIN_CUT);
    let best = cuts(block.cols)
        .map(|at| halves(true, at))
        .chain(cuts(block.rows).map(|at| halves(false, at)))
        .min_by_key(|&(cost, _, _)| cost);
    match best {
        Some((cost, first, second)) if cost < pixels(&block) => {
            cut(counts, pixels, first, out);
            cut(counts, pixels, second, out);
        }
        _ => out.push(block),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(cols: usize, rows: usize) -> WindowGrid {
        WindowGrid {
            stride: 32,
            cols,
            rows,
        }
    }

    fn tissue(grid: WindowGrid, windows: &[(usize, usize)]) -> Vec<bool> {
        let mut t = vec![false; grid.cols * grid.rows];
        for &(c, r) in windows {
            t[grid.index(c, r)] = true;
        }
        t
    }

    fn blocks(grid: WindowGrid, in_tissue: &[bool], per_tile: usize) -> Vec<WindowBlock> {
        let blocks = tissue_blocks(grid, in_tissue, per_tile, 2);
        let windows: usize = blocks.iter().map(|&(_, windows)| windows).sum();
        assert_eq!(windows, in_tissue.iter().filter(|&&t| t).count());
        blocks.into_iter().map(|(block, _)| block).collect()
    }

    fn covered(grid: WindowGrid, blocks: &[WindowBlock]) -> Vec<usize> {
        let mut times = vec![0; grid.cols * grid.rows];
        for b in blocks {
            for r in b.row..b.row + b.rows {
                for c in b.col..b.col + b.cols {
                    times[grid.index(c, r)] += 1;
                }
            }
        }
        times
    }

    #[test]
    fn two_distant_patches_of_tissue_get_a_tile_each() {
        let g = grid(30, 30);
        let windows = [(1, 1), (2, 2), (27, 26), (28, 28)];
        let blocks = blocks(g, &tissue(g, &windows), 30);
        assert_eq!(
            blocks,
            vec![
                WindowBlock {
                    col: 1,
                    row: 1,
                    cols: 2,
                    rows: 2
                },
                WindowBlock {
                    col: 27,
                    row: 26,
                    cols: 2,
                    rows: 3
                },
            ]
        );
    }

    #[test]
    fn tissue_across_the_corner_of_four_squares_gets_one_tile() {
        // Squares of 16 from the grid's corner would cut this 8x8 patch into four tiles, each
        // with its own context; a layout shifted by three quarters of a side holds it whole.
        let g = grid(40, 40);
        let patch: Vec<_> = (12..20)
            .flat_map(|r| (12..20).map(move |c| (c, r)))
            .collect();
        assert_eq!(
            blocks(g, &tissue(g, &patch), 16),
            vec![WindowBlock {
                col: 12,
                row: 12,
                cols: 8,
                rows: 8
            }]
        );
    }

    #[test]
    fn spans_cover_the_range_once() {
        let all = |n, side, shift| spans(n, side, shift).collect::<Vec<_>>();
        assert_eq!(all(10, 4, 0), vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(all(10, 4, 3), vec![(0, 3), (3, 4), (7, 3)]);
        assert_eq!(all(3, 4, 2), vec![(0, 2), (2, 1)]);
        assert_eq!(all(2, 4, 0), vec![(0, 2)]);
    }

    #[test]
    fn solid_tissue_keeps_whole_squares() {
        let g = grid(40, 25);
        let blocks = blocks(g, &vec![true; 40 * 25], 16);
        let square = |col, row, cols, rows| WindowBlock {
            col,
            row,
            cols,
            rows,
        };
        assert_eq!(blocks[0], square(0, 0, 16, 16));
        assert_eq!(blocks.len(), 6, "{blocks:?}");
        assert!(covered(g, &blocks).iter().all(|&n| n == 1));
    }

    #[test]
    fn every_tissue_window_is_in_exactly_one_block_and_no_block_is_larger_than_asked() {
        // A pseudo-random scatter of tissue, denser in a band.
        let g = grid(57, 43);
        let mut state = 12345u32;
        let in_tissue: Vec<bool> = (0..g.cols * g.rows)
            .map(|i| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let band = (i / g.cols) % 20 < 6;
                (state >> 16) % 100 < if band { 60 } else { 4 }
            })
            .collect();
        let blocks = blocks(g, &in_tissue, 18);
        let times = covered(g, &blocks);
        for (i, &t) in in_tissue.iter().enumerate() {
            if t {
                assert_eq!(times[i], 1, "window {i}");
            } else {
                assert!(times[i] <= 1, "window {i}");
            }
        }
        assert!(blocks.iter().all(|b| b.cols <= 18 && b.rows <= 18));
        let counts = TissueCounts::new(g, &in_tissue);
        for b in &blocks {
            assert_eq!(
                counts.shrink(*b),
                Some(*b),
                "{b:?} is its tissue's bounding box"
            );
        }
    }
}
