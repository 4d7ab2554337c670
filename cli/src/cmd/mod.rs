//! One module per subcommand.

pub mod completions;
pub mod conductor;
pub mod dev;
pub mod fingerprint;
pub mod history;
pub mod ingress;
pub mod install;
pub mod key;
pub mod keygen;
pub mod listen;
pub mod logs;
pub mod lookup;
pub mod node;
pub mod nodes;
pub mod ping;
pub mod plan;
pub mod ps;
pub mod rollout;
pub mod secret;
pub mod serve_static;
pub mod simple;
pub mod status;
pub mod ticket;
pub mod up;
pub mod validate;
pub mod wait;
