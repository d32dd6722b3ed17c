pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod payload;
pub mod reader;
pub mod rfc3339;
pub mod template;
