//! The load's settings, read once from the environment and checked against their bounds.
//!
//! The names are the ones `../shared/bench/ledger-vs-postgres.sh` sets (`CLIENTS`, `ACCOUNTS`,
//! `DURATION_S`), plus `BATCH` and `STRONGROOM_BIN`. The defaults are the shared script's, so a
//! bare `ledger-load` runs its `spread` scenario.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Concurrent clients, one connection each.
pub const ENV_CLIENTS: &str = "CLIENTS";
/// Default clients (the shared script's default).
pub const DEFAULT_CLIENTS: usize = 16;
/// Most clients: each is a connection and a task.
pub const CLIENTS_MAX: usize = 1024;

/// Accounts created before the load.
pub const ENV_ACCOUNTS: &str = "ACCOUNTS";
/// Default accounts (the shared script's `spread` scenario).
pub const DEFAULT_ACCOUNTS: usize = 1000;
/// Fewest accounts: a transfer needs two distinct ones.
pub const ACCOUNTS_MIN: usize = 2;
/// Most accounts: creating them is part of the setup time.
pub const ACCOUNTS_MAX: usize = 100_000;

/// Seconds of load.
pub const ENV_DURATION_S: &str = "DURATION_S";
/// Default seconds of load (the shared script's default).
pub const DEFAULT_DURATION_S: u64 = 15;
/// Most seconds of load.
pub const DURATION_S_MAX: u64 = 3600;

/// Transfers per request: 0 posts single transfers, N posts atomic batches of N.
pub const ENV_BATCH: &str = "BATCH";
/// Default: single transfers.
pub const DEFAULT_BATCH: usize = 0;
/// The API's batch limit.
pub const BATCH_LEN_MAX: usize = 1000;

/// The `strongroom` executable; default: the file `strongroom` next to this executable.
pub const ENV_STRONGROOM_BIN: &str = "STRONGROOM_BIN";

/// A setting that cannot be used; the process exits with status 64.
#[derive(Debug)]
pub struct SettingsError(pub String);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting: {}", self.0)
    }
}

impl std::error::Error for SettingsError {}

/// Everything the load needs to know, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Concurrent clients.
    pub clients: usize,
    /// Accounts to create.
    pub accounts: usize,
    /// How long the load runs.
    pub duration: Duration,
    /// Transfers per request; 0 means one transfer per request on `/v1/transfers`.
    pub batch_len: usize,
    /// The `strongroom` executable.
    pub strongroom_bin: PathBuf,
}

impl Settings {
    /// Reads the settings through `get` (the environment in `main`, a map in tests).
    pub fn load(get: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let clients = number(&get, ENV_CLIENTS, DEFAULT_CLIENTS, 1, CLIENTS_MAX)?;
        let accounts = number(
            &get,
            ENV_ACCOUNTS,
            DEFAULT_ACCOUNTS,
            ACCOUNTS_MIN,
            ACCOUNTS_MAX,
        )?;
        let duration_s = number(&get, ENV_DURATION_S, DEFAULT_DURATION_S, 1, DURATION_S_MAX)?;
        let batch_len = number(&get, ENV_BATCH, DEFAULT_BATCH, 0, BATCH_LEN_MAX)?;
        let strongroom_bin = match get(ENV_STRONGROOM_BIN).filter(|s| !s.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => std::env::current_exe()
                .map_err(|e| SettingsError(format!("cannot find this executable: {e}")))?
                .with_file_name("strongroom"),
        };
        Ok(Settings {
            clients,
            accounts,
            duration: Duration::from_secs(duration_s),
            batch_len,
            strongroom_bin,
        })
    }
}

fn number<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
    min: T,
    max: T,
) -> Result<T, SettingsError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    T::Err: fmt::Display,
{
    let value = match get(name) {
        None => default,
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| SettingsError(format!("{name}={raw:?}: {e}")))?,
    };
    if value < min || value > max {
        return Err(SettingsError(format!(
            "{name} must be between {min} and {max}, not {value}"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(&str, &str)], expected: Result<(usize, usize, u64, usize), &str>) {
        let got = Settings::load(|name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        });
        match (got, expected) {
            (Ok(s), Ok((clients, accounts, duration_s, batch_len))) => {
                assert_eq!(
                    (s.clients, s.accounts, s.duration.as_secs(), s.batch_len),
                    (clients, accounts, duration_s, batch_len),
                    "{pairs:?}"
                );
            }
            (Err(e), Err(fragment)) => {
                assert!(e.0.contains(fragment), "{pairs:?}: {e} lacks {fragment:?}")
            }
            (got, expected) => panic!("{pairs:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn settings() {
        check(&[], Ok((16, 1000, 15, 0)));
        check(
            &[("CLIENTS", "4"), ("ACCOUNTS", "10"), ("DURATION_S", " 10 ")],
            Ok((4, 10, 10, 0)),
        );
        check(&[("BATCH", "1000")], Ok((16, 1000, 15, 1000)));
        check(
            &[("BATCH", "1001")],
            Err("BATCH must be between 0 and 1000"),
        );
        check(&[("ACCOUNTS", "1")], Err("ACCOUNTS must be between 2"));
        check(&[("CLIENTS", "0")], Err("CLIENTS must be between 1"));
        check(&[("DURATION_S", "ten")], Err("DURATION_S=\"ten\""));
    }

    #[test]
    fn strongroom_bin_is_found_next_to_this_executable_unless_given() {
        let given = Settings::load(|name| (name == ENV_STRONGROOM_BIN).then(|| "/x/sr".to_owned()));
        assert_eq!(
            given.expect("settings").strongroom_bin,
            PathBuf::from("/x/sr")
        );
        let default = Settings::load(|_| None).expect("settings");
        assert_eq!(
            default.strongroom_bin.file_name(),
            Some("strongroom".as_ref())
        );
    }
}
