//! The admin vault API from the command line (`scrim vault`): the address
//! and the bearer token are read from the same configuration file the
//! running scrim was started with.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use zeroize::Zeroizing;

use crate::config::{Config, ProcessEnvironment, resolve_secret};

/// How long a call may take, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the admin listener is, and the token it wants.
pub struct AdminClient {
    /// `host:port`, reachable from here (`0.0.0.0` becomes loopback).
    address: String,
    token: Zeroizing<String>,
}

impl AdminClient {
    /// From a configuration file: `admin.listen` (or `address`, when
    /// given) and `keys.admin`, resolved as `scrim run` resolves it.
    pub fn from_config(
        path: &std::path::Path,
        address: Option<&str>,
    ) -> Result<AdminClient, String> {
        let (config, _) = Config::load(path).map_err(|errors| errors.to_string())?;
        let Some(reference) = config.keys.get("admin") else {
            return Err(format!(
                "{}: no `keys.admin`: the vault API is off without it",
                path.display()
            ));
        };
        let secret = resolve_secret(
            "admin",
            &reference.value,
            &ProcessEnvironment,
            &mut Vec::new(),
        )?;
        let token = String::from_utf8(secret).map_err(|_| {
            "key `admin` is not text: it cannot be sent as a bearer token".to_owned()
        })?;
        let listen = config
            .admin
            .as_ref()
            .and_then(|admin| admin.listen.as_ref())
            .map_or("127.0.0.1:9090", |listen| listen.value.as_str());
        let address = match address {
            Some(address) => address.to_owned(),
            None => reachable(listen),
        };
        Ok(AdminClient {
            address,
            token: Zeroizing::new(token.trim().to_owned()),
        })
    }

    /// Calls `path` with `body` (JSON, for a `POST`); the answer's status
    /// and JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), String> {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.address))
            .header("authorization", format!("Bearer {}", self.token.as_str()))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let call = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| format!("cannot reach the admin listener at {}: {e}", self.address))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("the admin listener broke off: {e}"))?
                .to_bytes();
            let json = serde_json::from_slice(&body).unwrap_or_else(
                |_| serde_json::json!({ "error": String::from_utf8_lossy(&body).trim() }),
            );
            Ok((status, json))
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| {
                format!(
                    "the admin listener at {} did not answer in time",
                    self.address
                )
            })?
    }
}

/// A listen address as a client reaches it: a wildcard host is this
/// machine's loopback.
fn reachable(listen: &str) -> String {
    match listen.rsplit_once(':') {
        Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => listen.to_owned(),
    }
}
