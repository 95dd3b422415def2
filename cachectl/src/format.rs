//! Human output: aligned tables, byte sizes, durations; and the progress line of long scans.

use crate::output::out;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Prints `rows` under `header`, columns aligned; numeric columns (`right`) right-aligned.
pub(crate) fn table(header: &[&str], right: &[bool], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, cell)| match right.get(c).copied().unwrap_or(false) {
                true => format!("{cell:>width$}", width = widths[c]),
                false => format!("{cell:<width$}", width = widths[c]),
            })
            .collect();
        out!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

pub(crate) fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        // Zero is what a whole-second figure (an uptime) rounds to: no false precision.
        0 if d.is_zero() => "0 s".to_owned(),
        0 if d < Duration::from_millis(1) => format!("{} µs", d.as_micros()),
        0 => format!("{} ms", d.as_millis()),
        1..60 => format!("{:.1} s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// A `keys scanned` line rewritten in place, on a terminal only (not with `--json`).
pub(crate) struct Progress {
    shown: bool,
}

impl Progress {
    pub(crate) fn new(json: bool) -> Self {
        Self {
            shown: !json && std::io::stderr().is_terminal(),
        }
    }

    pub(crate) fn update(&mut self, scanned: u64) {
        self.show(&format!("scanning: {scanned} keys"));
    }

    /// Rewrites the line with `text` (on a terminal only).
    pub(crate) fn show(&self, text: &str) {
        if self.shown {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r{text}");
            let _ = err.flush();
        }
    }

    pub(crate) fn finish(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_their_own_scale() {
        for (d, shown) in [
            (Duration::ZERO, "0 s"),
            (Duration::from_micros(250), "250 µs"),
            (Duration::from_millis(12), "12 ms"),
            (Duration::from_millis(1_500), "1.5 s"),
            (Duration::from_secs(61), "1m01s"),
            (Duration::from_secs(3_660), "1h01m"),
            (Duration::from_secs(90_000), "1d01h"),
        ] {
            assert_eq!(duration(d), shown);
        }
    }
}
