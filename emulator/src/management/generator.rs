//! Synthetic audit data, deterministic and lazy.
//!
//! Each (tenant, content type) has a timeline of blobs: blob `i` becomes available at
//! `contentCreated = i × interval + offset(i)` (Unix time; `offset` is a seeded fraction of
//! the interval, so times look organic but stay strictly increasing) and holds the records
//! of the interval before it, `[ (i−1) × interval, i × interval )`. Everything about a blob —
//! its content id, creation time and records — is computed from (seed, tenant, content type,
//! i), so listing a week of content or serving any blob costs O(page) / O(blob) memory,
//! whatever the volume. Users, their IP addresses and user agents, and applications come
//! from the world, each user always with the same address and agent.
//!
//! Records follow the common schema and the workload fields of the reference (§8): Azure AD
//! sign-ins (15) and directory changes (8), Exchange admin cmdlets (1) and mailbox items (2),
//! SharePoint/OneDrive file (6) and sharing (14) operations, Teams (25) in `Audit.General`,
//! and DLP rule matches (11, 13) in `DLP.All`.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::wire::ContentType;
use crate::world::{Tenant, World};

/// A blob every five minutes per content type, by default.
pub const DEFAULT_BLOB_INTERVAL_SECONDS: u64 = 300;
/// Records in each blob, by default.
pub const DEFAULT_RECORDS_PER_BLOB: u32 = 20;
/// Content can be retrieved for seven days after it became available.
pub const RETENTION: Duration = Duration::days(7);

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// What shapes a feed: the seed and the volume knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedConfig {
    pub seed: u64,
    pub interval_seconds: u64,
    pub records_per_blob: u32,
    pub shape: Shape,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            seed: 0,
            interval_seconds: DEFAULT_BLOB_INTERVAL_SECONDS,
            records_per_blob: DEFAULT_RECORDS_PER_BLOB,
            shape: Shape::default(),
        }
    }
}

/// The irregularities the real service shows (reference §4.5): late blobs, events older than
/// their blob, records repeated across blobs. Which blobs and records are affected is derived
/// from the seed like everything else, so the same knobs give the same feed. The records'
/// ids and contents do not depend on the shape: a record is the same record, late or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub late_percent: u8,
    pub late_delay_seconds: u64,
    pub out_of_order_percent: u8,
    pub out_of_order_max_seconds: u64,
    pub duplicate_percent: u8,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            late_percent: 0,
            late_delay_seconds: 3_600,
            out_of_order_percent: 0,
            out_of_order_max_seconds: 86_400,
            duplicate_percent: 0,
        }
    }
}

/// The blob timeline of one tenant and content type.
#[derive(Debug, Clone, Copy)]
pub struct Feed {
    pub cfg: FeedConfig,
    pub tenant: Uuid,
    pub content_type: ContentType,
}

/// A content id that does not have the real format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedId;

/// What a well-formed content id says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedId {
    pub content_type: ContentType,
    /// The blob index its second timestamp falls in (the id may still be unknown).
    pub index: i64,
}

impl Feed {
    pub fn new(cfg: FeedConfig, tenant: Uuid, content_type: ContentType) -> Feed {
        Feed {
            cfg,
            tenant,
            content_type,
        }
    }

    fn interval_ns(&self) -> i128 {
        i128::from(self.cfg.interval_seconds.max(1)) * NANOS_PER_SECOND
    }

    fn key(&self, index: i64, salt: u64) -> u64 {
        let (hi, lo) = self.tenant.as_u64_pair();
        let mut h = mix(self.cfg.seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for v in [hi, lo, self.content_type.ordinal(), index as u64] {
            h = mix(h ^ v);
        }
        h
    }

    /// When blob `index` became available (nanosecond precision).
    pub fn created(&self, index: i64) -> OffsetDateTime {
        let offset = i128::from(self.key(index, 1)) % self.interval_ns();
        from_nanos(i128::from(index) * self.interval_ns() + offset)
    }

    /// `contentCreated` as listed: the creation time to the millisecond.
    pub fn created_ms(&self, index: i64) -> OffsetDateTime {
        let t = self.created(index);
        t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
            .unwrap_or(t)
    }

    /// The event window of blob `index`: its records' `CreationTime`s lie in `[start, end)`.
    pub fn event_window(&self, index: i64) -> (OffsetDateTime, OffsetDateTime) {
        let end = i128::from(index) * self.interval_ns();
        (from_nanos(end - self.interval_ns()), from_nanos(end))
    }

    /// The smallest blob index created at or after `t`.
    pub fn first_index_at_or_after(&self, t: OffsetDateTime) -> i64 {
        let i = t.unix_timestamp_nanos().div_euclid(self.interval_ns()) as i64;
        if self.created(i) >= t {
            i
        } else {
            i + 1
        }
    }

    /// The blob index `t` falls into (the one whose creation interval holds `t`).
    pub fn index_of(&self, t: OffsetDateTime) -> i64 {
        t.unix_timestamp_nanos().div_euclid(self.interval_ns()) as i64
    }

    /// The real format: `{t1}${t2}${audit_general}${Audit_General}${shard}`, t1 = start of
    /// the event window, t2 = creation time, both `yyyyMMddHHmmss` + 9 fractional digits.
    pub fn content_id(&self, index: i64) -> String {
        let ct = self.content_type.id_part();
        format!(
            "{}${}${}${}${}",
            id_time(self.event_window(index).0),
            id_time(self.created(index)),
            ct.to_ascii_lowercase(),
            ct,
            shard(&self.tenant)
        )
    }

    /// Parses a content id's shape; whether this feed has that blob is a separate question
    /// (compare [`Feed::content_id`] of the returned index).
    pub fn parse_content_id(cfg: FeedConfig, text: &str) -> Result<ParsedId, MalformedId> {
        let parts: Vec<&str> = text.split('$').collect();
        let ok_len = parts.len() == 5 || (parts.len() == 6 && parts[4] == parts[5]);
        if !ok_len {
            return Err(MalformedId);
        }
        parse_id_time(parts[0]).ok_or(MalformedId)?;
        let created = parse_id_time(parts[1]).ok_or(MalformedId)?;
        let content_type = ContentType::ALL
            .into_iter()
            .find(|c| c.id_part().eq_ignore_ascii_case(parts[3]))
            .ok_or(MalformedId)?;
        if !parts[2].eq_ignore_ascii_case(parts[3]) {
            return Err(MalformedId);
        }
        let shard = parts[4];
        let letters = shard.bytes().take_while(u8::is_ascii_lowercase).count();
        let digits = shard.len() - letters;
        if letters == 0 || digits == 0 || !shard[letters..].bytes().all(|b| b.is_ascii_digit()) {
            return Err(MalformedId);
        }
        let feed = Feed::new(cfg, Uuid::nil(), content_type);
        Ok(ParsedId {
            content_type,
            index: feed.index_of(created),
        })
    }

    /// Whether blob `index` is one of the late ones.
    pub fn is_late(&self, index: i64) -> bool {
        self.cfg.shape.late_percent > 0
            && self.key(index, 7) % 100 < u64::from(self.cfg.shape.late_percent)
    }

    /// When blob `index` can be listed, fetched and announced: its creation, or later for a
    /// late blob (whose `contentCreated` still says when it was created).
    pub fn visible_at(&self, index: i64) -> OffsetDateTime {
        let created = self.created(index);
        if self.is_late(index) {
            created + Duration::seconds(self.cfg.shape.late_delay_seconds as i64)
        } else {
            created
        }
    }

    /// The records of blob `index` as served: its own records (ordered by `CreationTime`
    /// unless some are out of order, then shuffled), followed by the records it repeats
    /// from an earlier blob when it is one of the duplicating blobs.
    pub fn records(&self, actors: &Actors, index: i64) -> Vec<Value> {
        let shape = self.cfg.shape;
        let mut records = self.own_records(actors, index);
        let mut rng = ChaCha8Rng::seed_from_u64(self.key(index, 200));
        if shape.out_of_order_percent > 0 {
            let mut moved = false;
            for r in &mut records {
                if rng.gen_range(0..100u8) < shape.out_of_order_percent {
                    let back = rng.gen_range(1..=shape.out_of_order_max_seconds.max(1)) as i64;
                    let t = r
                        .get("CreationTime")
                        .and_then(Value::as_str)
                        .and_then(parse_creation_time);
                    if let Some(t) = t {
                        r["CreationTime"] =
                            Value::String(creation_time(t - Duration::seconds(back)));
                        moved = true;
                    }
                }
            }
            if moved {
                records.shuffle(&mut rng);
            }
        }
        if shape.duplicate_percent > 0
            && self.key(index, 8) % 100 < u64::from(shape.duplicate_percent)
        {
            // Up to a day back, as observed re-deliveries show.
            let span = (86_400 / self.cfg.interval_seconds.max(1)).max(1) as i64;
            let earlier = index - 1 - rng.gen_range(0..span);
            let copies = self.own_records(actors, earlier);
            let n = rng.gen_range(1..=copies.len().clamp(1, 3));
            records.extend(copies.into_iter().take(n));
        }
        records
    }

    /// The records generated for blob `index`, ordered by `CreationTime`.
    fn own_records(&self, actors: &Actors, index: i64) -> Vec<Value> {
        let mut seed = [0u8; 32];
        for (i, chunk) in seed.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&self.key(index, 100 + i as u64).to_le_bytes());
        }
        let mut g = Gen {
            rng: ChaCha8Rng::from_seed(seed),
            actors,
        };
        let (start, _) = self.event_window(index);
        let span = self.cfg.interval_seconds.max(1) as i64;
        let mut times: Vec<i64> = (0..self.cfg.records_per_blob)
            .map(|_| g.rng.gen_range(0..span))
            .collect();
        times.sort_unstable();
        times
            .into_iter()
            .map(|s| {
                let t = start + Duration::seconds(s);
                g.record(self.content_type, t)
            })
            .collect()
    }
}

/// SplitMix64's finaliser: a fast, well-mixed, deterministic hash step.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn from_nanos(n: i128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(n).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Reads back a `CreationTime` written by [`creation_time`].
fn parse_creation_time(text: &str) -> Option<OffsetDateTime> {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(text, &f)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

/// `yyyyMMddHHmmss` + 9 fractional digits.
fn id_time(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[year][month][day][hour][minute][second][subsecond digits:9]"
    );
    t.format(&f).unwrap_or_default()
}

fn parse_id_time(s: &str) -> Option<OffsetDateTime> {
    if s.len() != 23 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let f = time::macros::format_description!(
        "[year][month][day][hour][minute][second][subsecond digits:9]"
    );
    time::PrimitiveDateTime::parse(s, &f)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

/// The tenant's region shard in content ids, e.g. `emea0036` (stable per tenant).
pub fn shard(tenant: &Uuid) -> String {
    let (hi, lo) = tenant.as_u64_pair();
    let h = mix(hi ^ mix(lo));
    let region = ["na", "emea", "apac"][(h % 3) as usize];
    format!("{region}{:04}", (h >> 8) % 10_000)
}

/// A person the generator attributes activity to.
#[derive(Debug, Clone)]
pub struct Person {
    pub upn: String,
    pub object_id: Uuid,
    pub display_name: String,
    pub admin: bool,
    /// `1003200096971F55`-style PUID.
    pub puid: String,
    pub ip: String,
    pub user_agent: &'static str,
}

/// The tenant's people and applications, as the world defines them.
#[derive(Debug, Clone)]
pub struct Actors {
    pub tenant: Uuid,
    pub domain: String,
    /// `contoso` of `contoso.sharepoint.com`.
    pub sharepoint_prefix: String,
    pub people: Vec<Person>,
    /// (client id, display name) of applications that act in the tenant.
    pub apps: Vec<(Uuid, String)>,
}

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17531; Pro)",
];

/// First-party applications that show up in sign-ins next to the world's own apps.
const FIRST_PARTY: &[(&str, &str)] = &[
    (
        "00000002-0000-0ff1-ce00-000000000000",
        "Office 365 Exchange Online",
    ),
    (
        "00000003-0000-0ff1-ce00-000000000000",
        "Office 365 SharePoint Online",
    ),
    ("1fec8e78-bce4-4aaf-ab1b-5451cc387264", "Microsoft Teams"),
];

impl Actors {
    /// The actors of `tenant` in `world`. A tenant without users gets one administrator.
    pub fn from_world(world: &World, tenant: &Tenant) -> Actors {
        let person = |upn: &str, object_id: Uuid, display_name: &str, admin: bool| {
            let (hi, lo) = object_id.as_u64_pair();
            let h = mix(hi ^ mix(lo));
            let net = ["203.0.113", "198.51.100", "192.0.2"][(h % 3) as usize];
            Person {
                upn: upn.to_string(),
                object_id,
                display_name: display_name.to_string(),
                admin,
                puid: format!("10032000{:08X}", (hi >> 32) as u32),
                ip: format!("{net}.{}", 1 + (h >> 8) % 254),
                user_agent: USER_AGENTS[((h >> 20) % USER_AGENTS.len() as u64) as usize],
            }
        };
        let mut people: Vec<Person> = tenant
            .users
            .iter()
            .map(|u| {
                person(
                    &u.user_principal_name,
                    u.object_id,
                    &u.display_name,
                    u.admin,
                )
            })
            .collect();
        if people.is_empty() {
            let upn = format!("admin@{}", tenant.domain);
            let id = Uuid::new_v5(&tenant.id, upn.as_bytes());
            people.push(person(&upn, id, "Administrator", true));
        }
        let mut apps: Vec<(Uuid, String)> = world
            .applications
            .iter()
            .filter(|a| {
                tenant
                    .service_principals
                    .iter()
                    .any(|sp| sp.app_id == a.client_id)
                    || world
                        .tenant(&a.home_tenant)
                        .is_some_and(|h| h.id == tenant.id)
            })
            .map(|a| (a.client_id, a.display_name.clone()))
            .collect();
        apps.extend(
            FIRST_PARTY
                .iter()
                .filter_map(|(id, name)| Some((Uuid::parse_str(id).ok()?, name.to_string()))),
        );
        Actors {
            tenant: tenant.id,
            domain: tenant.domain.clone(),
            sharepoint_prefix: tenant
                .domain
                .split('.')
                .next()
                .unwrap_or("tenant")
                .to_string(),
            people,
            apps,
        }
    }
}

/// The common fields that differ between record kinds.
struct Head<'a> {
    operation: &'a str,
    record_type: u32,
    result: Option<&'a str>,
    user_key: &'a str,
    user_type: u32,
    workload: &'a str,
}

/// One blob's generator: a seeded RNG and the tenant's actors.
struct Gen<'a> {
    rng: ChaCha8Rng,
    actors: &'a Actors,
}

const FILES: &[(&str, &str)] = &[
    ("Quarterly Report", "docx"),
    ("Budget 2026", "xlsx"),
    ("Roadmap", "pptx"),
    ("Screenshot", "png"),
    ("Contract draft", "pdf"),
    ("Meeting notes", "docx"),
];
const SITES: &[&str] = &["Finance", "Engineering", "Sales", "HR"];
const TEAMS: &[&str] = &["Project X", "Sales", "Engineering", "Support"];
const SUBJECTS: &[&str] = &[
    "Weekly sync",
    "Re: Budget review",
    "Invoice 4711",
    "Welcome to the team",
    "Fw: Roadmap draft",
];

impl Gen<'_> {
    fn guid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.rng.gen()).into_uuid()
    }

    fn person(&mut self) -> Person {
        let i = self.rng.gen_range(0..self.actors.people.len());
        self.actors.people[i].clone()
    }

    fn admin(&mut self) -> Person {
        let admins: Vec<&Person> = self.actors.people.iter().filter(|p| p.admin).collect();
        match admins.choose(&mut self.rng) {
            Some(p) => (*p).clone(),
            None => self.person(),
        }
    }

    fn app(&mut self) -> (Uuid, String) {
        let i = self.rng.gen_range(0..self.actors.apps.len().max(1));
        self.actors
            .apps
            .get(i)
            .cloned()
            .unwrap_or((Uuid::nil(), "Application".into()))
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.gen_range(0..items.len())]
    }

    fn server(&mut self) -> String {
        format!(
            "{}{}PR{:02}MB{:04} (15.20.{}.{:03})",
            self.pick(&["AM", "DB", "HE", "SN", "BN"]),
            self.rng.gen_range(1..=9),
            self.rng.gen_range(1..=99),
            self.rng.gen_range(1000..=9999),
            self.rng.gen_range(7000..=8000),
            self.rng.gen_range(1..=999)
        )
    }

    fn sid(&mut self, p: &Person) -> String {
        let (hi, lo) = p.object_id.as_u64_pair();
        format!(
            "S-1-5-21-{}-{}-{}-{}",
            (hi >> 32) as u32,
            hi as u32,
            (lo >> 32) as u32,
            1000 + (lo as u32 % 9000)
        )
    }

    /// The common schema's fields, in the order real records show them.
    fn common(&mut self, t: OffsetDateTime, h: Head<'_>) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("CreationTime".into(), json!(creation_time(t)));
        m.insert("Id".into(), json!(self.guid()));
        m.insert("Operation".into(), json!(h.operation));
        m.insert("OrganizationId".into(), json!(self.actors.tenant));
        m.insert("RecordType".into(), json!(h.record_type));
        if let Some(r) = h.result {
            m.insert("ResultStatus".into(), json!(r));
        }
        m.insert("UserKey".into(), json!(h.user_key));
        m.insert("UserType".into(), json!(h.user_type));
        m.insert("Version".into(), json!(1));
        m.insert("Workload".into(), json!(h.workload));
        m
    }

    fn record(&mut self, ct: ContentType, t: OffsetDateTime) -> Value {
        let m = match ct {
            ContentType::AzureActiveDirectory => {
                if self.rng.gen_bool(0.7) {
                    self.aad_sign_in(t)
                } else {
                    self.aad_directory(t)
                }
            }
            ContentType::Exchange => {
                if self.rng.gen_bool(0.3) {
                    self.exchange_admin(t)
                } else {
                    self.exchange_item(t)
                }
            }
            ContentType::SharePoint => {
                if self.rng.gen_bool(0.8) {
                    self.sharepoint_file(t)
                } else {
                    self.sharepoint_sharing(t)
                }
            }
            ContentType::General => self.teams(t),
            ContentType::DlpAll => self.dlp(t),
        };
        Value::Object(m)
    }

    fn aad_sign_in(&mut self, t: OffsetDateTime) -> serde_json::Map<String, Value> {
        let p = self.person();
        let (app_id, _) = self.app();
        let ok = self.rng.gen_bool(0.9);
        let (op, result, error_code, detail) = if ok {
            ("UserLoggedIn", "Success", "0", "Success")
        } else {
            (
                "UserLoginFailed",
                "Failed",
                "50126",
                "InvalidUserNameOrPassword",
            )
        };
        let user_key = format!("{}@{}", p.puid, self.actors.domain);
        let mut m = self.common(
            t,
            Head {
                operation: op,
                record_type: 15,
                result: Some(result),
                user_key: &user_key,
                user_type: 0,
                workload: "AzureActiveDirectory",
            },
        );
        let tenant = self.actors.tenant;
        m.insert("ClientIP".into(), json!(p.ip));
        m.insert("ObjectId".into(), json!(app_id));
        m.insert("UserId".into(), json!(p.upn));
        m.insert("AzureActiveDirectoryEventType".into(), json!(1));
        m.insert(
            "ExtendedProperties".into(),
            json!([
                {"Name": "UserAgent", "Value": p.user_agent},
                {"Name": "RequestType", "Value": "OAuth2:Authorize"},
                {"Name": "ResultStatusDetail", "Value": detail},
                {"Name": "KeepMeSignedIn", "Value": "False"}
            ]),
        );
        m.insert("ModifiedProperties".into(), json!([]));
        m.insert(
            "Actor".into(),
            json!([{"ID": p.object_id, "Type": 0}, {"ID": p.upn, "Type": 5}]),
        );
        m.insert("ActorContextId".into(), json!(tenant));
        m.insert("ActorIpAddress".into(), json!(p.ip));
        m.insert("InterSystemsId".into(), json!(self.guid()));
        m.insert("IntraSystemId".into(), json!(self.guid()));
        m.insert("SupportTicketId".into(), json!(""));
        m.insert("Target".into(), json!([{"ID": app_id, "Type": 0}]));
        m.insert("TargetContextId".into(), json!(tenant));
        m.insert("ApplicationId".into(), json!(app_id));
        m.insert(
            "DeviceProperties".into(),
            json!([{"Name": "OS", "Value": "Windows 10"}, {"Name": "BrowserType", "Value": "Edge"}]),
        );
        m.insert("ErrorCode".into(), json!(error_code));
        if !ok {
            m.insert("LogonError".into(), json!(detail));
        }
        m
    }

    fn aad_directory(&mut self, t: OffsetDateTime) -> serde_json::Map<String, Value> {
        let actor = self.admin();
        let target = self.person();
        let op = self.pick(&[
            "Add user.",
            "Update user.",
            "Add member to group.",
            "Reset user password.",
            "Consent to application.",
        ]);
        let user_key = format!("{}@{}", actor.puid, self.actors.domain);
        let mut m = self.common(
            t,
            Head {
                operation: op,
                record_type: 8,
                result: Some("Success"),
                user_key: &user_key,
                user_type: 0,
                workload: "AzureActiveDirectory",
            },
        );
        let tenant = self.actors.tenant;
        m.insert("ClientIP".into(), json!(actor.ip));
        m.insert("ObjectId".into(), json!(target.upn));
        m.insert("UserId".into(), json!(actor.upn));
        m.insert("AzureActiveDirectoryEventType".into(), json!(1));
        m.insert(
            "ExtendedProperties".into(),
            json!([
                {"Name": "additionalDetails", "Value": "{}"},
                {"Name": "extendedAuditEventCategory", "Value": "User"}
            ]),
        );
        m.insert(
            "ModifiedProperties".into(),
            json!([{"Name": "AccountEnabled", "NewValue": "[\r\n  true\r\n]", "OldValue": "[]"}]),
        );
        m.insert(
            "Actor".into(),
            json!([{"ID": actor.upn, "Type": 5}, {"ID": format!("User_{}", actor.object_id), "Type": 2}]),
        );
        m.insert("ActorContextId".into(), json!(tenant));
        m.insert("InterSystemsId".into(), json!(self.guid()));
        m.insert("IntraSystemId".into(), json!(self.guid()));
        m.insert("SupportTicketId".into(), json!(""));
        m.insert(
            "Target".into(),
            json!([{"ID": format!("User_{}", target.object_id), "Type": 2}, {"ID": target.upn, "Type": 5}]),
        );
        m.insert("TargetContextId".into(), json!(tenant));
        m
    }

    fn exchange_admin(&mut self, t: OffsetDateTime) -> serde_json::Map<String, Value> {
        let admin = self.admin();
        let target = self.person();
        let op = self.pick(&[
            "Set-Mailbox",
            "New-InboxRule",
            "Add-MailboxPermission",
            "Set-TransportConfig",
            "Set-OrganizationConfig",
        ]);
        let mut m = self.common(
            t,
            Head {
                operation: op,
                record_type: 1,
                result: Some("True"),
                user_key: &admin.puid,
                user_type: 2,
                workload: "Exchange",
            },
        );
        let domain = self.actors.domain.clone();
        m.insert("ClientIP".into(), json!(admin.ip));
        m.insert("ObjectId".into(), json!(target.upn));
        m.insert("UserId".into(), json!(admin.upn));
        m.insert("AppId".into(), json!(""));
        m.insert("ClientAppId".into(), json!(""));
        m.insert("ExternalAccess".into(), json!(false));
        m.insert("OrganizationName".into(), json!(domain));
        m.insert("OriginatingServer".into(), json!(self.server()));
        m.insert(
            "Parameters".into(),
            json!([{"Name": "Identity", "Value": target.upn}, {"Name": "ErrorAction", "Value": "Stop"}]),
        );
        m
    }

    fn exchange_item(&mut self, t: OffsetDateTime) -> serde_json::Map<String, Value> {
        let p = self.person();
        let (op, folder) = self.pick(&[
            ("Send", "\\Sent Items"),
            ("Create", "\\Drafts"),
            ("MoveToDeletedItems", "\\Inbox"),
            ("SoftDelete", "\\Deleted Items"),
            ("Update", "\\Inbox"),
        ]);
        let mut m = self.common(
            t,
            Head {
                operation: op,
                record_type: 2,
                result: Some("Succeeded"),
                user_key: &p.puid,
                user_type: 0,
                workload: "Exchange",
            },
        );
        let domain = self.actors.domain.clone();
        let sid = self.sid(&p);
        let subject = self.pick(SUBJECTS);
        let item_id = self.guid().simple().to_string();
        let message_id = format!("<{}@{}.prod.outlook.com>", self.guid().simple(), domain);
        m.insert("ClientIP".into(), json!(p.ip));
        m.insert("UserId".into(), json!(p.upn));
        m.insert("ClientIPAddress".into(), json!(p.ip));
        m.insert(
            "ClientInfoString".into(),
            json!(format!("Client=OWA;Action=ViaProxy;{}", p.user_agent)),
        );
        m.insert("ExternalAccess".into(), json!(false));
        m.insert("InternalLogonType".into(), json!(0));
        m.insert("LogonType".into(), json!(0));
        m.insert("LogonUserSid".into(), json!(sid));
        m.insert(
            "MailboxGuid".into(),
            json!(Uuid::new_v5(&p.object_id, b"mailbox")),
        );
        m.insert("MailboxOwnerSid".into(), json!(sid));
        m.insert("MailboxOwnerUPN".into(), json!(p.upn));
        m.insert("OrganizationName".into(), json!(domain));
        m.insert(
            "OriginatingServer".into(),
            json!(format!("{}\n", self.server())),
        );
        m.insert("SessionId".into(), json!(self.guid()));
        m.insert(
            "Item".into(),
            json!({
                "Id": format!("RgAAAAD{item_id}AAAJ"),
                "InternetMessageId": message_id,
                "IsRecord": false,
                "ParentFolder": {"Id": format!("LgAAAAD{}AAAB", Uuid::new_v5(&p.object_id, folder.as_bytes()).simple()), "Path": folder},
                "SizeInBytes": self.rng.gen_range(2_000..2_000_000),
                "Subject": subject
            }),
        );
        m
    }

    fn site(&mut self, p: &Person) -> (String, &'static str, bool) {
        let prefix = &self.actors.sharepoint_prefix;
        if self.rng.gen_bool(0.5) {
            let personal = p.upn.replace(['.', '@'], "_");
            (
                format!("https://{prefix}-my.sharepoint.com/personal/{personal}/"),
                "Documents",
                true,
            )
        } else {
            let site = self.pick(SITES);
            (
                format!("https://{prefix}.sharepoint.com/sites/{site}/"),
                "Shared Documents",
                false,
            )
        }
    }

    fn sharepoint_base(
        &mut self,
        t: OffsetDateTime,
        op: &str,
        record_type: u32,
        p: &Person,
    ) -> (serde_json::Map<String, Value>, String, String) {
        let (site_url, library, onedrive) = self.site(p);
        let (name, ext) = self.pick(FILES);
        let file = format!("{name}.{ext}");
        let user_key = format!("i:0h.f|membership|{}@live.com", p.puid.to_ascii_lowercase());
        let workload = if onedrive { "OneDrive" } else { "SharePoint" };
        let mut m = self.common(
            t,
            Head {
                operation: op,
                record_type,
                result: None,
                user_key: &user_key,
                user_type: 0,
                workload,
            },
        );
        let object_id = format!("{site_url}{library}/{file}");
        m.insert("ClientIP".into(), json!(p.ip));
        m.insert("ObjectId".into(), json!(object_id));
        m.insert("UserId".into(), json!(p.upn));
        m.insert("CorrelationId".into(), json!(self.guid()));
        m.insert("EventSource".into(), json!("SharePoint"));
        m.insert("ItemType".into(), json!("File"));
        m.insert(
            "ListId".into(),
            json!(Uuid::new_v5(&self.actors.tenant, site_url.as_bytes())),
        );
        m.insert(
            "ListItemUniqueId".into(),
            json!(Uuid::new_v5(&self.actors.tenant, object_id.as_bytes())),
        );
        m.insert(
            "Site".into(),
            json!(Uuid::new_v5(&Uuid::NAMESPACE_URL, site_url.as_bytes())),
        );
        m.insert("UserAgent".into(), json!(p.user_agent));
        m.insert(
            "WebId".into(),
            json!(Uuid::new_v5(&Uuid::NAMESPACE_OID, site_url.as_bytes())),
        );
        m.insert("SourceFileExtension".into(), json!(ext));
        m.insert("SiteUrl".into(), json!(site_url));
        m.insert("SourceFileName".into(), json!(file));
        m.insert("SourceRelativeUrl".into(), json!(library));
        (m, site_url, object_id)
    }

    fn sharepoint_file(&mut self, t: OffsetDateTime) -> serde_json::Map<String, Value> {
        let p = self.person();
        let op = self.pick(&[
            "FileAccessed",
            "FileModified",
            "FileUploaded",
            "FileDownloaded",
            "FilePreviewed",
            "FileDeleted",
        ]);
        self.sharepoint_base(t, op, 6, &p).0
    }

    fn sharepoint_sharing(&mut self, t: OffsetDateTime) -> serde_json::Map<String, Value> {
        let p = self.person();
        let other = self.person();
        let op = self.pick(&[
            "SharingSet",
            "SharingInvitationCreated",
            "AddedToSecureLink",
        ]);
        let (mut m, _, _) = self.sharepoint_base(t, op, 14, &p);
        m.insert("TargetUserOrGroupName".into(), json!(other.upn));
        m.insert("TargetUserOrGroupType".into(), json!("Member"));
        m.insert(
            "EventData".into(),
            json!("<PermissionsGranted>Contribute</PermissionsGranted>"),
        );
        m.insert("UniqueSharingId".into(), json!(self.guid()));
        m
    }

    fn teams(&mut self, t: OffsetDateTime) -> serde_json::Map<String, Value> {
        let p = self.person();
        let team = self.pick(TEAMS);
        let team_guid = format!(
            "19:{}@thread.skype",
            Uuid::new_v5(&self.actors.tenant, team.as_bytes()).simple()
        );
        let op = self.pick(&[
            "TeamsSessionStarted",
            "MemberAdded",
            "ChannelAdded",
            "TeamCreated",
        ]);
        let user_key = p.object_id.to_string();
        let mut m = self.common(
            t,
            Head {
                operation: op,
                record_type: 25,
                result: None,
                user_key: &user_key,
                user_type: 0,
                workload: "MicrosoftTeams",
            },
        );
        m.insert("ClientIP".into(), json!(p.ip));
        m.insert("UserId".into(), json!(p.upn));
        match op {
            "TeamsSessionStarted" => {
                m.insert(
                    "ExtraProperties".into(),
                    json!([{"Key": "UserAgent", "Value": p.user_agent}]),
                );
            }
            "MemberAdded" => {
                let member = self.person();
                m.insert(
                    "Members".into(),
                    json!([{"DisplayName": member.display_name, "Role": 1, "UPN": member.upn}]),
                );
                m.insert("ItemName".into(), json!(team));
                m.insert("TeamGuid".into(), json!(team_guid));
                m.insert("TeamName".into(), json!(team));
            }
            "ChannelAdded" => {
                let channel = self.pick(&["General", "Announcements", "Design", "Random"]);
                m.insert(
                    "ChannelGuid".into(),
                    json!(format!("19:{}@thread.skype", self.guid().simple())),
                );
                m.insert("ChannelName".into(), json!(channel));
                m.insert("ChannelType".into(), json!("Standard"));
                m.insert("ItemName".into(), json!(channel));
                m.insert("TeamGuid".into(), json!(team_guid));
                m.insert("TeamName".into(), json!(team));
            }
            _ => {
                m.insert(
                    "Members".into(),
                    json!([{"DisplayName": p.display_name, "Role": 1, "UPN": p.upn}]),
                );
                m.insert("ItemName".into(), json!(team));
                m.insert("TeamGuid".into(), json!(team_guid));
                m.insert("TeamName".into(), json!(team));
            }
        }
        m
    }

    fn dlp(&mut self, t: OffsetDateTime) -> serde_json::Map<String, Value> {
        let p = self.person();
        let exchange = self.rng.gen_bool(0.4);
        let (record_type, workload, user_key) = if exchange {
            (13, "Exchange", "DlpPolicyEventBasedAssistantExchange")
        } else {
            (
                11,
                "OneDrive",
                "DlpPolicyEventBasedAssistantOneDriveForBusiness",
            )
        };
        let mut m = self.common(
            t,
            Head {
                operation: "DLPRuleMatch",
                record_type,
                result: None,
                user_key,
                user_type: 4,
                workload,
            },
        );
        let policy = json!([{
            "PolicyId": "a15b4790-085f-43c1-90ad-853b16cedeec",
            "PolicyName": "U.S. Financial Data",
            "Rules": [{
                "RuleId": "7503b92a-67c2-494b-8a46-57ef0d738886",
                "RuleName": "High volume of content detected U.S. Financial",
                "RuleMode": "Enable",
                "Severity": "High",
                "Actions": ["BlockAccess", "NotifyUser", "GenerateIncidentReport"],
                "ActionParameters": ["GenerateIncidentReport:SiteAdmin"],
                "ConditionsMatched": {"SensitiveInformation": [{
                    "Confidence": 85,
                    "Count": self.rng.gen_range(10..50),
                    "SensitiveType": "50842eb7-edc8-4019-85dd-5a5c1f2bb085"
                }]}
            }]
        }]);
        if exchange {
            let to = self.person();
            let message_id = format!(
                "<{}@{}.prod.outlook.com>",
                self.guid().simple(),
                self.actors.domain
            );
            m.insert("ObjectId".into(), json!(message_id));
            m.insert("UserId".into(), json!(p.upn));
            m.insert("IncidentId".into(), json!(self.guid()));
            m.insert("SensitiveInfoDetectionIsIncluded".into(), json!(false));
            m.insert("PolicyDetails".into(), policy);
            m.insert(
                "ExchangeMetaData".into(),
                json!({
                    "MessageID": message_id,
                    "From": p.upn,
                    "To": [to.upn],
                    "CC": [],
                    "BCC": [],
                    "Subject": self.pick(SUBJECTS),
                    "Sent": creation_time(t - Duration::seconds(30)),
                    "RecipientCount": 1
                }),
            );
        } else {
            let (site_url, library, _) = self.site(&p);
            let (name, ext) = self.pick(FILES);
            let file = format!("{name}.{ext}");
            let unique = self.guid();
            m.insert("ObjectId".into(), json!(unique));
            m.insert("UserId".into(), json!(user_key));
            m.insert("IncidentId".into(), json!(self.guid()));
            m.insert("SensitiveInfoDetectionIsIncluded".into(), json!(false));
            m.insert("PolicyDetails".into(), policy);
            m.insert(
                "SharePointMetaData".into(),
                json!({
                    "FileName": file,
                    "FileOwner": p.display_name,
                    "FilePathUrl": format!("{site_url}{library}/{}", file.replace(' ', "%20")),
                    "From": p.upn.to_ascii_uppercase(),
                    "ItemCreationTime": creation_time(t - Duration::minutes(2)),
                    "ItemLastModifiedTime": creation_time(t - Duration::minutes(1)),
                    "SiteCollectionGuid": Uuid::new_v5(&Uuid::NAMESPACE_URL, site_url.as_bytes()),
                    "SiteCollectionUrl": site_url.trim_end_matches('/'),
                    "UniqueID": unique
                }),
            );
        }
        m
    }
}

/// Records' `CreationTime`: UTC without a zone, seconds (`2020-02-17T16:59:44`).
pub fn creation_time(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    t.format(&f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed() -> Feed {
        Feed::new(
            FeedConfig {
                seed: 42,
                interval_seconds: 300,
                records_per_blob: 5,
                shape: Shape::default(),
            },
            Uuid::parse_str("ca62b0eb-5136-43d1-8c4a-815e98e86782").expect("guid"),
            ContentType::General,
        )
    }

    #[test]
    fn timeline_is_strictly_increasing_and_indexable() {
        let f = feed();
        let base = f.index_of(time::macros::datetime!(2030-01-01 00:00 UTC));
        let mut prev = f.created(base - 1);
        for i in base..base + 500 {
            let c = f.created(i);
            assert!(c > prev);
            assert_eq!(f.first_index_at_or_after(c), i);
            assert_eq!(
                f.first_index_at_or_after(c + Duration::nanoseconds(1)),
                i + 1
            );
            assert_eq!(f.index_of(c), i);
            let (ws, we) = f.event_window(i);
            assert!(ws < we && we <= c);
            prev = c;
        }
    }

    #[test]
    fn content_ids_round_trip_and_look_real() {
        let f = feed();
        let i = f.index_of(time::macros::datetime!(2030-01-01 12:00 UTC));
        let id = f.content_id(i);
        let parts: Vec<&str> = id.split('$').collect();
        assert_eq!(parts.len(), 5, "{id}");
        assert_eq!(parts[0].len(), 23);
        assert_eq!(&parts[2..4], ["audit_general", "Audit_General"]);
        let parsed = Feed::parse_content_id(f.cfg, &id).expect("parses");
        assert_eq!(parsed.index, i);
        assert_eq!(parsed.content_type, ContentType::General);
        for bad in [
            "",
            "a$b",
            "x$y$audit_general$Audit_General$na0001",
            &id.replace("Audit_General", "Audit_Nope"),
        ] {
            assert_eq!(
                Feed::parse_content_id(f.cfg, bad),
                Err(MalformedId),
                "{bad}"
            );
        }
    }

    #[test]
    fn records_are_deterministic_with_ids_and_times_in_window() {
        let world = World::default_world().expect("world");
        let tenant = &world.tenants[0];
        let actors = Actors::from_world(&world, tenant);
        for ct in ContentType::ALL {
            let f = Feed::new(feed().cfg, tenant.id, ct);
            let i = f.index_of(time::macros::datetime!(2030-01-01 12:00 UTC));
            let a = f.records(&actors, i);
            assert_eq!(a, f.records(&actors, i));
            assert_eq!(a.len(), 5);
            let (ws, we) = f.event_window(i);
            for r in &a {
                Uuid::parse_str(r["Id"].as_str().expect("Id")).expect("GUID");
                let t = time::PrimitiveDateTime::parse(
                    r["CreationTime"].as_str().expect("CreationTime"),
                    &time::macros::format_description!(
                        "[year]-[month]-[day]T[hour]:[minute]:[second]"
                    ),
                )
                .expect("zone-less seconds")
                .assume_utc();
                assert!(t >= ws && t < we, "{r}");
                assert_eq!(r["OrganizationId"], json!(tenant.id));
            }
            assert_ne!(a, f.records(&actors, i + 1));
        }
    }

    #[test]
    fn shape_knobs_move_times_repeat_records_and_delay_blobs_without_changing_ids() {
        let world = World::default_world().expect("world");
        let tenant = &world.tenants[0];
        let actors = Actors::from_world(&world, tenant);
        let plain = Feed::new(feed().cfg, tenant.id, ContentType::General);
        let mut cfg = feed().cfg;
        cfg.shape = Shape {
            late_percent: 30,
            late_delay_seconds: 3_600,
            out_of_order_percent: 40,
            out_of_order_max_seconds: 86_400,
            duplicate_percent: 30,
        };
        let shaped = Feed::new(cfg, tenant.id, ContentType::General);
        let base = plain.index_of(time::macros::datetime!(2030-01-01 12:00 UTC));
        let ids = |records: &[Value]| -> Vec<String> {
            records
                .iter()
                .map(|r| r["Id"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        let (mut late, mut early_events, mut repeated) = (0, 0, 0);
        for i in base..base + 200 {
            let own = plain.records(&actors, i);
            let served = shaped.records(&actors, i);
            // Its own records are all there, with the same ids (moved times aside).
            let own_ids: std::collections::BTreeSet<String> = ids(&own).into_iter().collect();
            let served_ids = ids(&served);
            assert!(own_ids.iter().all(|id| served_ids.contains(id)));
            repeated += served.len() - own.len();
            let (ws, _) = plain.event_window(i);
            early_events += served
                .iter()
                .filter(|r| own_ids.contains(r["Id"].as_str().unwrap_or_default()))
                .filter(|r| {
                    parse_creation_time(r["CreationTime"].as_str().unwrap_or_default())
                        .is_some_and(|t| t < ws)
                })
                .count();
            if shaped.is_late(i) {
                late += 1;
                assert_eq!(shaped.visible_at(i), shaped.created(i) + Duration::hours(1));
            } else {
                assert_eq!(shaped.visible_at(i), shaped.created(i));
            }
            assert!(!plain.is_late(i));
            assert_eq!(served, shaped.records(&actors, i), "deterministic");
        }
        // Roughly the configured shares of 200 blobs / 1,000 records.
        assert!((30..=90).contains(&late), "{late} late blobs");
        assert!(
            (250..=550).contains(&early_events),
            "{early_events} early events"
        );
        assert!(
            (40..=300).contains(&repeated),
            "{repeated} repeated records"
        );
    }
}
