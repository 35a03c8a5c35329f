//! Resolved server settings. Precedence: command-line flag > `M365EMU_*` environment variable
//! (both handled by clap in `main.rs`) > the world file's `[server]` table > built-in default.

use std::net::IpAddr;
use std::path::PathBuf;

use time::Duration;

use crate::world::ServerSection;

/// Default HTTPS port of the `serve` command (0 in library mode: a free port).
pub const DEFAULT_HTTPS_PORT: u16 = 8443;
/// Default plain-HTTP port of the `serve` command.
pub const DEFAULT_HTTP_PORT: u16 = 8080;
/// Largest request body accepted (token forms, admin JSON); larger bodies get a 413.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: IpAddr,
    pub https_port: u16,
    pub http_port: u16,
    pub state_dir: PathBuf,
    pub ready_file: Option<PathBuf>,
    /// Tolerance for client-assertion `nbf`/`exp`.
    pub clock_skew: Duration,
    /// Access-token lifetime (`expires_in` is one second less, as Entra reports 3599).
    pub token_lifetime: Duration,
    /// Host of v2 issuers (`https://{host}/{tid}/v2.0`); v1 issuers are `https://sts.windows.net/{tid}/`.
    pub issuer_host: String,
    pub key_seed: Option<u64>,
    pub body_limit: usize,
    /// Entries the request journal keeps (a ring buffer).
    pub journal_capacity: usize,
    /// Headless sign-in: an authorize request whose `login_hint` names a world user signs that
    /// user in without the password page and accepts the consent it needs.
    pub auto_sign_in: bool,
    /// Port of the forward proxy (proxy mode); `None` = no proxy, `Some(0)` = a free port.
    pub proxy_port: Option<u16>,
}

/// Values given on the command line or in the environment (`None` = not given).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub bind: Option<IpAddr>,
    pub https_port: Option<u16>,
    pub http_port: Option<u16>,
    pub state_dir: Option<PathBuf>,
    pub ready_file: Option<PathBuf>,
    pub clock_skew_seconds: Option<u64>,
    pub token_lifetime_seconds: Option<u64>,
    pub issuer_host: Option<String>,
    pub key_seed: Option<u64>,
    pub journal_capacity: Option<usize>,
    pub auto_sign_in: Option<bool>,
    pub proxy_port: Option<u16>,
}

/// A setting's value is out of range; names the key it came from.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for `{key}`: {message}")]
pub struct SettingsError {
    pub key: String,
    pub message: String,
}

impl Settings {
    /// Merges overrides over the world file's `[server]` table over the defaults.
    pub fn resolve(
        over: Overrides,
        file: &ServerSection,
        defaults: (u16, u16),
    ) -> Result<Settings, SettingsError> {
        let bind = match (over.bind, &file.bind) {
            (Some(b), _) => b,
            (None, Some(text)) => text.parse().map_err(|_| SettingsError {
                key: "server.bind".into(),
                message: format!("'{text}' is not an IP address"),
            })?,
            (None, None) => IpAddr::from([127, 0, 0, 1]),
        };
        let token_lifetime = over
            .token_lifetime_seconds
            .or(file.token_lifetime_seconds)
            .unwrap_or(3600);
        if !(60..=86_400).contains(&token_lifetime) {
            return Err(SettingsError {
                key: "token_lifetime_seconds".into(),
                message: format!("{token_lifetime} is outside 60..=86400"),
            });
        }
        let skew = over
            .clock_skew_seconds
            .or(file.clock_skew_seconds)
            .unwrap_or(300);
        if skew > 86_400 {
            return Err(SettingsError {
                key: "clock_skew_seconds".into(),
                message: format!("{skew} is more than a day"),
            });
        }
        let issuer_host = over
            .issuer_host
            .or_else(|| file.issuer_host.clone())
            .unwrap_or_else(|| "login.microsoftonline.com".into());
        if !crate::world::is_dns_name(&issuer_host) {
            return Err(SettingsError {
                key: "issuer_host".into(),
                message: format!("'{issuer_host}' is not a DNS name"),
            });
        }
        let journal_capacity = over
            .journal_capacity
            .or(file.journal_capacity)
            .unwrap_or(crate::journal::DEFAULT_CAPACITY);
        if !(1..=1_000_000).contains(&journal_capacity) {
            return Err(SettingsError {
                key: "journal_capacity".into(),
                message: format!("{journal_capacity} is outside 1..=1000000"),
            });
        }
        Ok(Settings {
            auto_sign_in: over.auto_sign_in.or(file.auto_sign_in).unwrap_or(false),
            journal_capacity,
            bind,
            https_port: over.https_port.or(file.https_port).unwrap_or(defaults.0),
            http_port: over.http_port.or(file.http_port).unwrap_or(defaults.1),
            state_dir: over.state_dir.unwrap_or_else(default_state_dir),
            ready_file: over.ready_file,
            clock_skew: Duration::seconds(skew as i64),
            token_lifetime: Duration::seconds(token_lifetime as i64),
            issuer_host,
            key_seed: over.key_seed.or(file.key_seed),
            body_limit: DEFAULT_BODY_LIMIT,
            proxy_port: over.proxy_port.or(file.proxy_port),
        })
    }
}

/// `$XDG_STATE_HOME/m365-emulator`, else `~/.local/state/m365-emulator`, else `./.m365-emulator`.
pub fn default_state_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("m365-emulator");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/state/m365-emulator");
    }
    PathBuf::from(".m365-emulator")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_file_beats_default() {
        let file = ServerSection {
            https_port: Some(9000),
            http_port: Some(9001),
            clock_skew_seconds: Some(60),
            ..Default::default()
        };
        let over = Overrides {
            https_port: Some(1),
            ..Default::default()
        };
        let s = Settings::resolve(over, &file, (8443, 8080)).expect("settings");
        assert_eq!((s.https_port, s.http_port), (1, 9001));
        assert_eq!(s.clock_skew, Duration::seconds(60));
        assert_eq!(s.token_lifetime, Duration::seconds(3600));
    }

    #[test]
    fn proxy_is_off_unless_a_port_is_given() {
        let s = Settings::resolve(Overrides::default(), &ServerSection::default(), (0, 0))
            .expect("settings");
        assert_eq!(s.proxy_port, None);
        let file = ServerSection {
            proxy_port: Some(8888),
            ..Default::default()
        };
        let s = Settings::resolve(Overrides::default(), &file, (0, 0)).expect("settings");
        assert_eq!(s.proxy_port, Some(8888));
        let over = Overrides {
            proxy_port: Some(0),
            ..Default::default()
        };
        let s = Settings::resolve(over, &file, (0, 0)).expect("settings");
        assert_eq!(s.proxy_port, Some(0), "the flag wins over the file");
    }

    #[test]
    fn bad_values_name_their_key() {
        let file = ServerSection {
            bind: Some("not-an-ip".into()),
            ..Default::default()
        };
        let err = Settings::resolve(Overrides::default(), &file, (0, 0)).unwrap_err();
        assert_eq!(err.key, "server.bind");
        let over = Overrides {
            token_lifetime_seconds: Some(5),
            ..Default::default()
        };
        let err = Settings::resolve(over, &ServerSection::default(), (0, 0)).unwrap_err();
        assert_eq!(err.key, "token_lifetime_seconds");
    }
}
