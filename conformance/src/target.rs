//! The emulator a run talks to: started in-process on free ports (the default), or a running
//! one named by `--emulator URL` (credentials from its ready file). Everything goes through
//! its HTTP control plane, so both work the same way.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use m365_emulator::ready::{ReadyApplication, ReadyInfo, ReadyTenant};
use m365_emulator::Emulator;
use serde_json::Value;

pub struct Target {
    pub ready: ReadyInfo,
    pub http: reqwest::Client,
    /// Keeps an in-process emulator alive.
    emulator: Option<Emulator>,
}

/// The tenant and application scenarios run as: Contoso's audit collector in the default
/// world (secret and certificate).
pub const TENANT: &str = "ca62b0eb-5136-43d1-8c4a-815e98e86782";
pub const COLLECTOR: &str = "b78eacce-6d2d-401c-8e4f-c3fa7b1760ac";

fn client_for(ca_pem: &[u8]) -> Result<reqwest::Client> {
    let certs = reqwest::Certificate::from_pem_bundle(ca_pem).context("emulator CA")?;
    Ok(reqwest::Client::builder()
        .tls_certs_only(certs)
        .no_proxy()
        .timeout(std::time::Duration::from_secs(60))
        .build()?)
}

impl Target {
    pub async fn in_process() -> Result<Target> {
        let emulator = Emulator::builder()
            .start()
            .await
            .map_err(|e| anyhow!("cannot start the emulator: {e}"))?;
        let ready = emulator.ready().clone();
        let http = client_for(emulator.ca_pem().as_bytes())?;
        Ok(Target {
            ready,
            http,
            emulator: Some(emulator),
        })
    }

    pub async fn remote(url: &str, ready_file: &PathBuf) -> Result<Target> {
        let text = std::fs::read_to_string(ready_file)
            .with_context(|| format!("reading the ready file {}", ready_file.display()))?;
        let mut ready: ReadyInfo = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a ready file", ready_file.display()))?;
        let ca = std::fs::read(&ready.ca_cert_path)
            .with_context(|| format!("reading {}", ready.ca_cert_path.display()))?;
        if url.starts_with("https://") {
            ready.https_url = url.trim_end_matches('/').to_string();
        }
        let target = Target {
            ready,
            http: client_for(&ca)?,
            emulator: None,
        };
        let health = target
            .http
            .get(format!("{}/_emulator/health", target.base()))
            .send()
            .await;
        if !health.is_ok_and(|r| r.status().is_success()) {
            return Err(anyhow!("no emulator answers at {}", target.base()));
        }
        Ok(target)
    }

    /// A TLS server configuration (HTTP/1.1) for `127.0.0.1` whose certificate the emulator
    /// trusts: issued by its CA. Only an in-process emulator has one (a running emulator keeps
    /// its CA key to itself).
    pub fn loopback_tls(&self) -> Result<std::sync::Arc<tokio_rustls::rustls::ServerConfig>> {
        let emulator = self.emulator.as_ref().ok_or_else(|| {
            anyhow!("needs the in-process emulator (its CA issues the webhook's certificate)")
        })?;
        let tls = emulator
            .core()
            .pki
            .tls_server_config(&["127.0.0.1".to_string()])
            .map_err(|e| anyhow!("a certificate for the webhook: {e}"))?;
        let mut cfg = (*tls).clone();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(std::sync::Arc::new(cfg))
    }

    pub fn base(&self) -> &str {
        &self.ready.https_url
    }

    pub fn ca_path(&self) -> &PathBuf {
        &self.ready.ca_cert_path
    }

    pub fn tenant(&self) -> Result<&ReadyTenant> {
        self.ready
            .tenants
            .iter()
            .find(|t| t.id == TENANT)
            .ok_or_else(|| {
                anyhow!("the emulator's world has no tenant {TENANT} (the default world is needed)")
            })
    }

    pub fn collector(&self) -> Result<&ReadyApplication> {
        self.tenant()?
            .applications
            .iter()
            .find(|a| a.client_id == COLLECTOR)
            .ok_or_else(|| anyhow!("the default world's audit collector {COLLECTOR} is missing"))
    }

    /// Any control-plane call: `/_emulator/{path}` with an optional JSON body; the answer's
    /// JSON (`null` when empty). A non-2xx answer is an error naming the route.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}/_emulator/{path}", self.base()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("/_emulator/{path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(anyhow!("/_emulator/{path} answered {status}: {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn reset(&self) -> Result<()> {
        self.admin(reqwest::Method::POST, "reset", None)
            .await
            .map(drop)
    }

    pub async fn add_fault(&self, rule: Value) -> Result<()> {
        self.admin(reqwest::Method::POST, "faults", Some(rule))
            .await
            .map(drop)
    }

    pub async fn management_settings(&self, patch: Value) -> Result<()> {
        self.admin(reqwest::Method::PATCH, "management/settings", Some(patch))
            .await
            .map(drop)
    }

    /// `PATCH /_emulator/entra/settings` (e.g. a short token lifetime), until reset.
    pub async fn entra_settings(&self, patch: Value) -> Result<()> {
        self.admin(reqwest::Method::PATCH, "entra/settings", Some(patch))
            .await
            .map(drop)
    }

    /// Removes every key credential (certificate) of an application; returns how many.
    pub async fn remove_key_credentials(&self, client_id: &str) -> Result<usize> {
        let path = format!("applications/{client_id}/keyCredentials");
        let list = self.admin(reqwest::Method::GET, &path, None).await?;
        let ids: Vec<String> = list["keyCredentials"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["keyId"].as_str().map(str::to_string))
            .collect();
        for id in &ids {
            self.admin(reqwest::Method::DELETE, &format!("{path}/{id}"), None)
                .await?;
        }
        Ok(ids.len())
    }

    pub async fn disable_subscription(&self, content_type: &str) -> Result<()> {
        let path = format!("management/{TENANT}/subscriptions/disable?contentType={content_type}");
        self.admin(reqwest::Method::POST, &path, None)
            .await
            .map(drop)
    }

    /// Every journal entry, oldest first.
    pub async fn journal(&self) -> Result<Vec<Value>> {
        let v = self.admin(reqwest::Method::GET, "journal", None).await?;
        Ok(v["entries"]
            .as_array()
            .cloned()
            .or_else(|| v.as_array().cloned())
            .unwrap_or_default())
    }
}
