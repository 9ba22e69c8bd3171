//! What every Portico data path shares: backends and their live state, pools and balancers,
//! PROXY protocol, connection limits and the drain signal.
#![forbid(unsafe_code)]

pub mod backend;
pub mod balance;
pub mod clock;
pub mod error_chain;
pub mod hash;
pub mod health;
pub mod lifecycle;
pub mod metric_names;
pub mod pool;
pub mod proxy_protocol;

pub use backend::{ActiveConnection, Backend, BackendKey};
pub use balance::{BalanceKind, Balancer};
pub use pool::Pool;
