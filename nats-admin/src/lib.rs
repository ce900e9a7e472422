//! What only the owner of the NATS cluster does: generate the development credentials
//! ([`credentials`]), create the `PATIENT` stream with its own settings ([`stream`]), which the
//! services' identities are not allowed to create, change or delete, and watch or publish on it
//! as an operator ([`events`]), and join a second site's stream to the hospital's ([`site`]).

pub mod control;
pub mod credentials;
pub mod events;
pub mod presence;
pub mod services;
pub mod site;
pub mod stream;
pub mod tokens;

pub use credentials::{Credentials, IDENTITIES};
pub use stream::StreamSettings;
