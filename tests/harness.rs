//! `syncfile`'s integration tests, a package of their own so that none of
//! them is part of the published crate. This library is the harness every
//! test binary shares: trials that need a dma-buf source are run, reported
//! ignored (with the reason) where the source is missing, or failed where
//! it is missing in the VM.

use std::collections::BTreeSet;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use syncfile::sources::{availability, in_vm, Availability, Source, VM_ENV};

/// What a test body returns; `?` turns any displayable error into a failure.
pub type Outcome = Result<(), Failed>;

/// The trials of one test binary.
pub struct Suite {
    trials: Vec<Trial>,
    skipped: usize,
    missing: BTreeSet<String>,
}

impl Default for Suite {
    fn default() -> Self {
        Self::new()
    }
}

impl Suite {
    /// A suite with no trials yet.
    pub fn new() -> Self {
        Suite {
            trials: Vec::new(),
            skipped: 0,
            missing: BTreeSet::new(),
        }
    }

    /// Adds a trial that needs every source in `needs` (none: it runs
    /// anywhere).
    pub fn add<F>(&mut self, name: impl Into<String>, needs: &[Source], test: F)
    where
        F: FnOnce() -> Outcome + Send + 'static,
    {
        self.push(name.into(), availability(needs), test);
    }

    /// Adds a trial that needs something other than a dma-buf source:
    /// `missing` says what this machine lacks of it, if anything.
    pub fn add_unless<F>(&mut self, name: impl Into<String>, missing: Option<String>, test: F)
    where
        F: FnOnce() -> Outcome + Send + 'static,
    {
        let availability = match missing {
            None => Availability::Ready,
            Some(m) if in_vm() => Availability::Fail(vec![m]),
            Some(m) => Availability::Skip(vec![m]),
        };
        self.push(name.into(), availability, test);
    }

    fn push<F>(&mut self, name: String, availability: Availability, test: F)
    where
        F: FnOnce() -> Outcome + Send + 'static,
    {
        let trial = match availability {
            Availability::Ready => Trial::test(name, test),
            Availability::Skip(reasons) => {
                self.skipped += 1;
                let reason = reasons.join(", ");
                self.missing.extend(reasons);
                Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason)))
            }
            Availability::Fail(reasons) => {
                let reason = reasons.join(", ");
                Trial::test(name, move || {
                    Err(format!("{reason}, but {VM_ENV}=1 says this is the VM").into())
                })
            }
        };
        self.trials.push(trial);
    }

    /// Runs the trials and exits. `sequential` runs them one after another
    /// on the main thread, for tests that measure the whole process.
    pub fn run(self, sequential: bool) -> ! {
        let mut args = Arguments::from_args();
        if sequential {
            args.test_threads = Some(1);
        }
        if self.skipped > 0 && !args.list {
            let reasons = Vec::from_iter(self.missing).join(", ");
            let tests = if self.skipped == 1 { "test" } else { "tests" };
            eprintln!(
                "skipping {} {tests}: {reasons}; they run in the VM through scripts/test",
                self.skipped
            );
        }
        libtest_mimic::run(&args, self.trials).exit()
    }
}
