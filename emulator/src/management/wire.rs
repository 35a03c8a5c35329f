//! Wire types of the Management Activity API: content types, content entries, subscriptions.
//! Key order follows the documented and observed samples (serde_json keeps insertion order).

use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// The five content types, in the order `/subscriptions/list` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContentType {
    AzureActiveDirectory,
    Exchange,
    SharePoint,
    General,
    DlpAll,
}

impl ContentType {
    pub const ALL: [ContentType; 5] = [
        ContentType::AzureActiveDirectory,
        ContentType::Exchange,
        ContentType::SharePoint,
        ContentType::General,
        ContentType::DlpAll,
    ];

    /// The exact documented string, e.g. `Audit.SharePoint`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::AzureActiveDirectory => "Audit.AzureActiveDirectory",
            ContentType::Exchange => "Audit.Exchange",
            ContentType::SharePoint => "Audit.SharePoint",
            ContentType::General => "Audit.General",
            ContentType::DlpAll => "DLP.All",
        }
    }

    /// Case-insensitive, as the real service matches `contentType` (`Audit.Sharepoint` works).
    pub fn parse(text: &str) -> Option<ContentType> {
        ContentType::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// `Audit_SharePoint`: the content type inside a content id.
    pub fn id_part(self) -> String {
        self.as_str().replace('.', "_")
    }

    /// A small stable number, for seeding.
    pub fn ordinal(self) -> u64 {
        self as u64
    }

    /// The role a token needs besides `ActivityFeed.Read`, if any.
    pub fn extra_role(self) -> Option<&'static str> {
        (self == ContentType::DlpAll).then_some(READ_DLP)
    }
}

pub const READ: &str = "ActivityFeed.Read";
pub const READ_DLP: &str = "ActivityFeed.ReadDlp";

/// One element of `/subscriptions/content`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentEntry {
    pub content_type: &'static str,
    pub content_id: String,
    pub content_uri: String,
    pub content_created: String,
    pub content_expiration: String,
}

/// Response datetimes: UTC, milliseconds, `Z` (`2015-05-23T17:35:00.000Z`).
pub fn format_response_time(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

/// A registered webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub address: String,
    /// `""` when not given (as `/list` shows it).
    pub auth_id: String,
    /// The expiration as the client sent it: `null`/absent, `""`, or a datetime string.
    pub expiration_raw: Value,
    /// The parsed expiration; `None` = never.
    pub expiration: Option<OffsetDateTime>,
    /// Set after too many consecutive failed notifications (`delivery.rs`); `/start`
    /// re-enables it.
    pub disabled: bool,
}

impl Webhook {
    /// Whether two webhooks are the same registration (what AF20024 compares).
    pub fn same_properties(&self, other: &Webhook) -> bool {
        self.address == other.address
            && self.auth_id == other.auth_id
            && self.expiration == other.expiration
    }

    /// `enabled`; `disabled` after too many consecutive failed notifications; `expired`
    /// once the expiration has passed.
    pub fn status(&self, now: OffsetDateTime) -> &'static str {
        match self.expiration {
            _ if self.disabled => "disabled",
            Some(e) if e <= now => "expired",
            _ => "enabled",
        }
    }

    /// Whether notifications go out at `now`.
    pub fn active(&self, now: OffsetDateTime) -> bool {
        self.status(now) == "enabled"
    }

    /// The webhook in `/start`'s answer (documented order; `""` expiration shows as `null`).
    pub fn start_json(&self, now: OffsetDateTime) -> Value {
        let expiration = match &self.expiration_raw {
            Value::String(s) if !s.is_empty() => Value::String(s.clone()),
            _ => Value::Null,
        };
        json!({
            "status": self.status(now),
            "address": self.address,
            "authId": self.auth_id,
            "expiration": expiration,
        })
    }

    /// The webhook in `/list` (observed order; `expiration` echoed as registered).
    pub fn list_json(&self, now: OffsetDateTime) -> Value {
        let expiration = match &self.expiration_raw {
            Value::String(s) => Value::String(s.clone()),
            _ => Value::Null,
        };
        json!({
            "authId": self.auth_id,
            "address": self.address,
            "expiration": expiration,
            "status": self.status(now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_parse_case_insensitively() {
        assert_eq!(
            ContentType::parse("Audit.Sharepoint"),
            Some(ContentType::SharePoint)
        );
        assert_eq!(ContentType::parse("dlp.all"), Some(ContentType::DlpAll));
        assert_eq!(ContentType::parse("Audit.Teams"), None);
        assert_eq!(ContentType::DlpAll.id_part(), "DLP_All");
    }

    #[test]
    fn response_times_have_milliseconds() {
        let t = time::macros::datetime!(2015-05-23 17:35:00.1234 UTC);
        assert_eq!(format_response_time(t), "2015-05-23T17:35:00.123Z");
    }
}
