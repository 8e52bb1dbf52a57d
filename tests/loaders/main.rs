//! The `loaders` test binary: checkpoint layouts and config spellings, chat templates, and
//! bad input that must end in a clear error; GGUF block decoding against gguf-py.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod bad_input_table;
mod chat_template;
mod checkpoints;
mod fuzz;
mod gguf_blocks;
