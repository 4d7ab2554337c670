//! The control plane and the only stateful process: an HTTP API (axum) that
//! verifies signed operator commands, commits them with their audit entry,
//! and drives the scheduler, reconciler, rollout engine, autoscaler and
//! service registry from desired state (the store) and observed state (node
//! reports). Not yet filled: the conductor and node issue builds it.

#![forbid(unsafe_code)]
