//! `ApiError`: every failure an endpoint can answer with, and its status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use skr8tr_proto::wire::ErrorReply;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: status_for(code),
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// The error as a `CommandReply` body (for endpoints that answer with one).
    pub fn into_response_body(self) -> Response {
        super::body(
            self.status,
            &skr8tr_proto::wire::CommandReply {
                seq: None,
                accepted: false,
                code: Some(self.code),
                message: self.message,
            },
        )
    }

    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            "internal",
            format!("the conductor failed: {e}; see its log"),
        )
    }
}

/// The one mapping from refusal codes to HTTP statuses.
pub fn status_for(code: &str) -> StatusCode {
    match code {
        "unknown-key" | "revoked-key" | "bad-signature" | "not-admitted" | "node-auth"
        | "ticket-mismatch" => StatusCode::UNAUTHORIZED,
        "wrong-cluster" | "stale" | "from-future" => StatusCode::FORBIDDEN,
        "replayed" | "key-exists" | "already-revoked" | "last-key" | "already-admitted" => {
            StatusCode::CONFLICT
        }
        "unknown-app" | "unknown-node" | "not-found" | "no-such-key" | "no-previous" => {
            StatusCode::NOT_FOUND
        }
        "rollout-in-progress" => StatusCode::CONFLICT,
        "too-large" => StatusCode::PAYLOAD_TOO_LARGE,
        "internal" => StatusCode::INTERNAL_SERVER_ERROR,
        "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "malformed" | "malformed-payload" | "unsupported-version" | "bad-request" => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        super::body(
            self.status,
            &ErrorReply {
                code: self.code,
                message: self.message,
            },
        )
    }
}
