//! Which `CONNECT` targets the proxy terminates: the Microsoft host names the emulator serves,
//! on port 443. Everything else is refused, so the proxy never becomes a path to the network.

/// Entra ID (the public cloud's aliases and the US government authority), the Office 365
/// Management Activity API (commercial, GCC, GCC High, DoD), Microsoft Graph and the Skype for
/// Business Trusted Application API.
pub const MICROSOFT_HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.windows.net",
    "login.microsoft.com",
    "sts.windows.net",
    "login.microsoftonline.us",
    "manage.office.com",
    "manage-gcc.office.com",
    "manage.office365.us",
    "manage.protection.apps.mil",
    "graph.microsoft.com",
    "api.skypeforbusiness.com",
];

/// Azure Communication Services resources: `<resource>.communication.azure.com` (the resource
/// is chosen by host).
pub const ACS_SUFFIX: &str = ".communication.azure.com";

/// The only port the proxy tunnels to.
pub const HTTPS_PORT: u16 = 443;

/// The Azure Instance Metadata Service, served for plain-HTTP proxy requests.
pub const IMDS_HOST: &str = "169.254.169.254";

/// A `CONNECT` target, host lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

/// Why a target is refused; the message names the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
}

/// The served hosts: the fixed list, any ACS resource host, and the world's own ACS hosts.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    extra: Vec<String>,
}

impl AllowList {
    /// `extra` are further host names to serve (the world's ACS resources).
    pub fn new(extra: impl IntoIterator<Item = String>) -> AllowList {
        AllowList {
            extra: extra
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .filter(|h| crate::world::is_dns_name(h))
                .collect(),
        }
    }

    /// Whether `host` (lower-case, no port) is one the emulator answers for.
    pub fn serves(&self, host: &str) -> bool {
        MICROSOFT_HOSTS.contains(&host)
            || self.extra.iter().any(|h| h == host)
            || host
                .strip_suffix(ACS_SUFFIX)
                .is_some_and(|resource| crate::world::is_dns_name(&format!("{resource}.x")))
    }

    /// Checks the request target of a `CONNECT` (`host:port`, authority form).
    pub fn check_connect(&self, authority: Option<&str>) -> Result<Target, Refusal> {
        let Some(authority) = authority.filter(|a| !a.is_empty()) else {
            return Err(Refusal {
                message: "CONNECT needs a host:port target".into(),
            });
        };
        let Some(target) = parse_authority(authority) else {
            return Err(Refusal {
                message: format!("'{}' is not a host:port target", printable(authority)),
            });
        };
        if !self.serves(&target.host) {
            return Err(Refusal {
                message: format!(
                    "{} is not a Microsoft host the emulator serves ({}, *{ACS_SUFFIX}); \
                     the emulator never connects to the network",
                    target.host,
                    MICROSOFT_HOSTS.join(", ")
                ),
            });
        }
        if target.port != HTTPS_PORT {
            return Err(Refusal {
                message: format!(
                    "{}:{} is refused: the emulator serves {} on port {HTTPS_PORT} only",
                    target.host, target.port, target.host
                ),
            });
        }
        Ok(target)
    }
}

/// `host:port` or `[v6]:port`; the port is required (as `CONNECT` requires it).
pub fn parse_authority(authority: &str) -> Option<Target> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        (host, port)
    } else {
        authority.rsplit_once(':')?
    };
    if host.is_empty() || port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host).to_string();
    Some(Target { host, port })
}

/// At most 100 printable ASCII characters of client input, for messages.
pub fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(100)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list() -> AllowList {
        AllowList::new(["Contoso-ACS.example.net".to_string()])
    }

    #[test]
    fn microsoft_hosts_on_443_are_served() {
        for host in MICROSOFT_HOSTS {
            let t = list()
                .check_connect(Some(&format!("{host}:443")))
                .expect("served");
            assert_eq!(t.host, *host);
        }
        let t = list()
            .check_connect(Some("Contoso-ACS.Communication.Azure.com:443"))
            .expect("ACS host");
        assert_eq!(t.host, "contoso-acs.communication.azure.com");
        assert!(list()
            .check_connect(Some("contoso-acs.example.net:443"))
            .is_ok());
        assert!(list()
            .check_connect(Some("login.microsoftonline.com.:443"))
            .is_ok());
    }

    #[test]
    fn everything_else_is_refused_with_the_host_named() {
        for target in [
            "example.com:443",
            "login.microsoftonline.com.evil.test:443",
            "evil-login.microsoftonline.com:443",
            "communication.azure.com:443",
            ".communication.azure.com:443",
            "a..communication.azure.com:443",
            "127.0.0.1:443",
            "[::1]:443",
        ] {
            let e = list().check_connect(Some(target)).unwrap_err();
            let host = parse_authority(target).map(|t| t.host);
            if let Some(host) = host {
                assert!(e.message.contains(&host), "{target}: {}", e.message);
            }
        }
        let e = list()
            .check_connect(Some("graph.microsoft.com:80"))
            .unwrap_err();
        assert!(
            e.message.contains("graph.microsoft.com:80"),
            "{}",
            e.message
        );
        for bad in [
            "graph.microsoft.com",
            "graph.microsoft.com:",
            ":443",
            "h:0",
            "h:99999",
        ] {
            assert!(parse_authority(bad).is_none(), "{bad}");
            assert!(list().check_connect(Some(bad)).is_err());
        }
        assert!(list().check_connect(None).is_err());
    }

    proptest! {
        #[test]
        fn any_target_gets_an_answer(s in "\\PC{0,80}") {
            let r = list().check_connect(Some(&s));
            if let Ok(t) = r {
                prop_assert_eq!(t.port, HTTPS_PORT);
                prop_assert!(list().serves(&t.host));
            }
        }

        #[test]
        fn acs_resources_are_served(resource in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?") {
            let target = format!("{resource}{ACS_SUFFIX}:443");
            prop_assert!(list().check_connect(Some(&target)).is_ok());
        }
    }
}
