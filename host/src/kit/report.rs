//! The kit's output: one line per check as it finishes, then exactly
//! `N passed, N failed`. A check passes, fails with a reason, or passes with a
//! note (an optional behaviour the contract allows, such as `unsupported`).

use std::io::Write;

/// What one check concluded.
pub enum Outcome {
    Pass,
    /// Passed, but worth telling the author (e.g. an allowed `unsupported`).
    PassNote(String),
    Fail(String),
}

/// Counts checks and prints each as it is recorded.
pub struct Report<W: Write> {
    out: W,
    passed: usize,
    failed: usize,
}

impl<W: Write> Report<W> {
    pub fn new(out: W) -> Self {
        Report {
            out,
            passed: 0,
            failed: 0,
        }
    }

    pub fn record(&mut self, name: &str, outcome: Outcome) {
        let line = match &outcome {
            Outcome::Pass => format!("ok   {name}"),
            Outcome::PassNote(note) => format!("ok   {name} ({note})"),
            Outcome::Fail(why) => format!("FAIL {name}: {why}"),
        };
        match outcome {
            Outcome::Fail(_) => self.failed += 1,
            _ => self.passed += 1,
        }
        // A closed stdout must not abort the battery; the exit code still tells.
        let _ = writeln!(self.out, "{line}");
    }

    /// A line that is not a check (what is being tested, timings).
    pub fn info(&mut self, text: &str) {
        let _ = writeln!(self.out, "#    {text}");
    }

    /// Prints the summary line and hands back the counts.
    pub fn finish(mut self) -> (usize, usize) {
        let _ = writeln!(self.out, "{} passed, {} failed", self.passed, self.failed);
        let _ = self.out.flush();
        (self.passed, self.failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_one_line_per_check_and_the_summary_last() {
        let mut buf = Vec::new();
        let mut report = Report::new(&mut buf);
        report.info("plugin x.wasm");
        report.record("a", Outcome::Pass);
        report.record("b", Outcome::Fail("got not-found".into()));
        report.record("c", Outcome::PassNote("unsupported".into()));
        assert_eq!(report.finish(), (2, 1));
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "#    plugin x.wasm",
                "ok   a",
                "FAIL b: got not-found",
                "ok   c (unsupported)",
                "2 passed, 1 failed"
            ]
        );
    }
}
