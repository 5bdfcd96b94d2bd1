//! How a command ended: DESIGN.md's exit codes, the one mapping from an exit code to the outcome
//! reports, the record and the metrics name (`ok`, `refused`, `failed`), and the record of each
//! command's last run that `status` and the metrics read.

use serde::{Deserialize, Serialize};

/// DESIGN.md's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Internal = 1,
    Usage = 2,
    Refused = 3,
    Failed = 4,
}

impl Exit {
    #[must_use]
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The outcome this exit code reports: `ok`, `refused`, or `failed` for everything else.
    #[must_use]
    pub fn outcome(self) -> &'static str {
        match self {
            Exit::Ok => "ok",
            Exit::Refused => "refused",
            Exit::Internal | Exit::Usage | Exit::Failed => "failed",
        }
    }
}

/// What a command concluded the last time it ran, for `status` and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    pub command: String,
    pub decision: String,
    pub outcome: String,
    pub exit_code: i32,
    pub at: String,
    pub duration_seconds: f64,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub findings: usize,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub restored_bytes: Option<u64>,
    /// Age of the backup a restore used, in seconds, when it restored.
    #[serde(default)]
    pub backup_age_seconds: Option<i64>,
}

/// The last run of each command, by command name.
pub type LastRuns = std::collections::BTreeMap<String, LastRun>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_code_has_one_outcome() {
        assert_eq!(Exit::Ok.outcome(), "ok");
        assert_eq!(Exit::Refused.outcome(), "refused");
        for exit in [Exit::Internal, Exit::Usage, Exit::Failed] {
            assert_eq!(exit.outcome(), "failed", "{exit:?}");
        }
        assert_eq!(
            [
                Exit::Ok,
                Exit::Internal,
                Exit::Usage,
                Exit::Refused,
                Exit::Failed
            ]
            .map(Exit::code),
            [0, 1, 2, 3, 4]
        );
    }
}
