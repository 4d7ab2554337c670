//! Refusal codes: why a request was turned away, as one closed set. The
//! store records them, the API answers with them, scripts match on their
//! kebab-case names, which never change once released. Each maps to one
//! HTTP status, chosen here, with no default.

use std::fmt;

macro_rules! codes {
    ($($variant:ident = $name:literal),* $(,)?) => {
        /// Why a request was refused.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, for exhaustive tests and listings.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The stable name on the wire and in the audit log.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            /// The code with this name, if there is one.
            pub fn from_name(name: &str) -> Option<Code> {
                match name {
                    $($name => Some(Code::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    // The envelope, before anything in it is trusted.
    TooLarge = "too-large",
    Malformed = "malformed",
    UnsupportedVersion = "unsupported-version",
    UnknownKey = "unknown-key",
    RevokedKey = "revoked-key",
    BadSignature = "bad-signature",
    MalformedPayload = "malformed-payload",
    // Signed, but not for here or not for now.
    WrongCluster = "wrong-cluster",
    Stale = "stale",
    FromFuture = "from-future",
    Replayed = "replayed",
    // Node admission.
    NotAdmitted = "not-admitted",
    NodeAuth = "node-auth",
    Ticket = "ticket",
    TicketMismatch = "ticket-mismatch",
    AlreadyAdmitted = "already-admitted",
    // Sessions: a request that needs a proven key came without one, or
    // with a key not allowed there.
    Unauthenticated = "unauthenticated",
    Forbidden = "forbidden",
    // What a command asks.
    BadRequest = "bad-request",
    InvalidManifest = "invalid-manifest",
    BadCount = "bad-count",
    BadKey = "bad-key",
    SecretInClear = "secret-in-clear",
    SecretMissing = "secret-missing",
    SecretMismatch = "secret-mismatch",
    // What it asks of the state it meets.
    UnknownApp = "unknown-app",
    UnknownGeneration = "unknown-generation",
    NotFound = "not-found",
    NoSuchKey = "no-such-key",
    NoPrevious = "no-previous",
    KeyExists = "key-exists",
    AlreadyRevoked = "already-revoked",
    LastKey = "last-key",
    RolloutInProgress = "rollout-in-progress",
    // The conductor's own changes: a plan the state moved under.
    StalePlan = "stale-plan",
    // A delta report whose base the conductor does not hold: send a full one.
    ReportResend = "report-resend",
    // The conductor.
    Internal = "internal",
    Unavailable = "unavailable",
    StoreFull = "store-full",
}

impl Code {
    /// The HTTP status a refusal with this code is answered with.
    pub fn http_status(self) -> u16 {
        match self {
            // Who sent it is not proven, or not allowed.
            Code::UnknownKey
            | Code::RevokedKey
            | Code::BadSignature
            | Code::NotAdmitted
            | Code::NodeAuth
            | Code::TicketMismatch
            | Code::Unauthenticated => 401,
            Code::Forbidden => 403,
            // Proven, but signed for another cluster or time.
            Code::WrongCluster | Code::Stale | Code::FromFuture => 403,
            // Cannot be read as a request at all, or sent to the wrong place.
            Code::Malformed
            | Code::MalformedPayload
            | Code::UnsupportedVersion
            | Code::BadRequest
            | Code::Ticket => 400,
            Code::TooLarge => 413,
            // Readable, but what it asks is invalid.
            Code::InvalidManifest
            | Code::BadCount
            | Code::BadKey
            | Code::SecretInClear
            | Code::SecretMissing
            | Code::SecretMismatch => 422,
            Code::UnknownApp
            | Code::UnknownGeneration
            | Code::NotFound
            | Code::NoSuchKey
            | Code::NoPrevious => 404,
            // Conflicts with the state it meets.
            Code::Replayed
            | Code::KeyExists
            | Code::AlreadyRevoked
            | Code::LastKey
            | Code::AlreadyAdmitted
            | Code::RolloutInProgress
            | Code::StalePlan
            | Code::ReportResend => 409,
            Code::Internal => 500,
            Code::Unavailable => 503,
            Code::StoreFull => 507,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each code is meant to answer, written out on its own so a
    /// code added without a decision, or moved by accident, fails here.
    const INTENDED: &[(&str, u16)] = &[
        ("too-large", 413),
        ("malformed", 400),
        ("unsupported-version", 400),
        ("unknown-key", 401),
        ("revoked-key", 401),
        ("bad-signature", 401),
        ("malformed-payload", 400),
        ("wrong-cluster", 403),
        ("stale", 403),
        ("from-future", 403),
        ("replayed", 409),
        ("not-admitted", 401),
        ("node-auth", 401),
        ("ticket", 400),
        ("ticket-mismatch", 401),
        ("already-admitted", 409),
        ("unauthenticated", 401),
        ("forbidden", 403),
        ("bad-request", 400),
        ("invalid-manifest", 422),
        ("bad-count", 422),
        ("bad-key", 422),
        ("secret-in-clear", 422),
        ("secret-missing", 422),
        ("secret-mismatch", 422),
        ("unknown-app", 404),
        ("unknown-generation", 404),
        ("not-found", 404),
        ("no-such-key", 404),
        ("no-previous", 404),
        ("key-exists", 409),
        ("already-revoked", 409),
        ("last-key", 409),
        ("rollout-in-progress", 409),
        ("stale-plan", 409),
        ("report-resend", 409),
        ("internal", 500),
        ("unavailable", 503),
        ("store-full", 507),
    ];

    #[test]
    fn every_code_has_its_intended_status_and_a_stable_name() {
        assert_eq!(
            Code::ALL.len(),
            INTENDED.len(),
            "a code without a stated status"
        );
        for code in Code::ALL {
            let intended = INTENDED
                .iter()
                .find(|(name, _)| *name == code.as_str())
                .unwrap_or_else(|| panic!("{code} has no intended status"));
            assert_eq!(code.http_status(), intended.1, "{code}");
            assert_eq!(Code::from_name(code.as_str()), Some(*code));
            assert_eq!(code.to_string(), code.as_str());
        }
        assert_eq!(Code::from_name("no-such-code"), None);
    }
}
