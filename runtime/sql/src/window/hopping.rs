//! `HOPPINGWINDOW(unit, size, hop)`: windows of `size` ending every `hop`, overlapping when
//! `hop < size` and with gaps when `hop > size` (as in eKuiper); a row belongs to every window
//! whose range holds it, and a row in a gap to none.

use super::aligned::Aligned;
use super::rows::{Buffered, Rows};
use super::{Fired, WindowPolicy};

/// A hopping window.
pub(super) struct Hopping {
    aligned: Aligned,
}

impl Hopping {
    pub(super) fn new(size: i64, hop: i64, event_time: bool) -> Self {
        Self {
            aligned: Aligned::new(size, hop, event_time).hopping(),
        }
    }
}

impl WindowPolicy for Hopping {
    fn on_row(&mut self, rows: &mut Rows, index: usize, row: Buffered, _trigger: bool) -> bool {
        self.aligned.on_row(row.ts);
        rows.insert(index, row);
        false
    }

    fn next_deadline(&self) -> Option<i64> {
        self.aligned.next_end()
    }

    fn first_window_fired(&self) -> bool {
        self.aligned.first_fired()
    }

    fn set_first_window_fired(&mut self) {
        self.aligned.set_first_fired();
    }

    fn fire_until(&mut self, rows: &mut Rows, limit: i64, draining: bool, out: &mut Vec<Fired>) {
        self.aligned.fire_until(rows, limit, draining, out);
    }
}
