//! The kinds of data Loupe stores. A signal names the second segment of object paths, the
//! catalog of a tenant × signal, and travels in every write-ahead-log record as a one-byte
//! code that never changes meaning.

/// The kinds of data Loupe stores.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    /// The stable one-byte code of write-ahead-log records.
    pub fn code(self) -> u8 {
        match self {
            Signal::Traces => 1,
            Signal::Logs => 2,
            Signal::Metrics => 3,
        }
    }

    /// The signal of a record code; `None` for codes of a newer version (such records are
    /// skipped, not treated as damage).
    pub fn from_code(code: u8) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.code() == code)
    }

    pub fn parse(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_none() {
        for s in Signal::ALL {
            assert_eq!(Signal::from_code(s.code()), Some(s));
            assert_eq!(Signal::parse(s.as_str()), Some(s));
        }
        assert_eq!(Signal::from_code(0), None);
        assert_eq!(Signal::from_code(200), None);
    }
}
