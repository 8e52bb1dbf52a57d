//! The `loaders` test binary: checkpoint layouts and config spellings, chat templates, and
//! bad input that must end in a clear error; GGUF block decoding against gguf-py, and the GGUF
//! file reader (round trips, rejections, split models, gguf-py's files, robustness); the GGUF
//! tokenizer against llama.cpp.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod bad_input_table;
mod chat_template;
mod checkpoints;
mod fuzz;
mod gguf_blocks;
mod gguf_file;
mod gguf_file_oracle;
mod gguf_file_reject;
mod gguf_metadata;
mod gguf_vocab;
