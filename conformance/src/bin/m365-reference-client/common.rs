//! What every operation needs: the contract's variables, output lines, the HTTP client and
//! the token client.

use m365_reference_client::auth::{Credential, TokenClient};
use m365_reference_client::ClientError;

/// A required contract variable.
pub fn env(name: &str) -> Result<String, ClientError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ClientError::Config(format!("{name} is not set")))
}

/// One output line.
pub fn emit(v: serde_json::Value) {
    println!("{v}");
}

pub fn http() -> Result<reqwest::Client, ClientError> {
    // SSL_CERT_FILE names the CA to trust (the contract sets it); nothing else is trusted.
    let mut builder = reqwest::Client::builder().no_proxy();
    if let Ok(path) = std::env::var("SSL_CERT_FILE") {
        let pem = std::fs::read(&path).map_err(|e| ClientError::Config(format!("{path}: {e}")))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| ClientError::Config(format!("{path}: {e}")))?;
        builder = builder.tls_certs_only(certs);
    }
    Ok(builder.build()?)
}

pub fn token_client(http: &reqwest::Client) -> Result<TokenClient, ClientError> {
    let credential = match std::env::var("AZURE_CLIENT_CERTIFICATE_PATH") {
        Ok(path) if !path.is_empty() => {
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| ClientError::Config(format!("{path}: {e}")))?;
            Credential::from_combined_pem(&pem)?
        }
        _ => Credential::Secret(env("AZURE_CLIENT_SECRET")?),
    };
    Ok(TokenClient::new(
        http.clone(),
        &env("AZURE_AUTHORITY_HOST")?,
        &env("AZURE_TENANT_ID")?,
        &env("AZURE_CLIENT_ID")?,
        credential,
    ))
}
