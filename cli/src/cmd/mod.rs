//! One module per subcommand.

pub mod fingerprint;
pub mod keygen;
pub mod validate;
