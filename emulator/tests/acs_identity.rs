//! Azure Communication Services: the Identity API (create, issue, revoke, delete), the
//! Teams-user and Teams Phone extensibility token exchanges, and the unmodified Python SDK
//! (tests/clients/acs_identity.py; run with `scripts/test.sh --test acs_identity`).

mod support;

use m365_emulator::Emulator;
use reqwest::Method;
use serde_json::{json, Value};

use support::acs::*;
use support::python::{test_python, Script};
use support::{client, start, start_with, CONTOSO, TEAMS_PHONE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_api_create_issue_revoke_delete() {
    let em = start().await;
    let acs = Acs::new(&em);
    for version in ["2023-10-01", "2025-06-30"] {
        let (s, _, plain) = acs
            .hmac(
                &em,
                Method::POST,
                &format!("/identities?api-version={version}"),
                &Value::Null,
            )
            .await;
        assert_eq!(s, 201, "{plain}");
        assert_eq!(plain.as_object().map(|o| o.len()), Some(1), "{plain}");
        let id = plain["identity"]["id"].as_str().expect("id");
        assert!(id.starts_with(&format!("8:acs:{RESOURCE_ID}_")), "{id}");
    }
    let (s, _, created) = acs
        .hmac(
            &em,
            Method::POST,
            "/identities?api-version=2023-10-01",
            &json!({"createTokenWithScopes": ["chat", "voip"], "expiresInMinutes": 60}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["identity"]["id"].as_str().expect("id").to_string();
    let token = created["accessToken"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let claims = verify_acs_token(&acs, &token).await;
    assert_eq!(claims["skypeid"], id.trim_start_matches("8:"));
    insta::assert_json_snapshot!("identity_token_claims", redact_acs_claims(claims.clone()));
    let expires_on = created["accessToken"]["expiresOn"]
        .as_str()
        .expect("expiresOn");
    let parsed =
        time::OffsetDateTime::parse(expires_on, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
    assert_eq!(
        parsed.unix_timestamp(),
        claims["exp"].as_i64().expect("exp")
    );
    assert!(expires_on.ends_with(".0000000+00:00"), "{expires_on}");
    let mut shape = created.clone();
    shape["identity"]["id"] = json!("[id]");
    shape["accessToken"]["token"] = json!("[token]");
    shape["accessToken"]["expiresOn"] = json!("[expiresOn]");
    insta::assert_json_snapshot!("identity_created_with_token", shape);

    // Issue: the percent-encoded id, as the SDKs send it.
    let enc = id.replace(':', "%3A");
    let issue = format!("/identities/{enc}/:issueAccessToken?api-version=2023-10-01");
    let (s, _, issued) = acs
        .hmac(&em, Method::POST, &issue, &json!({"scopes": ["voip"]}))
        .await;
    assert_eq!(s, 200, "{issued}");
    assert_eq!(issued.as_object().map(|o| o.len()), Some(2), "{issued}");
    let voip = issued["token"].as_str().expect("token").to_string();
    let c = verify_acs_token(&acs, &voip).await;
    assert_eq!(
        (
            c["acsScope"].clone(),
            c["exp"].as_i64().unwrap_or(0) - c["iat"].as_i64().unwrap_or(0)
        ),
        (json!("voip"), 86400)
    );
    assert_eq!(introspect(&acs, &voip).await["active"], true);
    let (s, _, got) = acs
        .hmac(
            &em,
            Method::GET,
            &format!("/identities/{enc}?api-version=2025-03-02-preview"),
            &Value::Null,
        )
        .await;
    assert_eq!((s, got["id"].as_str()), (200, Some(id.as_str())), "{got}");

    // Revoke: earlier tokens stop working, new ones work.
    let (s, _, b) = acs
        .hmac(
            &em,
            Method::POST,
            &format!("/identities/{enc}/:revokeAccessTokens?api-version=2023-10-01"),
            &Value::Null,
        )
        .await;
    assert_eq!((s, b), (204, Value::Null));
    for t in [&token, &voip] {
        assert_eq!(
            introspect(&acs, t).await,
            json!({"active": false, "reason": "revoked"})
        );
    }
    let (_, _, again) = acs
        .hmac(
            &em,
            Method::POST,
            &issue,
            &json!({"scopes": ["chat.join"], "expiresInMinutes": 1440}),
        )
        .await;
    let fresh = again["token"].as_str().expect("token").to_string();
    assert_eq!(introspect(&acs, &fresh).await["active"], true);

    // Expiry on the emulator's clock.
    em.clock().advance(time::Duration::hours(25));
    assert_eq!(
        introspect(&acs, &fresh).await,
        json!({"active": false, "reason": "expired"})
    );

    // Delete, then the identity is gone.
    let (s, _, _) = acs
        .hmac(
            &em,
            Method::DELETE,
            &format!("/identities/{enc}?api-version=2023-10-01"),
            &Value::Null,
        )
        .await;
    assert_eq!(s, 204);
    let answer = acs
        .hmac(&em, Method::POST, &issue, &json!({"scopes": ["chat"]}))
        .await;
    let gone = acs_error(&answer, 404, "NotFound")
        .to_string()
        .replace(&id, "[id]");
    insta::assert_json_snapshot!(
        "error_identity_deleted",
        serde_json::from_str::<Value>(&gone).expect("JSON")
    );
    em.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_phone_extensibility_exchange_needs_the_assignment() {
    let em = start().await;
    // The Entra token and the exchange at the same instant: exact lifetimes in snapshots.
    em.clock().freeze();
    let acs = Acs::new(&em);
    let http = client(&em);
    let exchange = format!("/access/teamsExtension/:exchangeAccessToken?api-version={TPE}");
    let entra = adele_token(
        &http,
        &em,
        "https://auth.msft.communication.azure.com/TeamsExtension.ManageCalls",
    )
    .await;
    let c = claims_of(&entra);
    assert_eq!(
        (c["oid"].as_str(), c["appid"].as_str()),
        (Some(ADELE_OID), Some(TEAMS_CLIENT)),
        "{c}"
    );

    let answer = acs
        .bearer(Method::POST, &exchange, &json!({}), &entra)
        .await;
    insta::assert_json_snapshot!(
        "error_tpe_no_assignment",
        acs_error(&answer, 403, "Forbidden")
    );

    // The server assigns Adele for the Teams client (HMAC).
    let path = assignment_path(CONTOSO, ADELE_OID);
    let (s, _, _) = acs
        .hmac(
            &em,
            Method::PUT,
            &path,
            &json!({"principalType": "user", "clientIds": [TEAMS_CLIENT]}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _, ok) = acs
        .bearer(Method::POST, &exchange, &json!({}), &entra)
        .await;
    assert_eq!(s, 200, "{ok}");
    let identity = format!("8:acs:{RESOURCE_ID}_{CONTOSO}_{ADELE_OID}");
    assert_eq!(ok["identity"]["id"], identity.as_str());
    let token = ok["accessToken"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let claims = verify_acs_token(&acs, &token).await;
    assert_eq!(
        claims["exp"], c["exp"],
        "the ACS token ends with the Entra token"
    );
    insta::assert_json_snapshot!("tpe_token_claims", redact_acs_claims(claims));
    assert_eq!(introspect(&acs, &token).await["active"], true);

    // Deleting the assignment revokes the token and refuses the next exchange.
    let (s, _, _) = acs.hmac(&em, Method::DELETE, &path, &Value::Null).await;
    assert_eq!(s, 204);
    assert_eq!(
        introspect(&acs, &token).await,
        json!({"active": false, "reason": "revoked"})
    );
    acs_error(
        &acs.bearer(Method::POST, &exchange, &json!({}), &entra)
            .await,
        403,
        "Forbidden",
    );

    // An assignment for another client does not help; a token without the scope is refused;
    // HMAC is not how this exchange authenticates.
    let (s, _, _) = acs
        .hmac(
            &em,
            Method::PUT,
            &path,
            &json!({"principalType": "user", "clientIds": [TEAMS_PHONE]}),
        )
        .await;
    assert_eq!(s, 201);
    acs_error(
        &acs.bearer(Method::POST, &exchange, &json!({}), &entra)
            .await,
        403,
        "Forbidden",
    );
    let no_scope = adele_token(
        &http,
        &em,
        "https://auth.msft.communication.azure.com/Teams.ManageCalls",
    )
    .await;
    let answer = acs
        .bearer(Method::POST, &exchange, &json!({}), &no_scope)
        .await;
    insta::assert_json_snapshot!(
        "error_tpe_missing_scope",
        acs_error(&answer, 403, "Forbidden")
    );
    let answer = acs.hmac(&em, Method::POST, &exchange, &json!({})).await;
    insta::assert_json_snapshot!("error_tpe_hmac", acs_error(&answer, 401, "Denied"));
    em.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_user_exchange_checks_the_entra_token() {
    let em = start().await;
    // The Entra token and the exchange at the same instant: exact lifetimes in snapshots.
    em.clock().freeze();
    let acs = Acs::new(&em);
    let http = client(&em);
    let path = "/teamsUser/:exchangeAccessToken?api-version=2023-10-01";
    let both = adele_token(
        &http,
        &em,
        "https://auth.msft.communication.azure.com/Teams.ManageCalls https://auth.msft.communication.azure.com/Teams.ManageChats",
    )
    .await;
    let (s, _, ok) = acs
        .hmac(
            &em,
            Method::POST,
            path,
            &json!({"token": both, "appId": TEAMS_CLIENT, "userId": ADELE_OID}),
        )
        .await;
    assert_eq!(s, 200, "{ok}");
    let claims = verify_acs_token(&acs, ok["token"].as_str().expect("token")).await;
    assert_eq!(claims["exp"], claims_of(&both)["exp"]);
    insta::assert_json_snapshot!("teams_user_token_claims", redact_acs_claims(claims));

    let calls_only = adele_token(
        &http,
        &em,
        "https://auth.msft.communication.azure.com/Teams.ManageCalls",
    )
    .await;
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "empty_token",
            json!({"token": "", "appId": TEAMS_CLIENT, "userId": ADELE_OID}),
            401,
            "Denied",
        ),
        (
            "invalid_token",
            json!({"token": "abc.def.ghi", "appId": TEAMS_CLIENT, "userId": ADELE_OID}),
            401,
            "Denied",
        ),
        (
            "missing_scope",
            json!({"token": calls_only, "appId": TEAMS_CLIENT, "userId": ADELE_OID}),
            401,
            "Denied",
        ),
        (
            "wrong_app_id",
            json!({"token": both, "appId": TEAMS_PHONE, "userId": ADELE_OID}),
            400,
            "ValidationError",
        ),
        (
            "empty_app_id",
            json!({"token": both, "appId": "", "userId": ADELE_OID}),
            400,
            "ValidationError",
        ),
        (
            "wrong_user_id",
            json!({"token": both, "appId": TEAMS_CLIENT, "userId": MEGAN_OID}),
            400,
            "ValidationError",
        ),
        (
            "missing_user_id",
            json!({"token": both, "appId": TEAMS_CLIENT}),
            400,
            "ValidationError",
        ),
    ];
    for (name, body, status, code) in cases {
        let answer = acs.hmac(&em, Method::POST, path, &body).await;
        insta::assert_json_snapshot!(
            format!("error_teams_user_{name}"),
            acs_error(&answer, status, code)
        );
    }
    em.clock().advance(time::Duration::hours(2));
    let answer = acs
        .hmac(
            &em,
            Method::POST,
            path,
            &json!({"token": both, "appId": TEAMS_CLIENT, "userId": ADELE_OID}),
        )
        .await;
    let v = acs_error(&answer, 401, "Denied");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{v}"
    );
    em.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_identity_and_teams_user_exchange() {
    let Some(py) = test_python() else {
        return;
    };
    let em = start_with(Emulator::builder().key_seed(42).auto_sign_in(true)).await;
    let run = Script::new(&py, "acs_identity.py")
        .trust_ca(&em.ca_path())
        .env(
            "M365EMU_ACS_CONNECTION_STRING",
            &em.ready().acs[0].connection_string,
        )
        .env("M365EMU_HTTPS_URL", em.https_uri())
        .env("M365EMU_TENANT_ID", CONTOSO)
        .env("M365EMU_CLIENT_ID", TEAMS_CLIENT)
        .env("M365EMU_USERNAME", ADELE)
        .run_ok()
        .await;
    println!("{}", run.stdout.trim_end());
    for name in ["hmac", "teams_user"] {
        let case = run.case(name);
        assert_eq!(case["ok"], true, "{case}");
    }
    assert_eq!(
        run.case("hmac")["checks"].as_object().map(|c| c.len()),
        Some(18),
        "{}",
        run.case("hmac")
    );
    // The SDK's requests, as the journal saw them.
    let ops: Vec<String> = em
        .journal()
        .query(&Default::default())
        .iter()
        .map(|e| format!("{} {}", e.operation, e.status))
        .collect();
    for want in [
        "acs.identities.create 201",
        "acs.identities.token 200",
        "acs.identities.token 204",
        "acs.identities.item 204",
        "acs.teams_user.exchange 200",
        "acs.teams_user.exchange 400",
    ] {
        assert!(ops.iter().any(|o| o == want), "{want} missing from {ops:?}");
    }
    em.shutdown().await;
}
