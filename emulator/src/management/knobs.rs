//! The Management API's behaviour knobs, resolved: the world's `[server.management]` section,
//! overridden at run time by `PATCH /_emulator/management/settings` (cleared by reset).
//! Every knob reproduces something the real service does or is documented to do; defaults
//! are the documented behaviour (reference §11).

use http::StatusCode;
use time::Duration;

use super::generator::{
    FeedConfig, Shape, DEFAULT_BLOB_INTERVAL_SECONDS, DEFAULT_RECORDS_PER_BLOB,
};
use crate::world::{CooldownMode, DefaultWindow, ManagementSection};

/// Entries per `/subscriptions/content` page unless configured.
pub const DEFAULT_PAGE_SIZE: usize = 200;
/// The documented baseline quota: 2,000 requests per minute.
pub const DEFAULT_THROTTLE_PER_MINUTE: u32 = 2_000;
pub const DEFAULT_LATE_BLOB_DELAY_SECONDS: u64 = 3_600;
pub const DEFAULT_OUT_OF_ORDER_MAX_SECONDS: u64 = 86_400;

/// Every knob with its default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knobs {
    pub page_size: usize,
    pub feed: FeedConfig,
    pub default_window: DefaultWindow,
    /// `AF20055` or `AF20030`.
    pub window_error_code: &'static str,
    pub accept_long_windows: bool,
    pub start_cooldown: Duration,
    pub start_cooldown_mode: CooldownMode,
    /// 0 = unlimited.
    pub throttle_per_minute: u32,
    pub throttle_status: StatusCode,
    pub stop_status: StatusCode,
    pub backfill: Duration,
}

impl Knobs {
    /// Resolves `section` (already validated; values are clamped anyway, since a world built
    /// in code skips validation).
    pub fn resolve(section: &ManagementSection, seed: u64) -> Knobs {
        let percent = |v: Option<u8>| v.unwrap_or(0).min(100);
        let week = |v: u64| v.min(7 * 86_400);
        Knobs {
            page_size: section
                .page_size
                .unwrap_or(DEFAULT_PAGE_SIZE)
                .clamp(1, 10_000),
            feed: FeedConfig {
                seed,
                interval_seconds: section
                    .blob_interval_seconds
                    .unwrap_or(DEFAULT_BLOB_INTERVAL_SECONDS)
                    .clamp(1, 86_400),
                records_per_blob: section
                    .records_per_blob
                    .unwrap_or(DEFAULT_RECORDS_PER_BLOB)
                    .clamp(1, 100_000),
                shape: Shape {
                    late_percent: percent(section.late_blob_percent),
                    late_delay_seconds: week(
                        section
                            .late_blob_delay_seconds
                            .unwrap_or(DEFAULT_LATE_BLOB_DELAY_SECONDS),
                    ),
                    out_of_order_percent: percent(section.out_of_order_percent),
                    out_of_order_max_seconds: week(
                        section
                            .out_of_order_max_seconds
                            .unwrap_or(DEFAULT_OUT_OF_ORDER_MAX_SECONDS),
                    )
                    .max(1),
                    duplicate_percent: percent(section.duplicate_percent),
                },
            },
            default_window: section.default_window.unwrap_or_default(),
            window_error_code: match section.window_error_code.as_deref() {
                Some("AF20030") => "AF20030",
                _ => "AF20055",
            },
            accept_long_windows: section.accept_long_windows.unwrap_or(false),
            start_cooldown: Duration::seconds(
                week(section.start_cooldown_seconds.unwrap_or(0)) as i64
            ),
            start_cooldown_mode: section.start_cooldown_mode.unwrap_or_default(),
            throttle_per_minute: section
                .throttle_per_minute
                .unwrap_or(DEFAULT_THROTTLE_PER_MINUTE),
            throttle_status: match section.throttle_status {
                Some(429) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::FORBIDDEN,
            },
            stop_status: match section.stop_status {
                Some(204) => StatusCode::NO_CONTENT,
                _ => StatusCode::OK,
            },
            backfill: Duration::seconds(week(section.backfill_seconds.unwrap_or(0)) as i64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_behaviour() {
        let k = Knobs::resolve(&ManagementSection::default(), 7);
        assert_eq!(k.page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(k.window_error_code, "AF20055");
        assert_eq!(k.default_window, DefaultWindow::Last24Hours);
        assert!(!k.accept_long_windows);
        assert_eq!(k.start_cooldown, Duration::ZERO);
        assert_eq!(k.throttle_per_minute, 2_000);
        assert_eq!(k.throttle_status, StatusCode::FORBIDDEN);
        assert_eq!(k.stop_status, StatusCode::OK);
        assert_eq!(k.feed.shape, Shape::default());
        assert_eq!(k.backfill, Duration::ZERO);
    }

    #[test]
    fn out_of_range_values_are_clamped_not_trusted() {
        let s = ManagementSection {
            page_size: Some(0),
            late_blob_percent: Some(250),
            backfill_seconds: Some(u64::MAX),
            throttle_status: Some(500),
            ..Default::default()
        };
        let k = Knobs::resolve(&s, 0);
        assert_eq!(k.page_size, 1);
        assert_eq!(k.feed.shape.late_percent, 100);
        assert_eq!(k.backfill, Duration::days(7));
        assert_eq!(k.throttle_status, StatusCode::FORBIDDEN);
    }
}
