//! One API connection: hyper's HTTP/1 with the socket's header timeout
//! and head limit, each request given its peer address, a body deadline
//! and room in the body budget before the router sees it.

use super::{ApiError, Peer};
use axum::Router;
use axum::response::IntoResponse;
use skr8tr_net::server::{BodyBudget, DeadlineBody, Guarded, Limits};
use skr8tr_proto::code::Code;
use std::net::SocketAddr;

pub async fn connection(
    router: Router,
    budget: BodyBudget,
    http: Limits,
    io: Guarded<tokio::net::TcpStream>,
    peer: SocketAddr,
) {
    let body_timeout = http.body_timeout;
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            // Room for the body (at most the API's limit) before a byte of it
            // is read: many large bodies held back at once cannot add up.
            let claim = hyper::body::Body::size_hint(req.body())
                .upper()
                .unwrap_or(u64::MAX)
                .min(skr8tr_proto::wire::MAX_BODY_BYTES as u64);
            let room = budget.reserve(claim);
            let req = req.map(|b| axum::body::Body::new(DeadlineBody::new(b, body_timeout)));
            let mut router = router.clone();
            async move {
                let Some(_room) = room else {
                    return Ok(ApiError::new(
                        Code::Unavailable,
                        "the conductor is receiving too many requests at once; try again",
                    )
                    .into_response());
                };
                tower::Service::call(&mut router, req).await
            }
        });
    if let Err(e) = http
        .http1()
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await
    {
        tracing::debug!("connection from {peer}: {e}");
    }
}
