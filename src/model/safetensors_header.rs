//! Checks on safetensors headers and sharded indexes that the `safetensors` crate does not make,
//! or makes without naming the tensor at fault: duplicate keys (its serde map keeps the last
//! copy), shapes that disagree with their byte ranges, data past the end of the file, and index
//! entries that point outside the model directory.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Component, Path, PathBuf};

use safetensors::tensor::TensorInfo;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use crate::error::{Error, Result};

/// A JSON object's entries in file order, duplicates kept (a map would drop all but one).
struct Entries<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Collect<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Collect<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = m.next_entry()? {
                    out.push(kv);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Collect(PhantomData))
    }
}

/// The first key that appears twice, with the values of its first two copies.
fn first_duplicate<V>(entries: &[(String, V)]) -> Option<(&str, &V, &V)> {
    let mut seen: HashMap<&str, &V> = HashMap::new();
    for (k, v) in entries {
        if let Some(first) = seen.insert(k, v) {
            return Some((k, first, v));
        }
    }
    None
}

fn bad(path: &Path, message: String) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    }
}

/// Checks the header of safetensors file `path` (whole contents `buf`) for what the
/// `safetensors` crate accepts silently or reports without a tensor name. Anything else it
/// cannot parse is left to the crate, whose error is then reported as it is.
pub(crate) fn check_header(path: &Path, buf: &[u8]) -> Result<()> {
    let Some(len) = buf
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    else {
        return Ok(());
    };
    let Some(header) = usize::try_from(len)
        .ok()
        .and_then(|n| buf.get(8..8usize.checked_add(n)?))
    else {
        return Ok(());
    };
    let Ok(entries) = serde_json::from_slice::<Entries<serde_json::Value>>(header) else {
        return Ok(());
    };
    if let Some((name, _, _)) = first_duplicate(&entries.0) {
        return Err(bad(
            path,
            format!("tensor `{name}` is listed twice in the header"),
        ));
    }
    let data_len = buf.len() - 8 - header.len();
    for (name, value) in &entries.0 {
        if name == "__metadata__" {
            continue;
        }
        let Ok(info) = TensorInfo::deserialize(value) else {
            continue;
        };
        let (start, end) = info.data_offsets;
        let bytes = info
            .shape
            .iter()
            .try_fold(info.dtype.bitsize(), |a, &d| a.checked_mul(d))
            .map(|bits| bits.div_ceil(8));
        if bytes != Some(end.wrapping_sub(start)) || end < start {
            return Err(bad(
                path,
                format!(
                    "tensor `{name}`: shape {:?} of {:?} does not fit its data_offsets [{start}, {end}] ({} bytes)",
                    info.shape,
                    info.dtype,
                    end.saturating_sub(start),
                ),
            ));
        }
        if end > data_len {
            return Err(bad(
                path,
                format!(
                    "tensor `{name}`: data_offsets [{start}, {end}] run past the end of the file (its data section holds {data_len} bytes)"
                ),
            ));
        }
    }
    Ok(())
}

/// The shard files named by sharded index `index`, sorted, each once. Every entry must be a
/// plain file name (the shards sit next to the index) and every tensor must be named once.
pub(crate) fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(index, format!("index is not JSON: {e}")))?;
    if !json.get("weight_map").is_some_and(|m| m.is_object()) {
        return Err(bad(index, "index has no `weight_map` object".into()));
    }
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: Entries<serde_json::Value>,
    }
    let map = serde_json::from_str::<Index>(&text)
        .map_err(|e| bad(index, format!("index is not JSON: {e}")))?
        .weight_map
        .0;
    if let Some((name, a, b)) = first_duplicate(&map) {
        return Err(bad(
            index,
            format!("weight_map names tensor `{name}` twice: in shard {a} and in shard {b}"),
        ));
    }
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files = Vec::new();
    for (name, file) in &map {
        let Some(file) = file.as_str() else {
            return Err(bad(
                index,
                format!("weight_map entry `{name}` is {file}, not a file name"),
            ));
        };
        let mut parts = Path::new(file).components();
        if !matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        ) {
            return Err(bad(
                index,
                format!(
                    "weight_map entry `{name}` points to `{file}`; shards must be plain file names inside the model directory"
                ),
            ));
        }
        files.push(file);
    }
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}
