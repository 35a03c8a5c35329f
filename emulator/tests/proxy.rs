//! Proxy mode over real sockets: unmodified clients with the real Microsoft host names (MSAL
//! Python with its default authority, a `requests` Management API client), refusals of every
//! other target, the leaf certificates (checked with openssl), IMDS over a plain-HTTP proxy
//! request, discovery documents and faults keyed on the real host, and `env --proxy`.
//!
//! Nothing here reaches the network: every client's only route out is the emulator's proxy,
//! which never forwards anything, and refusals are asserted, not tried against real hosts.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use m365_emulator::{Emulator, World};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::python::{test_python, Script};
use support::{
    get_json, post_form, secret_form_v2, start_with, COLLECTOR, COLLECTOR_SECRET, CONTOSO,
    HTTP_TIMEOUT, TEAMS_PHONE,
};

const LOGIN: &str = "login.microsoftonline.com";
const MANAGE_HOST: &str = "manage.office.com";

async fn start_proxied(world: Option<World>) -> Emulator {
    let mut builder = Emulator::builder().key_seed(42).proxy_port(0);
    if let Some(world) = world {
        builder = builder.world(world);
    }
    start_with(builder).await
}

fn proxy_url(emulator: &Emulator) -> &str {
    emulator
        .proxy_uri()
        .expect("started with proxy_port: the ready info has proxy_url")
}

/// A client whose only route is the emulator's proxy (HTTPS and HTTP), trusting only its CA.
fn proxied_client(emulator: &Emulator) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).expect("CA PEM");
    let proxy = reqwest::Proxy::all(proxy_url(emulator)).expect("proxy URL");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .proxy(proxy)
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("reqwest client")
}

/// Sends `head` (a request without body) to the proxy and returns the raw response text.
async fn raw_exchange(emulator: &Emulator, head: &str) -> String {
    let addr = emulator.proxy_addr().expect("proxy address");
    let mut stream = tokio::time::timeout(HTTP_TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect to the proxy");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    // The proxy answers and, for `Connection: close`, ends the connection.
    tokio::time::timeout(HTTP_TIMEOUT, stream.read_to_end(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

async fn journal(emulator: &Emulator, query: &str) -> Vec<Value> {
    let url = format!("{}/_emulator/journal?{query}", emulator.uri());
    let (status, _, body) = get_json(&reqwest::Client::new(), &url).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().expect("journal is an array").clone()
}

#[tokio::test]
async fn unmodified_msal_and_management_clients_use_the_real_host_names() {
    let Some(py) = test_python() else { return };
    let mut world = World::default_world().expect("world");
    world.server.management.page_size = Some(3);
    let emulator = start_proxied(Some(world)).await;
    // Frozen on a blob boundary (blobs are created every 300 s of Unix time), a little ahead
    // of real time so that MSAL's client assertions (real time) are already valid.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let boundary = (now / 300 + 1) * 300;
    emulator.clock().freeze();
    emulator
        .clock()
        .set(time::OffsetDateTime::from_unix_timestamp(boundary).expect("a valid time"));
    let contoso = emulator
        .ready()
        .tenants
        .iter()
        .find(|t| t.id == CONTOSO)
        .expect("Contoso");
    let app = contoso
        .applications
        .iter()
        .find(|a| a.client_id == COLLECTOR)
        .expect("the collector");
    let proxy = proxy_url(&emulator).to_string();
    let loopback = "localhost,127.0.0.1,::1";
    let run = Script::new(&py, "proxy_clients.py")
        // Only the proxy and the CA: no authority, no base URL, nothing emulator-specific.
        .env("HTTPS_PROXY", &proxy)
        .env("https_proxy", &proxy)
        .env("HTTP_PROXY", &proxy)
        .env("http_proxy", &proxy)
        .env("NO_PROXY", loopback)
        .env("no_proxy", loopback)
        .env(
            "REQUESTS_CA_BUNDLE",
            emulator.ca_path().display().to_string(),
        )
        // Inputs of the script: credentials, and the control plane for the clock.
        .env("M365EMU_HTTP_URL", emulator.uri())
        .env("M365EMU_TENANT_ID", &contoso.id)
        .env("M365EMU_CLIENT_ID", &app.client_id)
        .env("M365EMU_CLIENT_SECRET", COLLECTOR_SECRET)
        .env(
            "M365EMU_KEY_PEM_PATH",
            app.private_key_pem_path
                .as_ref()
                .expect("key file")
                .display()
                .to_string(),
        )
        .env(
            "M365EMU_THUMBPRINT_SHA1",
            app.thumbprint_sha1.as_deref().expect("thumbprint"),
        )
        // 40 minutes: 8 blobs (one per 300 s), three pages of three.
        .env("M365EMU_ADVANCE_SECONDS", "2400")
        .run_ok()
        .await;

    for case in ["msal_secret", "msal_certificate"] {
        let c = run.case(case);
        assert_eq!(c["ok"], true, "{c}");
        assert_eq!(
            c["token_endpoint"],
            format!("https://{LOGIN}/{CONTOSO}/oauth2/v2.0/token")
        );
    }
    let drain = run.case("management_drain");
    assert_eq!(drain["ok"], true, "{drain}");
    assert_eq!(drain["blobs"], 8, "{drain}");
    assert_eq!(drain["pages"], 3, "{drain}");
    let next = drain["next_page_uris"].as_array().expect("next page URIs");
    assert_eq!(next.len(), 2);
    for uri in next {
        let uri = uri.as_str().expect("string");
        assert!(
            uri.starts_with(&format!(
                "https://{MANAGE_HOST}/api/v1.0/{CONTOSO}/activity/feed/subscriptions/content?"
            )),
            "{uri}"
        );
    }

    // The journal: every service request arrived on a real host name, through the tunnel.
    let all = journal(&emulator, "").await;
    let services: Vec<&Value> = all.iter().filter(|e| e["service"] != "admin").collect();
    assert!(!services.is_empty());
    for e in &services {
        let host = e["host"].as_str().expect("host");
        match e["service"].as_str() {
            Some("entra") => assert_eq!(host, LOGIN, "{e}"),
            Some("management") => assert_eq!(host, MANAGE_HOST, "{e}"),
            _ => panic!("unexpected request (nothing else may be tried): {e}"),
        }
        assert!(e["status"].as_u64().is_some_and(|s| s < 400), "{e}");
    }
    let tokens = journal(&emulator, &format!("operation=entra.token&host={LOGIN}")).await;
    assert_eq!(tokens.len(), 3, "one token per case");
    let certificate = tokens
        .iter()
        .find(|e| !e["assertion"].is_null())
        .expect("the certificate case sent an assertion");
    assert_eq!(
        certificate["assertion"]["claims"]["aud"],
        format!("https://{LOGIN}/{CONTOSO}/oauth2/v2.0/token"),
        "MSAL aimed its assertion at the real token endpoint"
    );
    let blobs = journal(
        &emulator,
        &format!("host={MANAGE_HOST}&operation=management.content.get"),
    )
    .await;
    assert_eq!(blobs.len(), 8);
}

#[tokio::test]
async fn connect_to_any_other_target_is_refused_and_journaled() {
    let emulator = start_proxied(None).await;
    for (target, named) in [
        ("example.com:443", "example.com"),
        (
            "login.microsoftonline.com.evil.test:443",
            "login.microsoftonline.com.evil.test",
        ),
        ("127.0.0.1:443", "127.0.0.1"),
        ("graph.microsoft.com:80", "graph.microsoft.com:80"),
    ] {
        let answer = raw_exchange(
            &emulator,
            &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{target}: {answer}");
        assert!(
            answer.contains(named),
            "{target}: the message names the host: {answer}"
        );
        assert!(answer.contains("never connects to the network") || target.ends_with(":80"));
    }
    // Plain-HTTP proxy requests: only IMDS is served.
    let answer = raw_exchange(
        &emulator,
        "GET http://example.com/index.html HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("example.com"), "{answer}");

    let refused = journal(&emulator, "service=proxy").await;
    assert_eq!(refused.len(), 5, "{refused:?}");
    for e in &refused {
        assert_eq!(e["status"], 403);
        assert_eq!(e["error_code"], "HostNotServed");
    }
    assert_eq!(refused[0]["method"], "CONNECT");
    assert_eq!(refused[0]["operation"], "proxy.connect");
    assert_eq!(refused[0]["host"], "example.com:443");
    assert_eq!(refused[4]["operation"], "proxy.forward");
    assert_eq!(refused[4]["path"], "/index.html");
    let by_host = journal(&emulator, "host=example.com").await;
    assert_eq!(by_host.len(), 2, "the CONNECT and the plain request");
}

/// Opens a tunnel to `host` and returns the leaf certificate the proxy presented (DER).
async fn leaf_through_tunnel(emulator: &Emulator, host: &str) -> Vec<u8> {
    let addr = emulator.proxy_addr().expect("proxy address");
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    stream
        .write_all(format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").as_bytes())
        .await
        .expect("write CONNECT");
    // Read the answer's head byte by byte so that no TLS byte is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(HTTP_TIMEOUT, stream.read(&mut byte))
            .await
            .expect("CONNECT answered in time")
            .expect("read");
        assert_eq!(n, 1, "the proxy closed the connection: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let mut roots = rustls::RootCertStore::empty();
    let ca = m365_emulator::pki::first_pem_block(emulator.ca_pem(), "CERTIFICATE").expect("CA");
    roots.add(ca.into()).expect("CA into the root store");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from(host.to_string()).expect("server name");
    let tls = tokio::time::timeout(HTTP_TIMEOUT, connector.connect(name, stream))
        .await
        .expect("handshake in time")
        .expect("the leaf verifies against the emulator's CA for this host name");
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .expect("a leaf certificate")
        .to_vec()
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (install it to run this test)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write_pem(dir: &Path, name: &str, der: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, m365_emulator::pki::pem_encode("CERTIFICATE", der)).expect("write PEM");
    path.display().to_string()
}

#[tokio::test]
async fn leaf_certificates_verify_with_openssl_carry_the_host_and_are_reused() {
    let emulator = start_proxied(None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = emulator.ca_path().display().to_string();

    let login_first = leaf_through_tunnel(&emulator, LOGIN).await;
    let login_again = leaf_through_tunnel(&emulator, LOGIN).await;
    let manage = leaf_through_tunnel(&emulator, MANAGE_HOST).await;
    let acs = leaf_through_tunnel(&emulator, "contoso-acs.communication.azure.com").await;
    let sha256 = |der: &[u8]| m365_emulator::jose::sha256(der);
    assert_eq!(
        sha256(&login_first),
        sha256(&login_again),
        "the same leaf for every tunnel to a host"
    );
    assert_ne!(sha256(&login_first), sha256(&manage));

    for (host, der) in [
        (LOGIN, &login_first),
        (MANAGE_HOST, &manage),
        ("contoso-acs.communication.azure.com", &acs),
    ] {
        let leaf = write_pem(dir.path(), &format!("{host}.pem"), der);
        let (ok, text) = openssl(&["verify", "-CAfile", &ca, "-verify_hostname", host, &leaf]);
        assert!(ok, "{host}: {text}");
        assert!(text.contains(": OK"), "{text}");
        let (ok, text) = openssl(&["x509", "-in", &leaf, "-noout", "-ext", "subjectAltName"]);
        assert!(ok, "{text}");
        assert!(text.contains(&format!("DNS:{host}")), "{host}: {text}");
        assert_eq!(text.matches("DNS:").count(), 1, "only {host}: {text}");
    }
    // A leaf is good for its own host only.
    let leaf = write_pem(dir.path(), "login-again.pem", &login_again);
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        &ca,
        "-verify_hostname",
        MANAGE_HOST,
        &leaf,
    ]);
    assert!(
        !ok,
        "the login leaf must not verify for {MANAGE_HOST}: {text}"
    );
}

#[tokio::test]
async fn discovery_documents_through_the_proxy_name_the_real_host() {
    let emulator = start_proxied(None).await;
    let c = proxied_client(&emulator);
    let (status, _, v2) = get_json(
        &c,
        &format!("https://{LOGIN}/{CONTOSO}/v2.0/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(status, 200, "{v2}");
    insta::assert_json_snapshot!("proxied_openid_configuration_v2", v2);
    let (status, _, v1) = get_json(
        &c,
        &format!("https://login.windows.net/{CONTOSO}/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(status, 200, "{v1}");
    assert_eq!(
        v1["token_endpoint"],
        format!("https://login.windows.net/{CONTOSO}/oauth2/token")
    );
    assert_eq!(v1["issuer"], format!("https://sts.windows.net/{CONTOSO}/"));
    let (status, _, instance) = get_json(
        &c,
        &format!(
            "https://{LOGIN}/common/discovery/instance?api-version=1.1&authorization_endpoint=https://{LOGIN}/{CONTOSO}/oauth2/v2.0/authorize"
        ),
    )
    .await;
    assert_eq!(status, 200, "{instance}");
    insta::assert_json_snapshot!("proxied_instance_discovery", instance);

    // A token through the proxy, then the same through the direct listener: the journal tells
    // them apart by host.
    let (status, _, body) = post_form(
        &c,
        &format!("https://{LOGIN}/{CONTOSO}/oauth2/v2.0/token"),
        &secret_form_v2(COLLECTOR, COLLECTOR_SECRET),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = post_form(
        &support::client(&emulator),
        &support::token_url_v2(&emulator, CONTOSO),
        &secret_form_v2(COLLECTOR, COLLECTOR_SECRET),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let tokens = journal(&emulator, "operation=entra.token").await;
    let hosts: Vec<&str> = tokens.iter().filter_map(|e| e["host"].as_str()).collect();
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[0], LOGIN);
    assert!(hosts[1].starts_with("127.0.0.1:"), "{hosts:?}");
}

#[tokio::test]
async fn faults_match_on_the_real_host() {
    let emulator = start_proxied(None).await;
    let _fault = emulator
        .add_fault(json!({"match": {"host": "LOGIN.microsoftonline.*"}, "action": {"error": "AADSTS700027"}}))
        .expect("a host matcher is a valid rule");
    let form = secret_form_v2(COLLECTOR, COLLECTOR_SECRET);
    let (status, _, body) = post_form(
        &proxied_client(&emulator),
        &format!("https://{LOGIN}/{CONTOSO}/oauth2/v2.0/token"),
        &form,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with("AADSTS700027")),
        "{body}"
    );
    // The same request on another host name (the direct listener) is not faulted.
    let (status, _, body) = post_form(
        &support::client(&emulator),
        &support::token_url_v2(&emulator, CONTOSO),
        &form,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let faulted = journal(&emulator, &format!("host={LOGIN}")).await;
    assert_eq!(faulted.len(), 1);
    assert!(faulted[0]["fault"].as_str().is_some(), "{}", faulted[0]);
}

#[tokio::test]
async fn imds_is_served_to_plain_http_proxy_requests() {
    let emulator = start_proxied(None).await;
    let c = proxied_client(&emulator);
    let resp = c
        .get("http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://communication.azure.com")
        .header("Metadata", "true")
        .send()
        .await
        .expect("IMDS through the proxy");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].as_str().is_some(), "{body}");
    assert_eq!(body["expires_in"], "3599");
    let entries = journal(&emulator, "host=169.254.169.254").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["service"], "entra", "{}", entries[0]);
}

#[tokio::test]
async fn the_ca_is_downloadable_and_the_proxy_serves_the_emulator_in_origin_form() {
    let emulator = start_proxied(None).await;
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("client");
    for base in [emulator.uri(), proxy_url(&emulator)] {
        let resp = plain
            .get(format!("{base}/_emulator/ca.pem"))
            .send()
            .await
            .expect("GET ca.pem");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/x-pem-file")
        );
        assert_eq!(resp.text().await.expect("body"), emulator.ca_pem());
    }
    // Without proxy_port there is no proxy.
    let direct = start_with(Emulator::builder().key_seed(42)).await;
    assert!(direct.proxy_uri().is_none());
    assert!(direct.ready().proxy_url.is_none());
}

#[tokio::test]
async fn env_proxy_prints_the_proxy_and_trust_variables() {
    let emulator = start_proxied(None).await;
    let ready = emulator.state_dir().join("ready.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_m365-emulator"))
        .args(["env", "--proxy", "--ready-file"])
        .arg(&ready)
        .env_remove("M365EMU_READY_FILE")
        .output()
        .expect("run m365-emulator env --proxy");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    let proxy = proxy_url(&emulator);
    let ca = emulator.ca_path().display().to_string();
    for line in [
        format!("export HTTPS_PROXY='{proxy}'"),
        format!("export HTTP_PROXY='{proxy}'"),
        "export NO_PROXY='localhost,127.0.0.1,::1'".to_string(),
        format!("export REQUESTS_CA_BUNDLE='{ca}'"),
        format!("export SSL_CERT_FILE='{ca}'"),
        format!("export NODE_EXTRA_CA_CERTS='{ca}'"),
        "export NODE_USE_ENV_PROXY='1'".to_string(),
        format!("export AZURE_TENANT_ID='{CONTOSO}'"),
        "export COMMUNICATION_SERVICES_CONNECTION_STRING='endpoint=https://contoso-acs.communication.azure.com/;accesskey=".to_string(),
    ] {
        assert!(text.contains(&line), "missing {line}:\n{text}");
    }
    assert!(text.contains("# Node.js"), "{text}");
    assert!(!text.contains("AZURE_AUTHORITY_HOST"), "{text}");

    // An emulator without its proxy: a clear error.
    let direct = start_with(Emulator::builder().key_seed(42)).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_m365-emulator"))
        .args(["env", "--proxy", "--ready-file"])
        .arg(direct.state_dir().join("ready.json"))
        .env_remove("M365EMU_READY_FILE")
        .output()
        .expect("run m365-emulator env --proxy");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--proxy-port"), "{err}");
}

#[tokio::test]
async fn tunnels_close_with_the_emulator() {
    let emulator = start_proxied(None).await;
    let c = proxied_client(&emulator);
    let resp = c
        .get(format!("https://{LOGIN}/{CONTOSO}/discovery/v2.0/keys"))
        .send()
        .await
        .expect("keys through the tunnel");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.version(),
        reqwest::Version::HTTP_2,
        "HTTP/2 negotiated by ALPN inside the tunnel"
    );
    let addr = emulator.proxy_addr().expect("proxy address");
    tokio::time::timeout(Duration::from_secs(15), emulator.shutdown())
        .await
        .expect("shutdown drains tunnels in time");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the proxy port is closed"
    );
}

#[tokio::test]
async fn the_binary_starts_its_proxy_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_m365-emulator"))
        .args([
            "serve",
            "--https-port",
            "0",
            "--http-port",
            "0",
            "--key-seed",
            "42",
        ])
        .arg("--state-dir")
        .arg(&state)
        .env("M365EMU_PROXY_PORT", "0")
        .env_remove("M365EMU_READY_FILE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn m365-emulator");
    let ready_path = state.join("ready.json");
    let ready: Value = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if let Ok(text) = tokio::fs::read_to_string(&ready_path).await {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    return v;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the ready file appears");
    let proxy = ready["proxy_url"]
        .as_str()
        .expect("proxy_url in the ready file");
    let addr = proxy.strip_prefix("http://").expect("an http:// URL");
    let mut stream = TcpStream::connect(addr).await.expect("the proxy listens");
    stream
        .write_all(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(HTTP_TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("example.org"), "{answer}");
    child.kill().await.expect("stop the emulator");
}

#[tokio::test]
async fn graph_and_acs_are_served_on_their_real_hosts_through_the_proxy() {
    use base64::Engine;
    let emulator = start_proxied(None).await;
    let http = proxied_client(&emulator);

    // Graph: an app token from login.microsoftonline.com, then a user by UPN.
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", TEAMS_PHONE),
        ("client_secret", "teams-phone-secret~0123456789abcdefghij"),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let r = http
        .post(format!("https://{LOGIN}/{CONTOSO}/oauth2/v2.0/token"))
        .form(&form)
        .send()
        .await
        .expect("token through the proxy");
    assert_eq!(r.status(), 200);
    let token: Value = r.json().await.expect("json");
    let token = token["access_token"].as_str().expect("token").to_string();
    let r = http
        .get("https://graph.microsoft.com/v1.0/users/adele@contoso.onmicrosoft.com")
        .bearer_auth(&token)
        .send()
        .await
        .expect("Graph through the proxy");
    assert_eq!(r.status(), 200);
    let user: Value = r.json().await.expect("json");
    assert_eq!(user["userPrincipalName"], "adele@contoso.onmicrosoft.com");
    let r = http
        .get("https://graph.microsoft.com/v1.0/users/adele@contoso.onmicrosoft.com")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 401, "no token: Graph's 401");

    // ACS: the resource chosen by its host, an HMAC signature over that host.
    let acs = &emulator.core().initial_directory().world.acs[0];
    let key = base64::engine::general_purpose::STANDARD
        .decode(&acs.primary_key)
        .expect("base64 key");
    let target = "/identities?api-version=2023-10-01";
    let body = b"{}";
    let signed = m365_emulator::acs::hmac::sign_request(
        &key,
        "POST",
        target,
        &acs.host,
        emulator.clock().now(),
        body,
    );
    let r = http
        .post(format!("https://{}{target}", acs.host))
        .header("x-ms-date", signed.x_ms_date)
        .header("x-ms-content-sha256", signed.x_ms_content_sha256)
        .header("authorization", signed.authorization)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("ACS through the proxy");
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.expect("json");
    assert!(created["identity"]["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("8:acs:")));

    let hosts: Vec<String> = journal(&emulator, "limit=100")
        .await
        .iter()
        .filter_map(|e| e["host"].as_str().map(str::to_string))
        .collect();
    assert!(
        hosts.iter().any(|h| h.starts_with("graph.microsoft.com")),
        "{hosts:?}"
    );
    assert!(hosts.iter().any(|h| h.starts_with(&acs.host)), "{hosts:?}");
}
