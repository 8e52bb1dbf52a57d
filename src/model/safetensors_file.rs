//! Writing a safetensors file. The `safetensors` crate writes through a temporary file, which
//! is created with mode 0600, and renames it into place; a written checkpoint then gets mode
//! 0644, as config.json beside it has, so that whoever can read the model can load it.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::Path;

use safetensors::View;

use crate::error::{Error, Result};

/// Writes `tensors` (with the header `metadata`) to `path`, readable by all, writable by its
/// owner.
pub fn write_safetensors<S, V, I>(
    tensors: I,
    metadata: Option<HashMap<String, String>>,
    path: &Path,
) -> Result<()>
where
    S: AsRef<str> + Ord + Display,
    V: View,
    I: IntoIterator<Item = (S, V)>,
{
    let failed = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    safetensors::serialize_to_file(tensors, metadata, path).map_err(|e| failed(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| failed(format!("setting its mode: {e}")))?;
    }
    Ok(())
}
