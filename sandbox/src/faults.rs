//! Fault injection for the sandbox (`kiosk-agent sandbox --faults SPEC`).
//!
//! SPEC is a `;`-separated list. An operation entry `OP:KIND=P,KIND=P…` gives, for `OP` in
//! `create`, `evidences`, `video`, `status`, `hello`, `otp`, `sign` or `*` (every operation), the probability of
//! each fault `KIND`:
//!
//! | kind    | what the client sees                                              | applied? |
//! |---------|-------------------------------------------------------------------|----------|
//! | `500`   | 500 Internal Server Error                                         | no       |
//! | `503`   | 503 Service Unavailable with `Retry-After`                        | no       |
//! | `429`   | 429 Too Many Requests with `Retry-After`                          | no       |
//! | `stall` | no answer for `stall_secs` (past the client's timeout), then 500  | no       |
//! | `reset` | the connection reset while it still sends the request body        | no       |
//! | `drop`  | the connection closed instead of the answer                       | **yes**  |
//!
//! Global entries: `stall_secs=S` (default 30), `retry_after=S` (default 1), `seed=N` (a fixed
//! random sequence), and `offline=UP/DOWN`, which takes the server off the network (connections
//! refused) for DOWN seconds after every UP seconds. Example:
//! `*:500=0.05,503=0.05;video:reset=0.1;create:drop=0.1;stall_secs=3;seed=7`.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::{Rng, SeedableRng};

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Status500,
    Status503,
    Status429,
    Stall,
    Reset,
    Drop,
}

impl Fault {
    fn parse(s: &str) -> Option<Fault> {
        Some(match s {
            "500" => Fault::Status500,
            "503" => Fault::Status503,
            "429" => Fault::Status429,
            "stall" => Fault::Stall,
            "reset" => Fault::Reset,
            "drop" => Fault::Drop,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::Status500 => "500",
            Fault::Status503 => "503",
            Fault::Status429 => "429",
            Fault::Stall => "stall",
            Fault::Reset => "reset",
            Fault::Drop => "drop",
        }
    }
}

/// The operations faults apply to.
pub const OPS: [&str; 7] = ["create", "evidences", "video", "status", "hello", "otp", "sign"];

/// A parsed fault specification and its random source.
#[derive(Debug)]
pub struct FaultPlan {
    /// Per operation, the faults and their probabilities (in spec order).
    table: BTreeMap<&'static str, Vec<(Fault, f64)>>,
    pub stall: Duration,
    pub retry_after: u64,
    /// Up and down periods of the offline switch, if it flaps.
    pub offline: Option<(Duration, Duration)>,
    rng: rand::rngs::StdRng,
    /// How many of each fault were injected, by `op:kind`.
    pub injected: BTreeMap<String, u64>,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            table: BTreeMap::new(),
            stall: Duration::from_secs(30),
            retry_after: 1,
            offline: None,
            rng: rand::rngs::StdRng::from_entropy(),
            injected: BTreeMap::new(),
        }
    }
}

impl FaultPlan {
    /// Parses SPEC; the error names the entry and the rule.
    pub fn parse(spec: &str) -> Result<FaultPlan, String> {
        let mut plan = FaultPlan::default();
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            if let Some((op, faults)) = entry.split_once(':') {
                let ops: Vec<&'static str> = match op {
                    "*" => OPS.to_vec(),
                    _ => vec![*OPS.iter().find(|o| **o == op).ok_or_else(|| {
                        format!("{entry:?}: unknown operation {op:?} (expected {} or *)", OPS.join(", "))
                    })?],
                };
                for item in faults.split(',') {
                    let (kind, p) = item
                        .split_once('=')
                        .ok_or_else(|| format!("{entry:?}: expected KIND=PROBABILITY in {item:?}"))?;
                    let fault = Fault::parse(kind.trim()).ok_or_else(|| {
                        format!("{entry:?}: unknown fault {kind:?} (expected 500, 503, 429, stall, reset, drop)")
                    })?;
                    let p: f64 =
                        p.trim().parse().map_err(|_| format!("{entry:?}: probability {p:?} is not a number"))?;
                    if !(0.0..=1.0).contains(&p) {
                        return Err(format!("{entry:?}: probability {p} must be between 0 and 1"));
                    }
                    for op in &ops {
                        plan.table.entry(op).or_default().push((fault, p));
                    }
                }
            } else if let Some((key, value)) = entry.split_once('=') {
                let secs = |v: &str| {
                    v.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64)
                };
                match key.trim() {
                    "stall_secs" => plan.stall = secs(value).ok_or_else(|| format!("{entry:?}: seconds expected"))?,
                    "retry_after" => {
                        plan.retry_after =
                            value.trim().parse().map_err(|_| format!("{entry:?}: whole seconds expected"))?
                    }
                    "seed" => {
                        plan.rng = rand::rngs::StdRng::seed_from_u64(
                            value.trim().parse().map_err(|_| format!("{entry:?}: a number expected"))?,
                        )
                    }
                    "offline" => {
                        let (up, down) = value
                            .split_once('/')
                            .ok_or_else(|| format!("{entry:?}: expected offline=UP/DOWN seconds"))?;
                        let (up, down) = (secs(up), secs(down));
                        match (up, down) {
                            (Some(u), Some(d)) if !u.is_zero() && !d.is_zero() => plan.offline = Some((u, d)),
                            _ => return Err(format!("{entry:?}: UP and DOWN must be positive seconds")),
                        }
                    }
                    other => return Err(format!("{entry:?}: unknown setting {other:?}")),
                }
            } else {
                return Err(format!("{entry:?}: expected OP:KIND=P,… or SETTING=VALUE"));
            }
        }
        for (op, faults) in &plan.table {
            let total: f64 = faults.iter().map(|(_, p)| p).sum();
            if total > 1.0 + 1e-9 {
                return Err(format!("{op}: fault probabilities add up to {total}, more than 1"));
            }
        }
        Ok(plan)
    }

    /// Draws the fault (if any) for one request to `op`, and counts it.
    pub fn draw(&mut self, op: &str) -> Option<Fault> {
        let faults = self.table.get(op)?;
        let r: f64 = self.rng.gen();
        let mut acc = 0.0;
        for (fault, p) in faults {
            acc += p;
            if r < acc {
                let fault = *fault;
                *self.injected.entry(format!("{op}:{}", fault.name())).or_default() += 1;
                return Some(fault);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_named() {
        let plan =
            FaultPlan::parse("*:500=0.1,503=0.1;video:reset=0.2;stall_secs=2.5;retry_after=3;seed=9;offline=5/1")
                .unwrap();
        assert_eq!(plan.stall, Duration::from_millis(2500));
        assert_eq!(plan.retry_after, 3);
        assert_eq!(plan.offline, Some((Duration::from_secs(5), Duration::from_secs(1))));
        assert_eq!(plan.table["video"].len(), 3);
        for (spec, needle) in [
            ("upload:500=0.1", "unknown operation"),
            ("create:418=0.1", "unknown fault"),
            ("create:500=2", "between 0 and 1"),
            ("create:500=0.6,503=0.6", "more than 1"),
            ("offline=5", "UP/DOWN"),
            ("speed=9", "unknown setting"),
        ] {
            let err = FaultPlan::parse(spec).unwrap_err();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn draws_follow_the_probabilities() {
        let mut plan = FaultPlan::parse("create:500=0.25,drop=0.25;seed=1").unwrap();
        let draws: Vec<Option<Fault>> = (0..4000).map(|_| plan.draw("create")).collect();
        let count = |f| draws.iter().filter(|d| **d == Some(f)).count() as f64 / 4000.0;
        assert!((count(Fault::Status500) - 0.25).abs() < 0.03);
        assert!((count(Fault::Drop) - 0.25).abs() < 0.03);
        assert_eq!(plan.draw("video"), None, "no entry, no fault");
        assert_eq!(plan.injected["create:500"] + plan.injected["create:drop"], draws.iter().flatten().count() as u64);
    }
}
