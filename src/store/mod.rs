//! The object store: packs of content-addressed objects, manifests, and the sled index.

pub mod index;
pub mod manifest;
pub mod object_bytes;
pub mod object_id;
pub mod pack;
pub mod reflog;
