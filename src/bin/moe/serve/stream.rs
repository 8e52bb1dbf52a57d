//! `stream: true`: server-sent events in OpenAI's chunk format, ending with `data: [DONE]`.
//! When the client leaves, the stream and with it the request's receiver are dropped, and the
//! scheduler frees the slot at its next step.

use std::convert::Infallible;

use axum::response::sse::{Event as Sse, Sse as SseResponse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt as _};
use moe_gpu::serve::Event;
use tokio::sync::mpsc::UnboundedReceiver;

use super::error::ApiError;
use super::request::Endpoint;
use super::response::Meta;

/// The event stream of one request.
pub fn respond(events: UnboundedReceiver<Event>, meta: Meta, include_usage: bool) -> Response {
    let opening = (meta.endpoint == Endpoint::Chat).then(|| meta.delta(None).to_string());
    let chunks = stream::unfold(Some((events, meta)), move |state| async move {
        let (mut events, meta) = state?;
        let data = match events.recv().await {
            Some(Event::Text(t)) => {
                let chunk = meta.delta(Some(&t)).to_string();
                return Some((vec![chunk], Some((events, meta))));
            }
            Some(Event::Done(f)) => {
                let mut data = vec![meta.last(&f).to_string()];
                if include_usage {
                    data.push(meta.usage(&f).to_string());
                }
                data
            }
            Some(Event::Failed(m)) => vec![ApiError::internal(m).body().to_string()],
            None => vec![
                ApiError::internal("the scheduler stopped")
                    .body()
                    .to_string(),
            ],
        };
        Some((data, None))
    });
    let data = stream::iter(opening)
        .chain(chunks.flat_map(stream::iter))
        .chain(stream::iter(["[DONE]".to_string()]))
        .map(|d| Ok::<_, Infallible>(Sse::default().data(d)));
    SseResponse::new(data).into_response()
}
