pub mod frame;
pub mod handshake;
pub mod payload;
