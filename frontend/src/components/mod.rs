//! Pieces shared by the pages.

pub mod feedback;
pub mod frame;

pub use feedback::{EmptyState, ErrorBox, Loading};
pub use frame::Frame;
