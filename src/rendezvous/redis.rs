//! Redis/Valkey registration store (in progress).
