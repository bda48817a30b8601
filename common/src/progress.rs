//! Progress of long operations (enroll, upload, capture) on stderr: an `indicatif` bar for a
//! person at a terminal, plain lines every few seconds for logs and pipes, nothing at all for
//! what ends quickly.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a plain line is written when stderr is not a terminal (and the first one only
/// after this long, so quick operations stay quiet).
pub const LINE_EVERY: Duration = Duration::from_secs(2);

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    /// Milliseconds, shown as seconds.
    Millis,
}

/// One operation's progress, `0..=total`.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: u64,
    unit: Unit,
    started: Instant,
    out: Output,
}

#[derive(Debug)]
enum Output {
    Bar(indicatif::ProgressBar),
    /// When the last line was written (`None`: none yet).
    Lines(Mutex<Option<Instant>>),
}

impl Progress {
    /// A bar when stderr is a terminal, else plain lines.
    pub fn new(label: impl Into<String>, total: u64, unit: Unit) -> Progress {
        let label = label.into();
        let out = if std::io::stderr().is_terminal() {
            let template = match unit {
                Unit::Bytes => "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                Unit::Millis => "{msg} [{bar:30}] {elapsed} of {len_secs}",
            };
            let style = indicatif::ProgressStyle::with_template(template)
                .expect("the templates above are valid")
                .with_key("len_secs", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}s", s.len().unwrap_or(0) as f64 / 1000.0);
                })
                .progress_chars("=> ");
            let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr())
                .with_style(style)
                .with_message(label.clone());
            Output::Bar(bar)
        } else {
            Output::Lines(Mutex::new(None))
        };
        Progress { label, total, unit, started: Instant::now(), out }
    }

    /// Draws this bar with the others of `multi` (several uploads at once); lines need nothing.
    pub fn within(self, multi: &indicatif::MultiProgress) -> Progress {
        if let Output::Bar(bar) = &self.out {
            multi.add(bar.clone());
        }
        self
    }

    /// Sets how far the operation is.
    /// What the operation counts up to.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn set(&self, done: u64) {
        match &self.out {
            Output::Bar(bar) => bar.set_position(done),
            Output::Lines(last) => {
                let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                let since = last.unwrap_or(self.started);
                if since.elapsed() >= LINE_EVERY {
                    *last = Some(Instant::now());
                    eprintln!("{}: {}", self.label, self.describe(done));
                }
            }
        }
    }

    /// Ends the operation: the bar is cleared; a line says it is done if lines were written.
    pub fn finish(&self) {
        match &self.out {
            Output::Bar(bar) => bar.finish_and_clear(),
            Output::Lines(last) => {
                if last.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                    eprintln!("{}: done in {:.1} s", self.label, self.started.elapsed().as_secs_f64());
                }
            }
        }
    }

    /// `43% (86 of 200 MB)` or `43% (1.3 of 3.0 s)`.
    fn describe(&self, done: u64) -> String {
        let percent = (done.min(self.total) * 100).checked_div(self.total).unwrap_or(100);
        match self.unit {
            Unit::Bytes => {
                format!("{percent}% ({} of {} MB)", done / 1_000_000, self.total.div_ceil(1_000_000))
            }
            Unit::Millis => format!("{percent}% ({:.1} of {:.1} s)", done as f64 / 1000.0, self.total as f64 / 1000.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_how_far() {
        let p = Progress {
            label: "x".into(),
            total: 200_000_000,
            unit: Unit::Bytes,
            started: Instant::now(),
            out: Output::Lines(Mutex::new(None)),
        };
        assert_eq!(p.describe(86_000_000), "43% (86 of 200 MB)");
        let p = Progress { total: 3000, unit: Unit::Millis, ..p };
        assert_eq!(p.describe(1300), "43% (1.3 of 3.0 s)");
        let p = Progress { total: 0, ..p };
        assert_eq!(p.describe(0), "100% (0.0 of 0.0 s)");
    }
}
