//! The table the bench prints: each figure beside a reference measured in the same run.

use std::fmt::Write;

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// The scenario.
    pub scenario: String,
    /// What was measured.
    pub figure: String,
    /// Its value.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
    /// What it is compared with.
    pub reference: String,
    /// The reference's value, in the same unit.
    pub reference_value: f64,
    /// The target, as text, and whether the value meets it.
    pub target: Option<(String, bool)>,
    /// Why the figure may be off (a loaded machine, few samples).
    pub noisy: Option<String>,
}

impl Row {
    /// `value` (in `unit`) of `figure` in `scenario`, beside `reference` measured in the same
    /// run (`reference_value`, same unit); no target, not marked noisy.
    pub fn new(
        scenario: &str,
        figure: String,
        (value, unit): (f64, &'static str),
        (reference, reference_value): (&str, f64),
    ) -> Row {
        Row {
            scenario: scenario.into(),
            figure,
            value,
            unit,
            reference: reference.into(),
            reference_value,
            target: None,
            noisy: None,
        }
    }

    /// The row with the target `text`, and whether the value meets it.
    pub fn target(mut self, text: &str, met: bool) -> Row {
        self.target = Some((text.into(), met));
        self
    }

    /// The row marked as possibly off, for `why`, if there is a reason.
    pub fn noisy(mut self, why: Option<String>) -> Row {
        self.noisy = why;
        self
    }

    /// The median and the p99 of `samples` (ms), as rows named `figure("p50")` and
    /// `figure("p99")`, each beside `reference`; marked noisy below 50 samples of `what`.
    pub fn percentiles(
        scenario: &str,
        samples: &[f64],
        figure: impl Fn(&str) -> String,
        (reference, reference_value): (&str, f64),
        what: &str,
    ) -> [Row; 2] {
        let few = (samples.len() < MIN_SAMPLES).then(|| format!("only {} {what}", samples.len()));
        [("p50", 50.0), ("p99", 99.0)].map(|(name, p)| {
            let value = (percentile(samples, p), "ms");
            Row::new(scenario, figure(name), value, (reference, reference_value)).noisy(few.clone())
        })
    }

    /// value / reference.
    pub fn ratio(&self) -> f64 {
        if self.reference_value == 0.0 {
            f64::NAN
        } else {
            self.value / self.reference_value
        }
    }
}

/// Fewer samples than this and a percentile is marked as possibly off.
const MIN_SAMPLES: usize = 50;

/// Formats a value with a sensible number of digits.
pub fn num(value: f64) -> String {
    match value.abs() {
        v if v >= 1000.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    }
}

/// The whole table, as Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | figure | value | reference (same run) | ratio | target | met |"
    );
    let _ = writeln!(out, "|---|---|---:|---|---:|---|---|");
    for row in rows {
        let (target, met) = match &row.target {
            Some((text, met)) => (text.clone(), if *met { "yes" } else { "NO" }),
            None => (String::new(), ""),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} {} | {}: {} {} | {:.2} | {} | {} |",
            row.scenario,
            row.figure,
            num(row.value),
            row.unit,
            row.reference,
            num(row.reference_value),
            row.unit,
            row.ratio(),
            target,
            met
        );
    }
    let noisy: Vec<&Row> = rows.iter().filter(|r| r.noisy.is_some()).collect();
    if !noisy.is_empty() {
        let _ = writeln!(out);
        for row in noisy {
            let _ = writeln!(
                out,
                "warning: {} / {}: {}",
                row.scenario,
                row.figure,
                row.noisy.as_deref().unwrap_or_default()
            );
        }
    }
    out
}

/// The `p`th percentile (0 to 100) of `samples`, nearest rank.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The machine's one-minute load average, from `/proc/loadavg`.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// A warning when the machine was busy before a scenario started.
pub fn busy_warning(load_before: f64, cores: usize) -> Option<String> {
    (load_before > 0.5 * cores as f64).then(|| {
        format!("the machine was busy before it started (load average {load_before:.2} on {cores} cores)")
    })
}
