//! Helpers shared by the journey tests.

use journeydb_client::Reply;

/// Every row of a reply, as text cells (the engine's own formatting).
pub fn reply_rows(r: &Reply) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for b in &r.batches {
        for i in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| journeydb_query::format::cell_text(c.as_ref(), i))
                    .collect(),
            );
        }
    }
    out
}
