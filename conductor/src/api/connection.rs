//! One API connection: TLS (plain HTTP is answered with a refusal), then
//! hyper's HTTP/1 with the socket's header timeout and head limit, each
//! request given its peer address, the connection's session, a body
//! deadline and room in the body budget before the router sees it.

use super::session::Session;
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
    tls: tokio_rustls::TlsAcceptor,
    io: Guarded<tokio::net::TcpStream>,
    peer: SocketAddr,
) {
    let stream = match skr8tr_net::tls::accept(&tls, io, http.header_timeout).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("connection from {peer}: {e}");
            return;
        }
    };
    let Some(exporter) = skr8tr_net::tls::exporter(stream.get_ref().1) else {
        return;
    };
    let session = std::sync::Arc::new(Session::new(exporter));
    let body_timeout = http.body_timeout;
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            req.extensions_mut().insert(session.clone());
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
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await
    {
        tracing::debug!("connection from {peer}: {e}");
    }
}
