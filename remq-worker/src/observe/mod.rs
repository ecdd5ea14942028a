//! What the worker shows of itself: Prometheus metrics (every series named in
//! one place), consumer states for `/readyz`, the `/metrics`, `/healthz` and
//! `/readyz` listener, and the task that measures a consumer's lag.

pub(crate) mod endpoints;
pub(crate) mod health;
pub(crate) mod lag;
pub(crate) mod metrics;
