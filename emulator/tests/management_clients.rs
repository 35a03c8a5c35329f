//! The Management Activity API drained by a collector built on the real, unmodified MSAL
//! Python and `requests` (tests/clients/management_drain.py): every generated record of a
//! 48-hour window arrives exactly once.

mod support;

use std::collections::BTreeMap;

use m365_emulator::management::generator::{Actors, Feed};
use m365_emulator::management::knobs::Knobs;
use m365_emulator::management::wire::ContentType;
use m365_emulator::{Emulator, World};
use support::python::{test_python, Script};
use support::*;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2030-03-01 00:00 UTC);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_python_and_requests_drain_48_hours_exactly_once() {
    let Some(python) = test_python() else {
        return;
    };
    let mut world = World::default_world().expect("world");
    // The subscription starts at the end; two days of backfill make the window available.
    world.server.management.backfill_seconds = Some(48 * 3600);
    world.server.management.records_per_blob = Some(5);
    let emulator = start_with(Emulator::builder().key_seed(42).world(world.clone())).await;
    emulator.clock().freeze();
    emulator.clock().set(T0 + Duration::hours(48));

    let run = Script::new(&python, "management_drain.py")
        .trust_ca(&emulator.ca_path())
        .env("M365EMU_HTTPS_URL", emulator.https_uri())
        .env("M365EMU_TENANT_ID", CONTOSO)
        .env("M365EMU_CLIENT_ID", COLLECTOR)
        .env("M365EMU_CLIENT_SECRET", COLLECTOR_SECRET)
        .env(
            "M365EMU_CONTENT_TYPES",
            "Audit.General,Audit.AzureActiveDirectory",
        )
        .env("M365EMU_WINDOW_START", "2030-03-01T00:00:00Z")
        .env("M365EMU_WINDOW_HOURS", "48")
        .run_ok()
        .await;

    // What the generator made for those 48 hours, computed without the HTTP path.
    let knobs = Knobs::resolve(&world.server.management, 42);
    let tenant = world.tenant(CONTOSO).expect("contoso");
    let actors = Actors::from_world(&world, tenant);
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    let mut blobs = 0;
    for ct in [ContentType::General, ContentType::AzureActiveDirectory] {
        let feed = Feed::new(knobs.feed, tenant.id, ct);
        let end = feed.first_index_at_or_after(T0 + Duration::hours(48));
        for i in feed.first_index_at_or_after(T0)..end {
            blobs += 1;
            for r in feed.records(&actors, i) {
                let id = r["Id"].as_str().expect("Id").to_string();
                expected.insert(id, feed.content_id(i));
            }
        }
    }
    assert_eq!(
        blobs,
        2 * 576,
        "five-minute blobs over two days, two content types"
    );

    let mut got: BTreeMap<String, String> = BTreeMap::new();
    let mut copies = 0;
    for line in &run.json_lines {
        if let Some(id) = line["record"].as_str() {
            copies += 1;
            got.insert(
                id.to_string(),
                line["contentId"].as_str().unwrap_or_default().to_string(),
            );
        }
    }
    let summary = run
        .json_lines
        .iter()
        .find_map(|l| l.get("summary"))
        .expect("a summary line");
    assert_eq!(summary["blobs"], blobs, "{summary}");
    assert_eq!(
        copies,
        expected.len(),
        "every record exactly once (no copies)"
    );
    assert_eq!(got, expected, "the same records, from the same blobs");
    // 2 content types × 2 windows × ceil(288 / 200) pages.
    assert_eq!(summary["pages"], 8, "{summary}");
    assert_eq!(summary["tokens"], 1, "MSAL's cache served every later call");
}
