//! Helpers shared by the tools tests: reply rows as text, a `journeydb serve` process.
#![allow(dead_code)]

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

/// A `journeydb serve` process started by a test, SIGKILLed when dropped (so a failing assertion
/// never leaves it running), with the addresses its banner printed.
pub struct Served {
    /// The process.
    pub child: std::process::Child,
    /// The native protocol's address.
    pub native: String,
    /// The PostgreSQL protocol's address, unless `--pg-listen off`.
    pub pg: Option<String>,
    /// The dashboard's address, with `--http-listen`.
    pub http: Option<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Kills the server now (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `journeydb serve --db DB --listen 127.0.0.1:0 EXTRA..` (add `--pg-listen 127.0.0.1:0`
/// or `off` to EXTRA) and reads its banner.
pub fn serve(db: &std::path::Path, extra: &[&str]) -> Served {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["serve", "--db"])
        .arg(db)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start journeydb serve");
    let (mut line, mut http) = (String::new(), None);
    if let Some(out) = child.stdout.take() {
        let mut out = std::io::BufReader::new(out);
        let _ = out.read_line(&mut line);
        if extra.contains(&"--http-listen") {
            // "journeydb dashboard on http://ADDR/"
            let mut second = String::new();
            let _ = out.read_line(&mut second);
            http = second
                .trim()
                .strip_prefix("journeydb dashboard on http://")
                .map(|a| a.trim_end_matches('/').to_string());
        }
    }
    // "journeydb serving DB on ADDR (native protocol), PostgreSQL protocol on ADDR, .."
    let after = |marker: &str| {
        line.split_once(marker).and_then(|(_, r)| {
            r.split_whitespace()
                .next()
                .map(|a| a.trim_end_matches(',').to_string())
        })
    };
    let Some(native) = after(" on ") else {
        let _ = child.kill();
        panic!("no address in the banner: {line:?}");
    };
    let pg = after("PostgreSQL protocol on ");
    Served {
        child,
        native,
        pg,
        http,
    }
}
