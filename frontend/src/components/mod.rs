//! Pieces shared by the pages.

pub mod feedback;
pub mod frame;
pub mod table;

pub use feedback::{EmptyState, ErrorBox, Loading};
pub use frame::Frame;
pub use table::{rows_resource, size_text, text_table, Action, Empty, Rows};
