//! The ready file (DESIGN §5) and the shell exports of `m365-emulator env`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::entra::managed_identity;
use crate::state::Core;
use crate::world::ManagedIdentityKind;

/// Written atomically once every listener is bound and the world is seeded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReadyInfo {
    pub https_url: String,
    pub http_url: String,
    pub ca_cert_path: PathBuf,
    pub state_dir: PathBuf,
    pub pid: u32,
    pub tenants: Vec<ReadyTenant>,
    pub acs: Vec<ReadyAcs>,
    /// The world's managed identities (absent from ready files of older versions).
    #[serde(default)]
    pub managed_identities: Vec<ReadyManagedIdentity>,
    /// The App Service managed-identity endpoint (`IDENTITY_ENDPOINT`), `{http_url}/msi/token`.
    #[serde(default)]
    pub identity_endpoint: String,
    /// The App Service secret (`IDENTITY_HEADER`, sent as `X-IDENTITY-HEADER`); stable for a
    /// state directory (see [`crate::entra::managed_identity::identity_header`]).
    #[serde(default)]
    pub identity_header: String,
    /// The forward proxy of proxy mode (`HTTPS_PROXY`), e.g. `http://127.0.0.1:8888`; absent
    /// when the emulator runs without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReadyTenant {
    pub id: String,
    pub domain: String,
    pub display_name: String,
    /// Applications usable in this tenant: registered here, or consented to.
    pub applications: Vec<ReadyApplication>,
    pub users: Vec<ReadyUser>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReadyApplication {
    pub client_id: String,
    pub display_name: String,
    pub client_secret: Option<String>,
    /// One PEM holding certificate and private key (`AZURE_CLIENT_CERTIFICATE_PATH`).
    pub certificate_path: Option<PathBuf>,
    pub certificate_pem_path: Option<PathBuf>,
    pub private_key_pem_path: Option<PathBuf>,
    pub thumbprint_sha1: Option<String>,
    pub thumbprint_sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReadyUser {
    pub object_id: String,
    pub user_principal_name: String,
    pub password: String,
}

/// A managed identity: the App Service and IMDS endpoints select it by `client_id`,
/// `object_id` or `resource_id`; without a selector they answer for the first `system` one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReadyManagedIdentity {
    pub name: String,
    /// The tenant GUID the identity's tokens are issued in.
    pub tenant: String,
    pub client_id: String,
    pub object_id: String,
    pub kind: ManagedIdentityKind,
    /// The ARM resource id (`mi_res_id` / `msi_res_id` selector).
    pub resource_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReadyAcs {
    pub name: String,
    pub host: String,
    pub endpoint: String,
    pub connection_string: String,
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl ReadyInfo {
    pub fn build(core: &Core, https_url: &str, http_url: &str) -> ReadyInfo {
        let dir = core.initial_directory();
        let now = core.clock.now();
        let tenants = dir
            .world
            .tenants
            .iter()
            .map(|t| ReadyTenant {
                id: t.id.to_string(),
                domain: t.domain.clone(),
                display_name: t.display_name.clone(),
                applications: dir
                    .world
                    .applications
                    .iter()
                    .filter(|a| dir.service_principal(t, a).is_some())
                    .map(|a| {
                        // Prefer a generated certificate (it has key files); else a brought one.
                        let certs = dir.certificates_of(&a.client_id);
                        let cert = certs.iter().find(|c| c.files.is_some()).or(certs.first());
                        let files = cert.and_then(|c| c.files.as_ref());
                        ReadyApplication {
                            client_id: a.client_id.to_string(),
                            display_name: a.display_name.clone(),
                            client_secret: a
                                .secrets
                                .iter()
                                .find(|s| s.expires.is_none_or(|e| e > now))
                                .map(|s| s.value.clone()),
                            certificate_path: files.map(|f| f.combined_path.clone()),
                            certificate_pem_path: files.map(|f| f.certificate_pem_path.clone()),
                            private_key_pem_path: files.map(|f| f.private_key_pem_path.clone()),
                            thumbprint_sha1: cert.map(|c| c.info.sha1_hex()),
                            thumbprint_sha256: cert.map(|c| c.info.sha256_hex()),
                        }
                    })
                    .collect(),
                users: t
                    .users
                    .iter()
                    .map(|u| ReadyUser {
                        object_id: u.object_id.to_string(),
                        user_principal_name: u.user_principal_name.clone(),
                        password: u.password.clone(),
                    })
                    .collect(),
            })
            .collect();
        let acs = dir
            .world
            .acs
            .iter()
            .map(|a| ReadyAcs {
                name: a.name.clone(),
                host: a.host.clone(),
                endpoint: format!("{https_url}/"),
                connection_string: format!("endpoint={https_url}/;accesskey={}", a.primary_key),
            })
            .collect();
        let managed_identities = dir
            .world
            .managed_identities
            .iter()
            .map(|mi| ReadyManagedIdentity {
                name: mi.name.clone(),
                tenant: dir
                    .tenant(&mi.tenant)
                    .map_or_else(|| mi.tenant.clone(), |t| t.id.to_string()),
                client_id: mi.client_id.to_string(),
                object_id: mi.object_id.to_string(),
                kind: mi.kind,
                resource_id: mi.resource_id.clone(),
            })
            .collect();
        ReadyInfo {
            https_url: https_url.to_string(),
            http_url: http_url.to_string(),
            ca_cert_path: core.pki.ca_path(),
            state_dir: core.state_dir.clone(),
            pid: std::process::id(),
            tenants,
            acs,
            managed_identities,
            identity_endpoint: format!("{http_url}{}", managed_identity::APP_SERVICE_PATH),
            identity_header: managed_identity::identity_header(core),
            proxy_url: None,
        }
    }

    pub fn write(&self, path: &Path) -> Result<(), crate::pki::PkiError> {
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        crate::pki::write_atomic(path, &json, true)
    }

    /// The Azure SDK credential variables of the first tenant's first app with a secret (or
    /// its first app): `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`,
    /// `AZURE_CLIENT_CERTIFICATE_PATH`.
    pub fn credential_vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = Vec::new();
        if let Some(t) = self.tenants.first() {
            vars.push(("AZURE_TENANT_ID", t.id.clone()));
            if let Some(app) = t
                .applications
                .iter()
                .find(|a| a.client_secret.is_some())
                .or(t.applications.first())
            {
                vars.push(("AZURE_CLIENT_ID", app.client_id.clone()));
                if let Some(s) = &app.client_secret {
                    vars.push(("AZURE_CLIENT_SECRET", s.clone()));
                }
                if let Some(p) = &app.certificate_path {
                    vars.push(("AZURE_CLIENT_CERTIFICATE_PATH", p.display().to_string()));
                }
            }
        }
        vars
    }

    /// `export NAME='value'` lines that point a shell at this emulator.
    pub fn env_exports(&self) -> String {
        let mut vars: Vec<(&str, String)> = Vec::new();
        let ca = self.ca_cert_path.display().to_string();
        vars.extend(self.credential_vars());
        vars.push(("AZURE_AUTHORITY_HOST", self.https_url.clone()));
        vars.push(("SSL_CERT_FILE", ca.clone()));
        vars.push(("REQUESTS_CA_BUNDLE", ca.clone()));
        vars.push(("NODE_EXTRA_CA_CERTS", ca.clone()));
        vars.push(("M365EMU_CA_CERT", ca));
        vars.push(("M365EMU_HTTPS_URL", self.https_url.clone()));
        vars.push(("M365EMU_HTTP_URL", self.http_url.clone()));
        vars.push(("M365EMU_ENTRA_URL", self.https_url.clone()));
        vars.push((
            "M365EMU_MANAGEMENT_URL",
            format!("{}/api/v1.0", self.https_url),
        ));
        vars.push(("M365EMU_GRAPH_URL", format!("{}/v1.0", self.https_url)));
        // Managed identity: App Service style (azure-identity, MSAL and @azure/identity pick it
        // when both are set); without them, IMDS redirected to the plain-HTTP listener.
        if !self.identity_endpoint.is_empty() && !self.identity_header.is_empty() {
            vars.push(("IDENTITY_ENDPOINT", self.identity_endpoint.clone()));
            vars.push(("IDENTITY_HEADER", self.identity_header.clone()));
        }
        vars.push(("AZURE_POD_IDENTITY_AUTHORITY_HOST", self.http_url.clone()));
        if let Some(acs) = self.acs.first() {
            vars.push(("M365EMU_ACS_ENDPOINT", acs.endpoint.clone()));
            vars.push((
                "COMMUNICATION_SERVICES_CONNECTION_STRING",
                acs.connection_string.clone(),
            ));
        }
        vars.iter()
            .map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', "'\\''")))
            .collect()
    }
}
