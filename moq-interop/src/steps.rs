//! Step results, `--skip`, and the runner that bounds and reports each step.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

/// The name of each step, by number, as printed in `STEP <n> <name>: …`.
pub const STEP_NAMES: [&str; 10] = [
    "connect",
    "announce",
    "subscribe",
    "group",
    "fetch",
    "probe",
    "reverse-announce",
    "reverse-subscribe",
    "reverse-probe",
    "goaway",
];

/// How one step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The step passed.
    Ok,
    /// The step failed, for this reason (one line).
    Failed(String),
    /// The step was not attempted (`--skip`).
    Skipped,
}

/// One step's line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepResult {
    /// The step number, 0 to 9.
    pub step: usize,
    /// How it ended.
    pub outcome: Outcome,
}

impl StepResult {
    /// The step's name from [`STEP_NAMES`].
    pub fn name(&self) -> &'static str {
        STEP_NAMES.get(self.step).copied().unwrap_or("unknown")
    }

    /// Whether the step passed.
    pub fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// Whether the step failed (a skipped step did not).
    pub fn is_failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_))
    }
}

impl fmt::Display for StepResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "STEP {} {}: ", self.step, self.name())?;
        match &self.outcome {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Failed(reason) => write!(f, "FAILED {reason}"),
            Outcome::Skipped => f.write_str("skipped"),
        }
    }
}

/// The features an independent peer may lack, from `--skip fetch,probe,goaway`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skip {
    /// Skip step 4.
    pub fetch: bool,
    /// Skip steps 5 and 8.
    pub probe: bool,
    /// Skip step 9.
    pub goaway: bool,
}

impl Skip {
    /// Whether `step` is skipped.
    pub fn covers(&self, step: usize) -> bool {
        match step {
            4 => self.fetch,
            5 | 8 => self.probe,
            9 => self.goaway,
            _ => false,
        }
    }
}

impl FromStr for Skip {
    type Err = String;

    /// Parses a comma-separated list of `fetch`, `probe`, `goaway` (empty items ignored).
    fn from_str(list: &str) -> Result<Self, String> {
        let mut skip = Self::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "fetch" => skip.fetch = true,
                "probe" => skip.probe = true,
                "goaway" => skip.goaway = true,
                other => {
                    return Err(format!(
                        "cannot skip {other:?}: expected fetch, probe or goaway"
                    ));
                }
            }
        }
        Ok(skip)
    }
}

/// Runs steps one at a time: each bounded by a timeout, reported as soon as it ends.
pub(crate) struct Steps {
    skip: Skip,
    results: Vec<StepResult>,
    report: Box<dyn FnMut(&StepResult) + Send>,
}

impl Steps {
    pub(crate) fn new(skip: Skip, report: impl FnMut(&StepResult) + Send + 'static) -> Self {
        Self {
            skip,
            results: Vec::new(),
            report: Box::new(report),
        }
    }

    /// Runs `step` unless it is skipped; `None` if it was skipped or failed (a timeout
    /// fails it).
    pub(crate) async fn run<T>(
        &mut self,
        step: usize,
        wait: Duration,
        work: impl Future<Output = Result<T, String>>,
    ) -> Option<T> {
        if self.skip.covers(step) {
            self.record(step, Outcome::Skipped);
            return None;
        }
        let result = match tokio::time::timeout(wait, work).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {} s", wait.as_secs_f32())),
        };
        match result {
            Ok(value) => {
                self.record(step, Outcome::Ok);
                Some(value)
            }
            Err(reason) => {
                self.record(step, Outcome::Failed(reason));
                None
            }
        }
    }

    /// Fails `step` without running it (unless it is skipped).
    pub(crate) fn fail(&mut self, step: usize, reason: &str) {
        let outcome = if self.skip.covers(step) {
            Outcome::Skipped
        } else {
            Outcome::Failed(reason.to_owned())
        };
        self.record(step, outcome);
    }

    fn record(&mut self, step: usize, outcome: Outcome) {
        let outcome = match outcome {
            // A reason stays on its line.
            Outcome::Failed(reason) => Outcome::Failed(reason.replace(['\r', '\n'], " ")),
            other => other,
        };
        let result = StepResult { step, outcome };
        (self.report)(&result);
        self.results.push(result);
    }

    pub(crate) fn finish(self) -> Vec<StepResult> {
        self.results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let ok = StepResult {
            step: 3,
            outcome: Outcome::Ok,
        };
        assert_eq!(ok.to_string(), "STEP 3 group: ok");
        let failed = StepResult {
            step: 9,
            outcome: Outcome::Failed("no GOAWAY".into()),
        };
        assert_eq!(failed.to_string(), "STEP 9 goaway: FAILED no GOAWAY");
        let skipped = StepResult {
            step: 4,
            outcome: Outcome::Skipped,
        };
        assert_eq!(skipped.to_string(), "STEP 4 fetch: skipped");
    }

    #[test]
    fn skip_list() {
        let skip: Skip = "fetch, goaway".parse().unwrap();
        assert!(skip.covers(4) && skip.covers(9) && !skip.covers(5) && !skip.covers(8));
        let probe: Skip = "probe".parse().unwrap();
        assert!(probe.covers(5) && probe.covers(8));
        assert_eq!("".parse::<Skip>().unwrap(), Skip::default());
        assert!("fetch,relay".parse::<Skip>().is_err());
    }

    #[tokio::test]
    async fn skipped_steps_never_run_and_reasons_stay_on_one_line() {
        let mut steps = Steps::new("fetch".parse().unwrap(), |_| {});
        let ran = steps
            .run(4, Duration::from_secs(1), async { Ok::<_, String>(()) })
            .await;
        assert!(ran.is_none());
        steps
            .run(
                5,
                Duration::from_millis(10),
                std::future::pending::<Result<(), String>>(),
            )
            .await;
        steps.fail(6, "two\nlines");
        let results = steps.finish();
        assert_eq!(results[0].outcome, Outcome::Skipped);
        assert!(matches!(&results[1].outcome, Outcome::Failed(r) if r.contains("timed out")));
        assert_eq!(results[2].outcome, Outcome::Failed("two lines".into()));
    }
}
