//! Azure Communication Services: how the client signs its requests (HMAC-SHA256 over the exact
//! request target, body hash and a fresh `x-ms-date`), authenticates with Entra, and reads
//! the answers of the Identity and Teams Phone extensibility assignment APIs.
//!
//! The journal records every request's headers except the secret ones, so `x-ms-date` and
//! `x-ms-content-sha256` are evidence as sent; the signature itself is redacted, and whether
//! it verified shows as the status (401 `Denied`).

use anyhow::{Context, Result};
use m365_reference_client::acs::{content_hash, AcsClient, ConnectionString};
use reqwest::Method;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::{bounded_attempts, gaps, time_of, waits_before_each_retry};
use crate::runner::{ClientRun, Cred, Ctx};
use crate::scenario;
use crate::scenario::{summarize, Check, Scenario};
use crate::target::{COLLECTOR, TENANT};

/// Adele Vance, a Teams user of the default world's Contoso tenant.
const ADELE: &str = "61927486-f404-463f-b72a-7aa7c4ad5433";
/// The Teams phone app of the default world (a client id an assignment may name).
const TEAMS_CLIENT: &str = "81a839dc-b25b-4552-bb03-aa9fa33cc6a0";
const TPE_API_VERSION: &str = "2025-06-30";

pub fn scenarios() -> Vec<Scenario> {
    vec![
        scenario!("ACS-HMAC-001", "acs", "acs-request", "Signs a JSON body: x-ms-content-sha256 is the SHA-256 of the exact bytes sent", "https://learn.microsoft.com/azure/communication-services/tutorials/hmac-header-tutorial", signs_json_body, mutants: [("--hash-empty", "accepted"), ("--hash-empty", "reports the status"), ("", "x-ms-content-sha256 is"), ("", "byte for byte")]),
        scenario!("ACS-HMAC-002", "acs", "acs-request", "Signs the path and query exactly as sent (spaces, +, %2F)", "../shared/reference/acs-graph.md §2.2", signs_raw_query, mutants: [("", "accepted"), ("--sign-path-only", "accepted"), ("", "reports the status"), ("--reencode-query", "exactly as given")]),
        scenario!("ACS-DATE-001", "acs", "acs-assignments", "Signs every attempt afresh with the current time in x-ms-date (RFC 1123)", "https://learn.microsoft.com/azure/communication-services/tutorials/hmac-header-tutorial", fresh_date_on_retry, mutants: [("", "completes after the 503"), ("--iso-date", "RFC 1123"), ("--sign-once", "signed when it is sent")]),
        scenario!("ACS-AUTH-001", "acs", "acs-assignments", "Reports a 401 Denied from a bad signature, without retrying", "../shared/reference/acs-graph.md §2.2", bad_signature_reported, mutants: [("", "non-zero exit"), ("--raise", "reports the error code Denied"), ("--hot-retry --raise", "401 is not retried")]),
        scenario!("ACS-DATE-002", "acs", "acs-assignments", "Reports Denied when its clock is 10 minutes off the service's, without retrying", "../shared/reference/acs-graph.md §2.2", skewed_clock_reported, mutants: [("", "non-zero exit"), ("--raise", "reports the error code Denied"), ("--hot-retry --raise", "401 is not retried")]),
        scenario!("ACS-ENTRA-001", "acs", "acs-identity", "Calls ACS with an Entra token for https://communication.azure.com", "https://learn.microsoft.com/azure/communication-services/concepts/authentication", entra_bearer, mutants: [("--bad-scope", "reports the identity"), ("--hmac-always", "Entra token"), ("", "one token request")]),
        scenario!("ACS-ENTRA-002", "acs", "acs-assignments", "Reports 403 Forbidden when its application holds no role on the resource, without retrying", "https://learn.microsoft.com/azure/communication-services/concepts/authentication", forbidden_reported, mutants: [("", "non-zero exit"), ("--raise", "reports the error code Forbidden"), ("--hot-retry --raise", "403 is not retried")]),
        scenario!("ACS-ID-001", "acs", "acs-identity", "Creates a user and issues it a token with the requested lifetime", "https://learn.microsoft.com/rest/api/communication/communication-identity/issue-access-token", identity_and_token, mutants: [("--sign-path-only", "reports the identity"), ("", "expiresOn")]),
        scenario!("ACS-ASSIGN-001", "acs", "acs-assignments", "Tells a created assignment (PUT 201) from a replaced one (PUT 200)", "../shared/reference/acs-graph.md §1.2", created_vs_replaced, mutants: [("--sign-path-only", "reports created"), ("", "reports replaced"), ("--sign-path-only", "stored assignment")]),
        scenario!("ACS-ASSIGN-002", "acs", "acs-assignments", "Understands a 404 after delete as absent, not as an error", "../shared/reference/acs-graph.md §1.2", absent_after_delete, mutants: [("--sign-path-only", "reports deleted"), ("", "reports absent"), ("--hot-retry", "404 is not retried")]),
        scenario!("ACS-RETRY-001", "acs", "acs-assignments", "Honours Retry-After on a 429 from ACS", "https://learn.microsoft.com/azure/communication-services/concepts/service-limits#throttling-patterns-and-architecture", honours_retry_after, mutants: [("--hash-empty", "completes after the 429"), ("", "Retry-After")]),
        scenario!("ACS-RETRY-002", "acs", "acs-assignments", "Retries a 503 from ACS with a bounded backoff, then reports it", "https://learn.microsoft.com/azure/communication-services/concepts/service-limits#throttling-patterns-and-architecture", gives_up_on_persistent_503, mutants: [("", "retries the 503"), ("--hot-retry --raise", "waits before each retry"), ("--hot-retry --raise", "at most 6"), ("", "reports ServiceUnavailable")]),
    ]
}

/// Journal entries of the ACS data plane (every `acs.*` operation), oldest first.
fn acs_entries(journal: &[Value]) -> Vec<&Value> {
    journal
        .iter()
        .filter(|e| e["service"] == "acs" && e["operation"] != "admin")
        .collect()
}

/// A journal entry with the signing headers it carried.
fn evidence(entries: &[&Value]) -> Vec<String> {
    entries
        .iter()
        .take(8)
        .map(|e| {
            let h = &e["headers"];
            format!(
                "{}; x-ms-date {}; x-ms-content-sha256 {}",
                summarize(e),
                h["x-ms-date"],
                h["x-ms-content-sha256"]
            )
        })
        .collect()
}

fn output(run: &ClientRun) -> Vec<String> {
    run.lines.iter().map(|l| format!("output: {l}")).collect()
}

/// `x-ms-date` as RFC 1123 in GMT (`Sat, 21 Nov 2026 23:36:09 GMT`), `None` otherwise.
fn parse_rfc1123(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    PrimitiveDateTime::parse(text, &format)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

fn header<'e>(entry: &'e Value, name: &str) -> &'e str {
    entry["headers"][name].as_str().unwrap_or_default()
}

fn assignment_path(object: &str) -> String {
    format!(
        "/access/teamsExtension/tenants/{TENANT}/assignments/{object}?api-version={TPE_API_VERSION}"
    )
}

/// The contract's variables for an `acs-assignments` run.
fn assignment_env(action: &str, client_ids: &str) -> Vec<(&'static str, String)> {
    vec![
        ("M365_ACS_TENANT_ID", TENANT.to_string()),
        ("M365_ACS_OBJECT_ID", ADELE.to_string()),
        ("M365_ACS_ACTION", action.to_string()),
        ("M365_ACS_PRINCIPAL_TYPE", "user".to_string()),
        ("M365_ACS_CLIENT_IDS", client_ids.to_string()),
    ]
}

/// The `result` of an `acs-assignments` run that exited 0.
fn result_of(run: &ClientRun) -> Option<&str> {
    if !run.succeeded() {
        return None;
    }
    run.lines
        .iter()
        .rev()
        .find(|l| l["assignment"] == ADELE)
        .and_then(|l| l["result"].as_str())
}

/// The reference library's ACS client with the resource's connection string (setup and
/// ground truth).
fn setup_client(ctx: &Ctx<'_>) -> Result<AcsClient<'static>> {
    let acs = ctx
        .target
        .ready
        .acs
        .first()
        .context("the emulator's world has no ACS resource")?;
    let conn = ConnectionString::parse(&acs.connection_string)?;
    Ok(AcsClient::with_connection_string(
        ctx.target.http.clone(),
        &conn,
    ))
}

/// Every stored assignment (`GET /_emulator/acs/assignments`).
async fn stored_assignments(ctx: &Ctx<'_>) -> Result<Vec<Value>> {
    let v = ctx
        .target
        .admin(Method::GET, "acs/assignments", None)
        .await?;
    Ok(v["value"].as_array().cloned().unwrap_or_default())
}

/// "The signed request is accepted": some ACS request succeeded and none was refused 401.
fn accepted(entries: &[&Value]) -> Check {
    let denied = entries.iter().filter(|e| e["status"] == 401).count();
    let ok = entries.iter().any(|e| {
        e["status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s))
    });
    Check::new(
        "the signed request is accepted (2xx, no 401 Denied)",
        ok && denied == 0,
        format!("{} ACS requests, {denied} refused 401", entries.len()),
    )
    .with_evidence(evidence(entries))
}

/// "The client reports the status the service answered" (the last ACS answer).
fn reports_status(run: &ClientRun, entries: &[&Value]) -> Check {
    let answered = entries.last().map(|e| e["status"].clone());
    let reported = run
        .lines
        .iter()
        .rev()
        .find_map(|l| l.get("status").cloned());
    Check::new(
        "the client reports the status the service answered, and exits 0",
        run.succeeded() && answered.is_some() && reported == answered,
        format!(
            "reported {}, the service's last answer {}; {}",
            reported.unwrap_or(Value::Null),
            answered.unwrap_or(Value::Null),
            run.describe()
        ),
    )
    .with_evidence(output(run))
}

/// "The client fails (non-zero exit) instead of pretending."
fn fails_loudly(run: &ClientRun) -> Check {
    Check::new(
        "the client fails (non-zero exit) instead of pretending",
        !run.succeeded() && run.exit_code.is_some(),
        run.describe(),
    )
    .with_evidence(output(run))
}

async fn signs_json_body(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    // Spacing no serialiser reproduces: a client that re-encodes the JSON sends other bytes.
    let body = format!(r#"{{"principalType": "user",  "clientIds": [ "{TEAMS_CLIENT}" ]}}"#);
    let run = ctx
        .run_client(
            "acs-request",
            Cred::Secret,
            &[
                ("M365_ACS_METHOD", "PUT".into()),
                ("M365_ACS_PATH", assignment_path(ADELE)),
                ("M365_ACS_BODY", body.clone()),
            ],
        )
        .await?;
    let journal = ctx.journal().await?;
    let entries = acs_entries(&journal);
    let want_hash = content_hash(body.as_bytes());
    let wrong_hash: Vec<&Value> = entries
        .iter()
        .copied()
        .filter(|e| header(e, "x-ms-content-sha256") != want_hash)
        .collect();
    let wrong_size: Vec<&Value> = entries
        .iter()
        .copied()
        .filter(|e| e["body_size"].as_u64() != Some(body.len() as u64))
        .collect();
    Ok(vec![
        accepted(&entries),
        Check::new(
            "x-ms-content-sha256 is base64(SHA-256) of the exact body bytes given",
            !entries.is_empty() && wrong_hash.is_empty(),
            format!(
                "{} of {} requests carry another hash than {want_hash}",
                wrong_hash.len(),
                entries.len()
            ),
        )
        .with_evidence(evidence(&wrong_hash)),
        Check::new(
            "the body is sent byte for byte as given",
            !entries.is_empty() && wrong_size.is_empty(),
            format!(
                "{} of {} requests carry a body of another size than {} bytes",
                wrong_size.len(),
                entries.len(),
                body.len()
            ),
        )
        .with_evidence(
            wrong_size
                .iter()
                .map(|e| format!("{}; body_size {}", summarize(e), e["body_size"])),
        ),
        reports_status(&run, &entries),
    ])
}

async fn signs_raw_query(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let target = "/identities?api-version=2023-10-01&note=a%20b&plus=c+d&slash=e%2Ff";
    let run = ctx
        .run_client(
            "acs-request",
            Cred::Secret,
            &[
                ("M365_ACS_METHOD", "POST".into()),
                ("M365_ACS_PATH", target.into()),
            ],
        )
        .await?;
    let journal = ctx.journal().await?;
    let entries = acs_entries(&journal);
    let sent = |e: &Value| {
        format!(
            "{}{}",
            e["path"].as_str().unwrap_or_default(),
            e["query"]
                .as_str()
                .map(|q| format!("?{q}"))
                .unwrap_or_default()
        )
    };
    let altered: Vec<String> = entries
        .iter()
        .map(|e| sent(e))
        .filter(|s| s != target)
        .collect();
    Ok(vec![
        accepted(&entries),
        Check::new(
            "the path and query arrive exactly as given (no re-encoding)",
            !entries.is_empty() && altered.is_empty(),
            format!(
                "{} of {} requests arrived as something else than {target}",
                altered.len(),
                entries.len()
            ),
        )
        .with_evidence(altered.into_iter().map(|s| format!("arrived as {s}"))),
        reports_status(&run, &entries),
    ])
}

/// The Retry-After of the fault in ACS-DATE-001: long enough that a replayed date is
/// unmistakable (its lag exceeds FRESH_SECONDS), short enough to keep the scenario quick.
const DATE_RETRY_AFTER: f64 = 3.0;
/// How far behind its arrival an `x-ms-date` may be: the date has one-second resolution, and
/// signing, connecting and sending take a moment.
const FRESH_SECONDS: f64 = 2.5;

async fn fresh_date_on_retry(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    ctx.target
        .add_fault(json!({"match": {"operation": "acs.assignments"}, "action": {"error": "ServiceUnavailable", "headers": {"Retry-After": DATE_RETRY_AFTER.to_string()}}, "schedule": {"first": 1}}))
        .await?;
    let run = ctx
        .run_client(
            "acs-assignments",
            Cred::Secret,
            &assignment_env("ensure", TEAMS_CLIENT),
        )
        .await?;
    let journal = ctx.journal().await?;
    let entries = acs_entries(&journal);
    let not_rfc1123: Vec<&Value> = entries
        .iter()
        .copied()
        .filter(|e| parse_rfc1123(header(e, "x-ms-date")).is_none())
        .collect();
    // Lag: arrival (journal time, the emulator's clock) minus the signed date.
    let lags: Vec<(f64, &Value)> = entries
        .iter()
        .filter_map(|e| {
            let date = parse_rfc1123(header(e, "x-ms-date"))?;
            Some((time_of(e) - date.unix_timestamp() as f64, *e))
        })
        .collect();
    let stale: Vec<&Value> = lags
        .iter()
        .filter(|(lag, _)| !(-1.0..FRESH_SECONDS).contains(lag))
        .map(|(_, e)| *e)
        .collect();
    let lag_text: Vec<String> = lags.iter().map(|(l, _)| format!("{l:.2}")).collect();
    Ok(vec![
        Check::new(
            "the client completes after the 503 (result created)",
            result_of(&run) == Some("created"),
            run.describe(),
        )
        .with_evidence(output(&run)),
        Check::new(
            "every x-ms-date is an RFC 1123 date in GMT",
            !entries.is_empty() && not_rfc1123.is_empty(),
            format!(
                "{} of {} requests carry another x-ms-date",
                not_rfc1123.len(),
                entries.len()
            ),
        )
        .with_evidence(evidence(&not_rfc1123)),
        Check::new(
            "each attempt is signed when it is sent (x-ms-date at most 2.5 s before its arrival)",
            entries.len() >= 2 && lags.len() == entries.len() && stale.is_empty(),
            format!(
                "{} requests; arrival minus x-ms-date: [{}] s",
                entries.len(),
                lag_text.join(", ")
            ),
        )
        .with_evidence(evidence(&entries)),
    ])
}

async fn bad_signature_reported(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let acs = ctx
        .target
        .ready
        .acs
        .first()
        .context("the emulator's world has no ACS resource")?;
    // A well-formed connection string with a key the resource does not have.
    let wrong = format!(
        "endpoint={};accesskey=d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmc=",
        acs.endpoint
    );
    let mut extra = assignment_env("get", "");
    extra.push(("ACS_CONNECTION_STRING", wrong));
    let run = ctx
        .run_client("acs-assignments", Cred::Secret, &extra)
        .await?;
    let journal = ctx.journal().await?;
    let entries = acs_entries(&journal);
    Ok(final_error_checks(
        &run,
        &entries,
        401,
        "Denied",
        "a new attempt with the same key cannot succeed",
    ))
}

/// A final 4xx from ACS: the client fails, reports `code`, and sends no second request.
fn final_error_checks(
    run: &ClientRun,
    entries: &[&Value],
    status: u16,
    code: &str,
    why: &str,
) -> Vec<Check> {
    let reported = run.reported_error().unwrap_or_default();
    vec![
        fails_loudly(run),
        Check::new(
            format!("the client reports the error code {code}"),
            reported == code,
            format!("reported error {reported:?}"),
        )
        .with_evidence(output(run)),
        Check::new(
            format!("the {status} is not retried ({why})"),
            entries.len() == 1 && entries[0]["status"] == status,
            format!("{} ACS requests", entries.len()),
        )
        .with_evidence(evidence(entries)),
    ]
}

/// How far the emulator's clock is moved ahead in ACS-DATE-002 (twice the 5-minute window).
const CLOCK_AHEAD_SECONDS: i64 = 600;

async fn skewed_clock_reported(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    ctx.target
        .admin(
            Method::POST,
            "clock",
            Some(json!({"advance_seconds": CLOCK_AHEAD_SECONDS})),
        )
        .await?;
    let run = ctx
        .run_client("acs-assignments", Cred::Secret, &assignment_env("get", ""))
        .await?;
    let journal = ctx.journal().await?;
    let entries = acs_entries(&journal);
    Ok(final_error_checks(
        &run,
        &entries,
        401,
        "Denied",
        "the clocks stay apart",
    ))
}

async fn forbidden_reported(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    // No Communication.Manage grant: the token is good, the caller is not allowed.
    let mut extra = assignment_env("get", "");
    extra.push(("M365_ACS_AUTH", "entra".into()));
    let run = ctx
        .run_client("acs-assignments", Cred::Secret, &extra)
        .await?;
    let journal = ctx.journal().await?;
    let entries = acs_entries(&journal);
    Ok(final_error_checks(
        &run,
        &entries,
        403,
        "Forbidden",
        "the role is missing, not the token",
    ))
}

async fn entra_bearer(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    // Azure RBAC stand-in: the collector may manage the resource.
    ctx.target
        .admin(
            Method::POST,
            &format!("tenants/{TENANT}/consents"),
            Some(json!({"client_id": COLLECTOR, "app_role_grants": {"https://communication.azure.com": ["Communication.Manage"]}})),
        )
        .await?;
    let run = ctx
        .run_client(
            "acs-identity",
            Cred::Secret,
            &[("M365_ACS_AUTH", "entra".into())],
        )
        .await?;
    let journal = ctx.journal().await?;
    let entries = acs_entries(&journal);
    let tokens: Vec<&Value> = super::of_operation(&journal, "entra.token")
        .into_iter()
        .filter(|e| e["status"] == 200)
        .collect();
    let reported = run
        .lines
        .iter()
        .find_map(|l| l["identity"].as_str().map(str::to_string));
    let identities = ctx
        .target
        .admin(Method::GET, "acs/identities", None)
        .await?;
    let known = reported.as_deref().is_some_and(|id| {
        identities["value"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["id"] == id)
    });
    let not_bearer: Vec<&Value> = entries
        .iter()
        .copied()
        .filter(|e| e["client_id"] != COLLECTOR)
        .collect();
    Ok(vec![
        Check::new(
            "the client reports the identity it created",
            run.succeeded() && known,
            format!("reported {reported:?}; {}", run.describe()),
        )
        .with_evidence(output(&run)),
        Check::new(
            "every ACS request carries the application's Entra token (the journal names its appid)",
            !entries.is_empty() && not_bearer.is_empty(),
            format!(
                "{} of {} ACS requests were not authenticated as {COLLECTOR}",
                not_bearer.len(),
                entries.len()
            ),
        )
        .with_evidence(evidence(&entries)),
        Check::new(
            "one token request serves every ACS call of the run (cache)",
            tokens.len() == 1,
            format!(
                "{} successful token requests for {} ACS requests",
                tokens.len(),
                entries.len()
            ),
        )
        .with_evidence(tokens.iter().map(|e| summarize(e))),
    ])
}

/// The lifetime ACS-ID-001 asks for (the default is 24 hours).
const LIFETIME_MINUTES: i64 = 90;

async fn identity_and_token(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let started = OffsetDateTime::now_utc();
    let run = ctx
        .run_client(
            "acs-identity",
            Cred::Secret,
            &[
                ("M365_ACS_SCOPES", "chat,voip".into()),
                ("M365_ACS_EXPIRES_MINUTES", LIFETIME_MINUTES.to_string()),
            ],
        )
        .await?;
    let journal = ctx.journal().await?;
    let entries = acs_entries(&journal);
    let line = run.lines.iter().find(|l| l["identity"].is_string());
    let reported = line
        .and_then(|l| l["identity"].as_str())
        .unwrap_or_default();
    let identities = ctx
        .target
        .admin(Method::GET, "acs/identities", None)
        .await?;
    let stored = identities["value"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["id"] == reported);
    let issued = stored.is_some_and(|i| !i["lastTokenIssuedAt"].is_null());
    let expires = line
        .and_then(|l| l["expiresOn"].as_str())
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    let want = started + time::Duration::minutes(LIFETIME_MINUTES);
    let off = expires.map(|e| (e - want).whole_seconds());
    Ok(vec![
        Check::new(
            "the client reports the identity the service created and issued a token to",
            run.succeeded() && issued,
            format!(
                "reported {reported:?}; stored: {}",
                stored.map_or("no such identity".into(), Value::to_string)
            ),
        )
        .with_evidence(output(&run).into_iter().chain(evidence(&entries))),
        Check::new(
            "expiresOn is the requested lifetime (90 minutes from now)",
            off.is_some_and(|s| s.abs() <= 120),
            match off {
                Some(s) => format!("expiresOn is {s} s away from now + {LIFETIME_MINUTES} min"),
                None => "no expiresOn in RFC 3339 reported".into(),
            },
        )
        .with_evidence(output(&run)),
    ])
}

async fn created_vs_replaced(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    let first = ctx
        .run_client(
            "acs-assignments",
            Cred::Secret,
            &assignment_env("ensure", TEAMS_CLIENT),
        )
        .await?;
    let both = format!("{TEAMS_CLIENT},{COLLECTOR}");
    let second = ctx
        .run_client(
            "acs-assignments",
            Cred::Secret,
            &assignment_env("ensure", &both),
        )
        .await?;
    let journal = ctx.journal().await?;
    let entries = acs_entries(&journal);
    let puts: Vec<&Value> = entries
        .iter()
        .copied()
        .filter(|e| e["method"] == "PUT")
        .collect();
    let stored = stored_assignments(ctx).await?;
    let adele = stored.iter().find(|a| a["objectId"] == ADELE);
    let want_ids = json!([TEAMS_CLIENT, COLLECTOR]);
    let right = adele.is_some_and(|a| {
        a["tenantId"] == TENANT && a["principalType"] == "user" && a["clientIds"] == want_ids
    });
    Ok(vec![
        Check::new(
            "the first ensure reports created (PUT answered 201)",
            result_of(&first) == Some("created"),
            first.describe(),
        )
        .with_evidence(output(&first).into_iter().chain(evidence(&puts))),
        Check::new(
            "the second ensure reports replaced (PUT answered 200)",
            result_of(&second) == Some("replaced"),
            second.describe(),
        )
        .with_evidence(output(&second).into_iter().chain(evidence(&puts))),
        Check::new(
            "the stored assignment is what the second ensure asked for (principal type, client ids)",
            right,
            format!(
                "stored: {}",
                adele.map_or("no assignment".into(), Value::to_string)
            ),
        ),
    ])
}

async fn absent_after_delete(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    setup_client(ctx)?
        .put_assignment(TENANT, ADELE, "user", &[TEAMS_CLIENT.to_string()])
        .await?;
    let delete = ctx
        .run_client(
            "acs-assignments",
            Cred::Secret,
            &assignment_env("delete", ""),
        )
        .await?;
    let gone = !stored_assignments(ctx)
        .await?
        .iter()
        .any(|a| a["objectId"] == ADELE);
    let journal_before_get = ctx.journal().await?.len();
    let get = ctx
        .run_client("acs-assignments", Cred::Secret, &assignment_env("get", ""))
        .await?;
    let journal = ctx.journal().await?;
    let entries = acs_entries(&journal);
    let gets: Vec<&Value> = acs_entries(journal.get(journal_before_get..).unwrap_or_default())
        .into_iter()
        .filter(|e| e["method"] == "GET")
        .collect();
    Ok(vec![
        Check::new(
            "the delete reports deleted and the assignment is gone",
            result_of(&delete) == Some("deleted") && gone,
            format!("{}; assignment gone: {gone}", delete.describe()),
        )
        .with_evidence(output(&delete).into_iter().chain(evidence(&entries))),
        Check::new(
            "a get after the delete reports absent and exits 0 (the 404 is an answer)",
            result_of(&get) == Some("absent"),
            get.describe(),
        )
        .with_evidence(output(&get)),
        Check::new(
            "the 404 is not retried",
            gets.len() == 1,
            format!("{} GET requests", gets.len()),
        )
        .with_evidence(evidence(&gets)),
    ])
}

async fn honours_retry_after(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    ctx.target
        .add_fault(json!({"match": {"operation": "acs.assignments"}, "action": {"error": "TooManyRequests", "headers": {"Retry-After": "2"}}, "schedule": {"first": 1}}))
        .await?;
    let run = ctx
        .run_client(
            "acs-assignments",
            Cred::Secret,
            &assignment_env("ensure", TEAMS_CLIENT),
        )
        .await?;
    let journal = ctx.journal().await?;
    let entries = acs_entries(&journal);
    let mut checks = vec![Check::new(
        "the client completes after the 429 (result created)",
        result_of(&run) == Some("created"),
        run.describe(),
    )
    .with_evidence(output(&run))];
    checks.push(match (entries.first(), entries.get(1)) {
        (Some(a), Some(b)) => {
            let waited = time_of(b) - time_of(a);
            Check::new(
                "no request before Retry-After (2 s) has passed",
                waited >= 1.95,
                format!("retried after {waited:.2} s"),
            )
            .with_evidence(evidence(&entries))
        }
        _ => Check::new(
            "no request before Retry-After (2 s) has passed",
            false,
            format!("{} ACS requests: no retry after the 429", entries.len()),
        )
        .with_evidence(evidence(&entries)),
    });
    Ok(checks)
}

async fn gives_up_on_persistent_503(ctx: &Ctx<'_>) -> Result<Vec<Check>> {
    ctx.target
        .add_fault(json!({"match": {"operation": "acs.assignments"}, "action": {"error": "ServiceUnavailable"}}))
        .await?;
    let run = ctx
        .run_client(
            "acs-assignments",
            Cred::Secret,
            &assignment_env("ensure", TEAMS_CLIENT),
        )
        .await?;
    let journal = ctx.journal().await?;
    let entries = acs_entries(&journal);
    let waits = gaps(&entries);
    let reported = run.reported_error().unwrap_or_default();
    Ok(vec![
        Check::new(
            "the client retries the 503 (more than one attempt)",
            entries.len() >= 2,
            format!("{} ACS requests", entries.len()),
        )
        .with_evidence(evidence(&entries)),
        waits_before_each_retry(&waits, evidence(&entries)),
        bounded_attempts(entries.len(), Vec::new()),
        Check::new(
            "the client then fails (non-zero exit) and reports ServiceUnavailable",
            !run.succeeded() && run.exit_code.is_some() && reported == "ServiceUnavailable",
            format!("reported error {reported:?}; {}", run.describe()),
        )
        .with_evidence(output(&run)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_ms_date_is_rfc_1123_in_gmt_only() {
        let t = parse_rfc1123("Sat, 21 Nov 2026 23:36:09 GMT").expect("RFC 1123");
        assert_eq!(t.unix_timestamp(), 1_795_304_169);
        assert!(parse_rfc1123("2026-11-21T23:36:09Z").is_none());
        assert!(parse_rfc1123("Sat, 21 Nov 2026 23:36:09 +0000").is_none());
        assert!(parse_rfc1123("").is_none());
    }
}
