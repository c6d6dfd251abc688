//! Column-aligned tables that fit a width: optional columns are dropped first, then the columns
//! that may be cut are truncated with `…` (rightmost first), so a narrow terminal still shows
//! every row on one line.

use super::style::{Paint, Style, columns, truncate};

/// What a column may give up when the table is too wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Always shown in full.
    Keep,
    /// Cut down to no fewer than this many columns.
    Cut(usize),
    /// Left out entirely when the table does not fit.
    Drop,
}

/// A piece of a cell in one colour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// The text.
    pub text: String,
    /// Its colour.
    pub paint: Paint,
}

/// One cell: spans of text, each in its own colour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cell(pub Vec<Span>);

impl Cell {
    /// A cell of plain text.
    pub fn plain(text: impl Into<String>) -> Self {
        Self::painted(text, Paint::None)
    }

    /// A cell of one colour.
    pub fn painted(text: impl Into<String>, paint: Paint) -> Self {
        Self(vec![Span {
            text: text.into(),
            paint,
        }])
    }

    /// Appends a span.
    pub fn push(mut self, text: impl Into<String>, paint: Paint) -> Self {
        self.0.push(Span {
            text: text.into(),
            paint,
        });
        self
    }

    fn width(&self) -> usize {
        self.0.iter().map(|s| columns(&s.text)).sum()
    }

    /// The cell cut to `width`, coloured by `style`, and its visible width.
    fn render(&self, width: usize, style: &Style) -> (String, usize) {
        let mut left = width;
        let cut = self.width() > width;
        let mut out = String::new();
        let mut used = 0;
        for span in &self.0 {
            if left == 0 {
                break;
            }
            let n = columns(&span.text);
            let text = if cut && n >= left {
                // The last span that fits is the one cut, and it carries the `…`.
                truncate(&format!("{}…", span.text), left)
            } else {
                span.text.clone()
            };
            let shown = columns(&text).min(left);
            out.push_str(&style.paint(span.paint, &text));
            used += shown;
            left -= shown;
        }
        (out, used)
    }
}

/// A table: headers with their fit rules, and rows of cells.
#[derive(Clone, Debug, Default)]
pub struct Table {
    headers: Vec<(&'static str, Fit)>,
    rows: Vec<Vec<Cell>>,
}

/// Spaces between columns.
const GAP: usize = 2;

impl Table {
    /// A table with these columns.
    pub fn new(headers: &[(&'static str, Fit)]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (one cell per column; missing cells are empty).
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    /// The table as lines, fitted to `style.width` where the fit rules allow.
    pub fn render(&self, style: &Style) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|(h, _)| columns(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(n) {
                widths[i] = widths[i].max(cell.width());
            }
        }
        let mut shown = vec![true; n];
        let total = |widths: &[usize], shown: &[bool]| {
            let visible: Vec<usize> = (0..n).filter(|i| shown[*i]).map(|i| widths[i]).collect();
            visible.iter().sum::<usize>() + GAP * visible.len().saturating_sub(1)
        };
        // Drop optional columns, rightmost first.
        for i in (0..n).rev() {
            if total(&widths, &shown) <= style.width {
                break;
            }
            if self.headers[i].1 == Fit::Drop {
                shown[i] = false;
            }
        }
        // Cut the columns that may be cut, rightmost (least telling) first, down to their minimum.
        for i in (0..n).rev() {
            let over = total(&widths, &shown).saturating_sub(style.width);
            if over == 0 {
                break;
            }
            if let (Fit::Cut(min), true) = (self.headers[i].1, shown[i]) {
                let floor = min.max(columns(self.headers[i].0)).min(widths[i]);
                widths[i] -= over.min(widths[i] - floor);
            }
        }

        let header = self
            .headers
            .iter()
            .map(|(h, _)| Cell::painted(*h, Paint::Bold))
            .collect::<Vec<_>>();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let cells: Vec<(usize, &Cell)> = (0..n)
                .filter(|i| shown[*i])
                .map(|i| (i, row.get(i).unwrap_or(&EMPTY)))
                .collect();
            let mut line = String::new();
            let mut pending = 0;
            for (k, (i, cell)) in cells.iter().enumerate() {
                let (text, used) = cell.render(widths[*i], style);
                if !text.is_empty() {
                    line.push_str(&" ".repeat(pending));
                    line.push_str(&text);
                    pending = 0;
                }
                if k + 1 < cells.len() {
                    pending += widths[*i] - used + GAP;
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

static EMPTY: Cell = Cell(Vec::new());

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut t = Table::new(&[
            ("NAME", Fit::Cut(6)),
            ("KIND", Fit::Drop),
            ("INFO", Fit::Keep),
        ]);
        t.row(vec![
            Cell::plain("a-rather-long-name"),
            Cell::plain("ReplicaSet"),
            Cell::plain("stable"),
        ]);
        t.row(vec![
            Cell::plain("short"),
            Cell::plain("Pod"),
            Cell::plain(""),
        ]);
        t
    }

    #[test]
    fn a_wide_table_aligns_its_columns() {
        let out = table().render(&Style::plain());
        assert_eq!(
            out,
            "NAME                KIND        INFO\n\
             a-rather-long-name  ReplicaSet  stable\n\
             short               Pod\n"
        );
    }

    #[test]
    fn a_narrow_table_drops_then_cuts() {
        let style = Style {
            width: 20,
            color: false,
        };
        let out = table().render(&style);
        assert_eq!(out, "NAME          INFO\na-rather-lo…  stable\nshort\n");
        assert!(out.lines().all(|l| columns(l) <= 20), "{out}");
    }

    #[test]
    fn colour_does_not_count_toward_the_width() {
        let mut t = Table::new(&[("A", Fit::Keep), ("B", Fit::Keep)]);
        t.row(vec![Cell::painted("ok", Paint::Green), Cell::plain("x")]);
        let style = Style {
            width: 80,
            color: true,
        };
        assert_eq!(
            t.render(&style),
            "\x1b[1mA\x1b[0m   \x1b[1mB\x1b[0m\n\x1b[32mok\x1b[0m  x\n"
        );
    }
}
