//! The HTTP reverse proxy: longest-prefix routes to apps, backends from the
//! conductor's registry (kept through conductor outages), pooled keep-alive
//! connections to replicas (hyper-util), TLS termination with rustls.
//! Stateless. Not yet filled: the registry and ingress issue builds it.

#![forbid(unsafe_code)]
