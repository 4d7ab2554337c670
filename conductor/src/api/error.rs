//! `ApiError`: every failure an endpoint can answer with. Its status comes
//! from the refusal code (`Code::http_status`, one exhaustive match).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use skr8tr_proto::code::Code;
use skr8tr_proto::wire::ErrorReply;

#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        status_for(self.code)
    }

    /// The error as a `CommandReply` body (for endpoints that answer with one).
    pub fn into_response_body(self) -> Response {
        super::body(
            self.status(),
            &skr8tr_proto::wire::CommandReply {
                seq: None,
                accepted: false,
                code: Some(self.code.as_str().to_string()),
                message: self.message,
            },
        )
    }

    /// A store failure: a full disk keeps its own code and message.
    pub fn store(e: skr8tr_store::StoreError) -> ApiError {
        match e {
            skr8tr_store::StoreError::Full { .. } => ApiError::new(Code::StoreFull, e.to_string()),
            skr8tr_store::StoreError::Reopening => ApiError::new(Code::Unavailable, e.to_string()),
            e => ApiError::internal(e),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            Code::Internal,
            format!("the conductor failed: {e}; see its log"),
        )
    }
}

/// The HTTP status of a refusal code.
pub fn status_for(code: Code) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        super::body(
            self.status(),
            &ErrorReply {
                code: self.code.as_str().to_string(),
                message: self.message,
            },
        )
    }
}
