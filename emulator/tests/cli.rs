//! The `m365-emulator` binary: help, configuration errors that name the key, the ready file,
//! `env`, a world file with a certificate of its own, and graceful shutdown on SIGTERM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_m365-emulator");

fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("M365EMU_CONFIG")
        .env_remove("M365EMU_HTTPS_PORT");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run m365-emulator");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_flag_and_its_environment_variable() {
    let (code, out, _) = run(&["serve", "--help"], &[]);
    assert_eq!(code, 0);
    for flag in [
        "--config",
        "--state-dir",
        "--bind",
        "--https-port",
        "--http-port",
        "--ready-file",
        "--clock-skew-seconds",
        "--token-lifetime-seconds",
        "--issuer-host",
        "--key-seed",
        "--journal-capacity",
        "--auto-sign-in",
        "--fault",
        "--log",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help:\n{out}");
    }
    assert!(
        out.contains("M365EMU_HTTPS_PORT") && out.contains("M365EMU_STATE_DIR"),
        "{out}"
    );
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("serve") && out.contains("env") && out.contains("default-world"));
}

#[test]
fn invalid_values_name_their_key() {
    let (code, _, err) = run(&["--https-port", "abc"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("--https-port"), "{err}");
    let (code, _, err) = run(&["serve"], &[("M365EMU_HTTP_PORT", "70000")]);
    assert_ne!(code, 0);
    assert!(err.contains("--http-port"), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let world = dir.path().join("bad.toml");
    let text = m365_emulator::world::DEFAULT_WORLD_TOML.replace(
        "home_tenant = \"contoso.onmicrosoft.com\"\nmulti_tenant = true",
        "home_tenant = \"nowhere.example.com\"\nmulti_tenant = true",
    );
    std::fs::write(&world, text).expect("write");
    let (code, _, err) = run(
        &[
            "--config",
            world.to_str().expect("utf-8"),
            "--state-dir",
            dir.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("applications[0].home_tenant"), "{err}");
    let (code, _, err) = run(
        &[
            "--token-lifetime-seconds",
            "5",
            "--state-dir",
            dir.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("token_lifetime_seconds"), "{err}");
}

#[test]
fn default_world_prints_the_embedded_toml() {
    let (code, out, _) = run(&["default-world"], &[]);
    assert_eq!(code, 0);
    assert_eq!(out, m365_emulator::world::DEFAULT_WORLD_TOML);
}

fn wait_for(path: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Serves a world with an app whose certificate is given in the file, checks the ready file
/// and `env`, then stops with SIGTERM and checks that the ready files are gone.
#[test]
fn serve_writes_the_ready_file_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A certificate of one's own: the PEM of a certificate generated elsewhere.
    let source = tempfile::tempdir().expect("tempdir");
    let pki = m365_emulator::pki::Pki::load_or_create(
        source.path(),
        m365_emulator::pki::KeySource { seed: Some(9) },
    )
    .expect("pki");
    let own = pki
        .client_certificate(source.path(), "own", "main", "CN=own")
        .expect("certificate");
    let cert_pem = std::fs::read_to_string(&own.certificate_pem_path).expect("pem");
    let world_text = format!(
        "{}\n[[applications]]\nclient_id = \"5b1f7a9e-0c3d-4e59-9a31-2f6f9b0d8c11\"\ndisplay_name = \"Own Cert App\"\nhome_tenant = \"contoso.onmicrosoft.com\"\n\n[[applications.certificates]]\nname = \"own\"\ncertificate_pem = '''\n{cert_pem}'''\n",
        m365_emulator::world::DEFAULT_WORLD_TOML
    );
    let world = dir.path().join("world.toml");
    std::fs::write(&world, world_text).expect("write world");
    let state = dir.path().join("state");
    let extra_ready = dir.path().join("extra-ready.json");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--https-port",
            "0",
            "--http-port",
            "0",
            "--key-seed",
            "5",
        ])
        .arg("--config")
        .arg(&world)
        .arg("--state-dir")
        .arg(&state)
        .arg("--ready-file")
        .arg(&extra_ready)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let ready_path = state.join("ready.json");
    assert!(
        wait_for(&ready_path) && wait_for(&extra_ready),
        "ready files appear"
    );
    let ready: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ready_path).expect("read")).expect("json");
    assert_eq!(
        std::fs::read_to_string(&extra_ready).expect("read"),
        std::fs::read_to_string(&ready_path).expect("read")
    );
    for key in ["https_url", "http_url", "ca_cert_path", "tenants", "acs"] {
        assert!(ready.get(key).is_some(), "ready file has {key}");
    }
    let contoso = &ready["tenants"][0];
    let own_app = contoso["applications"]
        .as_array()
        .expect("apps")
        .iter()
        .find(|a| a["client_id"] == "5b1f7a9e-0c3d-4e59-9a31-2f6f9b0d8c11")
        .expect("the world file's app is listed");
    assert_eq!(
        own_app["thumbprint_sha1"],
        own.info.sha1_hex(),
        "the brought certificate's thumbprint"
    );
    assert_eq!(
        own_app["certificate_path"],
        serde_json::Value::Null,
        "no key files for a brought certificate"
    );
    let collector = &contoso["applications"][0];
    for key in [
        "client_id",
        "client_secret",
        "certificate_path",
        "certificate_pem_path",
        "private_key_pem_path",
        "thumbprint_sha1",
        "thumbprint_sha256",
    ] {
        assert!(
            collector.get(key).is_some_and(|v| !v.is_null()),
            "application has {key}"
        );
    }
    let pem = std::fs::read_to_string(collector["certificate_path"].as_str().expect("path"))
        .expect("combined pem");
    assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("BEGIN PRIVATE KEY"));

    // The brought certificate authenticates its app: an RS256 assertion signed with its key.
    let key_pem = std::fs::read_to_string(&own.private_key_pem_path).expect("key");
    let der = m365_emulator::pki::first_pem_block(&key_pem, "PRIVATE KEY").expect("pkcs8");
    let key = m365_emulator::jose::RsaSigningKey::from_pkcs8_der(&der).expect("rsa key");
    let https = ready["https_url"].as_str().expect("https_url").to_string();
    let aud = format!("{https}/contoso.onmicrosoft.com/oauth2/v2.0/token");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let client_id = "5b1f7a9e-0c3d-4e59-9a31-2f6f9b0d8c11";
    let assertion = key
        .sign_jwt(
            m365_emulator::jose::JwsAlg::RS256,
            &serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": own.info.x5t()}),
            &serde_json::json!({"aud": aud, "iss": client_id, "sub": client_id, "jti": "1", "iat": now, "exp": now + 600}),
        )
        .expect("sign");
    let ca = std::fs::read(ready["ca_cert_path"].as_str().expect("ca")).expect("ca pem");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let status = rt.block_on(async {
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")])
            .no_proxy()
            .build()
            .expect("client");
        client
            .post(&aud)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .expect("token request")
            .status()
            .as_u16()
    });
    assert_eq!(
        status, 200,
        "an assertion signed by the world file's certificate is accepted"
    );

    let (code, out, err) = run(
        &["env", "--ready-file", extra_ready.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    for var in [
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_AUTHORITY_HOST",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "COMMUNICATION_SERVICES_CONNECTION_STRING",
    ] {
        assert!(
            out.contains(&format!("export {var}='")),
            "{var} missing:\n{out}"
        );
    }

    // SIGTERM: a clean shutdown removes both ready files.
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the emulator did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "clean exit: {exit:?}");
    assert!(
        !ready_path.exists() && !extra_ready.exists(),
        "ready files removed on shutdown"
    );
    let (code, _, err) = run(
        &["env", "--ready-file", extra_ready.to_str().expect("utf-8")],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("no running emulator"), "{err}");
}
