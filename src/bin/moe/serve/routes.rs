//! The endpoints: `/v1/models`, `/v1/chat/completions`, `/v1/completions`, `/health`, and the
//! API-key check in front of the `/v1` ones.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use moe_gpu::serve::{Admission, Event};
use serde_json::{Value, json};

use super::error::ApiError;
use super::request::{Body, Endpoint};
use super::response::Meta;
use super::state::{AppState, unix_now};
use super::stream;

type Shared = State<Arc<AppState>>;

/// Liveness, with what the scheduler is doing.
pub async fn health(State(s): Shared) -> Json<Value> {
    let load = s.scheduler.load();
    Json(json!({
        "status": "ok",
        "slots": s.scheduler.slots(),
        "running": load.running,
        "waiting": load.waiting,
        "generated_tokens": load.generated,
    }))
}

pub async fn models(State(s): Shared) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": s.model_id, "object": "model", "created": s.created, "owned_by": "moe-gpu"}],
    }))
}

pub async fn chat(State(s): Shared, body: Bytes) -> Response {
    complete(s, &body, Endpoint::Chat)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn completions(State(s): Shared, body: Bytes) -> Response {
    complete(s, &body, Endpoint::Completions)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

/// Answers a known endpoint asked with a method it does not take.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}

/// Refuses a request without `Authorization: Bearer KEY` when the server has a key.
pub async fn require_key(State(s): Shared, request: HttpRequest, next: Next) -> Response {
    if let Some(key) = &s.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

async fn complete(s: Arc<AppState>, body: &[u8], endpoint: Endpoint) -> Result<Response, ApiError> {
    let checked = Body::parse(body)?.check(endpoint, &s)?;
    let mut events = match s.scheduler.submit(checked.request) {
        Ok(Admission::Accepted(events)) => events,
        Ok(Admission::Full) => return Err(ApiError::busy()),
        Err(e) => return Err(ApiError::invalid(e.to_string(), None)),
    };
    let prefix = match endpoint {
        Endpoint::Chat => "chatcmpl",
        Endpoint::Completions => "cmpl",
    };
    let meta = Meta {
        endpoint,
        id: s.next_id(prefix),
        created: unix_now(),
        model: s.model_id.clone(),
    };
    if checked.stream {
        return Ok(stream::respond(events, meta, checked.include_usage));
    }
    let mut text = String::new();
    loop {
        match events.recv().await {
            Some(Event::Text(t)) => text += &t,
            Some(Event::Done(f)) => return Ok(Json(meta.response(&text, &f)).into_response()),
            Some(Event::Failed(m)) => return Err(ApiError::internal(m)),
            None => return Err(ApiError::internal("the scheduler stopped")),
        }
    }
}
