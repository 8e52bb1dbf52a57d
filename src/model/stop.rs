//! Stop tokens: `eos_token_id` of config.json and of generation_config.json, each an integer or
//! a list.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::json::Json;

/// The union of config.json's and generation_config.json's `eos_token_id`s, ascending.
pub fn stop_tokens(dir: &Path, cfg: &ModelConfig) -> Result<Vec<u32>> {
    let mut ids = cfg.eos_token_ids.clone();
    let path = dir.join("generation_config.json");
    if path.is_file() {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            Error::config(
                "generation_config.json",
                format!("{}: not valid JSON: {e}", path.display()),
            )
        })?;
        ids.extend(
            Json(&value)
                .usize_list("eos_token_id")?
                .into_iter()
                .map(|v| v as u32),
        );
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}
