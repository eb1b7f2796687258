//! The admin vault API: `POST /vault/reveal`, `POST /vault/erase`,
//! `GET /vault/stats`. Off unless both a vault and `keys.admin` are
//! configured; every call, `GET` included, needs `Authorization: Bearer
//! <keys.admin>` (compared digest to digest, in constant time). Each call is
//! counted and logged with its counts, never a value or a token.

use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::Admin;
use crate::metrics::{AdminCall, AdminOutcome};
use crate::vault::Erase;

/// The largest request body the API reads.
const MAX_BODY: usize = 1024 * 1024;
/// The most tokens or values in one call.
pub const MAX_ITEMS: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevealRequest {
    tokens: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseRequest {
    values: Option<Vec<String>>,
    tokens: Option<Vec<String>>,
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    // Revealed values are for the caller only.
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, serde_json::json!({ "error": message }))
}

/// Answers a request under `/vault/`.
pub(super) async fn respond(admin: &Admin, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let call = match (request.method(), request.uri().path()) {
        (&Method::POST, "/vault/reveal") => AdminCall::Reveal,
        (&Method::POST, "/vault/erase") => AdminCall::Erase,
        (&Method::GET, "/vault/stats") => AdminCall::Stats,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "not found: POST /vault/reveal, POST /vault/erase, GET /vault/stats",
            );
        }
    };
    let (Some(vault), Some(token)) = (&admin.vault, &admin.token) else {
        return error(
            StatusCode::NOT_FOUND,
            "the vault API is off: it needs `vault:` and `keys.admin` in the configuration",
        );
    };
    let started = Instant::now();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if !token.accepts(authorization) {
        admin.metrics.vault.admin(call, AdminOutcome::Unauthorized);
        tracing::warn!(target: "scrim::admin", call = call.as_str(), "vault call refused: no valid bearer token");
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized: the vault API needs Authorization: Bearer <keys.admin>",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"scrim admin\""),
        );
        return response;
    }
    let (outcome, response, items) = match call {
        AdminCall::Stats => match vault.stats().await {
            Ok(stats) => (
                AdminOutcome::Ok,
                json(StatusCode::OK, serde_json::json!(stats)),
                0,
            ),
            Err(e) => unavailable(&e),
        },
        AdminCall::Reveal => match read::<RevealRequest>(request).await {
            Err(response) => (AdminOutcome::BadRequest, response, 0),
            Ok(RevealRequest { tokens }) if tokens.len() > MAX_ITEMS => too_many(),
            Ok(RevealRequest { tokens }) => match vault.reveal(&tokens).await {
                Ok(values) => {
                    let values: Vec<Option<&str>> = values
                        .iter()
                        .map(|v| v.as_deref().map(|v| v.value.as_str()))
                        .collect();
                    let found = values.iter().filter(|v| v.is_some()).count();
                    let body = serde_json::json!({ "values": values, "revealed": found });
                    (AdminOutcome::Ok, json(StatusCode::OK, body), tokens.len())
                }
                Err(e) => unavailable(&e),
            },
        },
        AdminCall::Erase => match read::<EraseRequest>(request).await {
            Err(response) => (AdminOutcome::BadRequest, response, 0),
            Ok(EraseRequest {
                values: Some(values),
                tokens: None,
            }) if values.len() <= MAX_ITEMS => {
                let count = values.len();
                let values = values.into_iter().map(Zeroizing::new).collect();
                erase(vault, Erase::Values(values), count).await
            }
            Ok(EraseRequest {
                values: None,
                tokens: Some(tokens),
            }) if tokens.len() <= MAX_ITEMS => {
                let count = tokens.len();
                erase(vault, Erase::Tokens(tokens), count).await
            }
            Ok(
                EraseRequest {
                    values: Some(_),
                    tokens: None,
                }
                | EraseRequest {
                    values: None,
                    tokens: Some(_),
                },
            ) => too_many(),
            Ok(_) => (
                AdminOutcome::BadRequest,
                error(
                    StatusCode::BAD_REQUEST,
                    "give either `values` or `tokens`, as a JSON array of strings",
                ),
                0,
            ),
        },
    };
    admin.metrics.vault.admin(call, outcome);
    tracing::info!(
        target: "scrim::admin",
        call = call.as_str(),
        outcome = outcome.as_str(),
        status = response.status().as_u16(),
        items,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "vault call"
    );
    response
}

async fn erase(
    vault: &crate::vault::Vault,
    what: Erase,
    count: usize,
) -> (AdminOutcome, Response<Full<Bytes>>, usize) {
    match vault.erase(what).await {
        Ok(erased) => (
            AdminOutcome::Ok,
            json(StatusCode::OK, serde_json::json!({ "erased": erased })),
            count,
        ),
        Err(e) => unavailable(&e),
    }
}

fn unavailable(cause: &crate::vault::StoreError) -> (AdminOutcome, Response<Full<Bytes>>, usize) {
    tracing::error!(target: "scrim::admin", %cause, "vault store unavailable");
    (
        AdminOutcome::Unavailable,
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the vault's store is unavailable; retry shortly",
        ),
        0,
    )
}

fn too_many() -> (AdminOutcome, Response<Full<Bytes>>, usize) {
    (
        AdminOutcome::BadRequest,
        error(
            StatusCode::BAD_REQUEST,
            &format!("at most {MAX_ITEMS} tokens or values per call"),
        ),
        0,
    )
}

/// The request's JSON body, at most [`MAX_BODY`] bytes. An error names
/// what is wrong with it, never what it holds.
async fn read<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
) -> Result<T, Response<Full<Bytes>>> {
    let body = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body must be JSON of at most {MAX_BODY} bytes"),
            )
        })?
        .to_bytes();
    let body = Zeroizing::new(body.to_vec());
    serde_json::from_slice(&body).map_err(|e| {
        // serde_json's message names a line and column, and the field it
        // expected; never the content.
        let reason = match e.classify() {
            serde_json::error::Category::Data => {
                "a field is missing, unknown or not an array of strings"
            }
            _ => "the body is not valid JSON",
        };
        error(
            StatusCode::BAD_REQUEST,
            &format!("{reason} (line {}, column {})", e.line(), e.column()),
        )
    })
}
