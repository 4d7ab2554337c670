//! The node agent: long-polls the conductor for its signed assignment set,
//! starts and stops replicas by fork + exec, health-checks them, keeps a log
//! ring buffer per replica, measures CPU and RAM, and reports every change.
//! Stateless: a restarted node rebuilds everything from the conductor. Not
//! yet filled: the conductor and node issue builds it.

#![deny(unsafe_code)]

pub mod health;
pub mod http;
pub mod logs;
pub mod process;
pub mod supervisor;
