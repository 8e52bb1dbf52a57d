//! Split models as llama.cpp's `gguf-split` writes them: `NAME-00001-of-00003.gguf` and so on,
//! each part a whole GGUF file with its own header and data section. The first part holds the
//! metadata; every part states `split.no` (0-based), `split.count` and `split.tensors.count`
//! (the tensors of all parts together).

use std::path::{Path, PathBuf};

use super::value::Value;
use crate::error::{Error, Result};

const NO_KEY: &str = "split.no";
const COUNT_KEY: &str = "split.count";
const TENSORS_KEY: &str = "split.tensors.count";

/// The files of the model that `path` belongs to, in order: every part when its name is
/// `NAME-0000I-of-0000N.gguf`, each of which must exist, and otherwise `path` alone.
pub(super) fn part_paths(path: &Path) -> Result<Vec<PathBuf>> {
    let Some((prefix, count)) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(split_name)
    else {
        return Ok(vec![path.to_path_buf()]);
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    (1..=count)
        .map(|i| {
            let part = dir.join(format!("{prefix}-{i:05}-of-{count:05}.gguf"));
            if part.exists() {
                Ok(part)
            } else {
                Err(Error::io(
                    &part,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!(
                            "part {i} of the {count}-part model {} is missing",
                            path.display()
                        ),
                    ),
                ))
            }
        })
        .collect()
}

/// `(NAME, N)` for a file name `NAME-0000I-of-0000N.gguf` with 1 <= I <= N.
fn split_name(name: &str) -> Option<(&str, usize)> {
    let stem = name.strip_suffix(".gguf")?;
    let (head, count) = stem.rsplit_once("-of-")?;
    let (prefix, no) = head.rsplit_once('-')?;
    let number = |s: &str| {
        (s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<usize>().ok())
            .flatten()
    };
    let (no, count) = (number(no)?, number(count)?);
    (!prefix.is_empty() && (1..=count).contains(&no)).then_some((prefix, count))
}

/// What [`check`] needs of one part.
pub(super) struct Part<'a> {
    pub path: &'a Path,
    pub kvs: &'a [(String, Value)],
    /// How many tensors the part holds.
    pub tensors: usize,
}

/// Checks each part's split keys against the parts found: part `i` says `split.no = i` and
/// `split.count` = the number of parts, and the first part's `split.tensors.count` (when
/// present) is the number of tensors in all of them. A single file that says it has more
/// parts is an error, since its name does not say where they are.
pub(super) fn check(parts: &[Part]) -> Result<()> {
    let count = parts.len();
    let tensors: usize = parts.iter().map(|p| p.tensors).sum();
    for (i, &Part { path, kvs, .. }) in parts.iter().enumerate() {
        let key = |key: &str| -> Result<Option<i128>> {
            match kvs.iter().find(|(k, _)| k == key).map(|(_, v)| v) {
                None => Ok(None),
                Some(v) => v.as_integer().map(Some).ok_or_else(|| {
                    key_error(
                        path,
                        key,
                        format!("must be an integer, found {}", v.type_name()),
                    )
                }),
            }
        };
        match key(COUNT_KEY)? {
            Some(n) if n != count as i128 && count == 1 => {
                return Err(key_error(
                    path,
                    COUNT_KEY,
                    format!(
                        "says the model has {n} parts, but the file is not named \
                         NAME-00001-of-{n:05}.gguf, so its parts cannot be found"
                    ),
                ));
            }
            Some(n) if n != count as i128 => {
                return Err(key_error(
                    path,
                    COUNT_KEY,
                    format!("is {n}, but {count} parts were found by file name"),
                ));
            }
            None if count > 1 => return Err(key_error(path, COUNT_KEY, "missing".into())),
            _ => {}
        }
        match key(NO_KEY)? {
            Some(n) if n != i as i128 => {
                return Err(key_error(
                    path,
                    NO_KEY,
                    format!("is {n}, but the file name makes this part {i} (0-based)"),
                ));
            }
            None if count > 1 => return Err(key_error(path, NO_KEY, "missing".into())),
            _ => {}
        }
        if i == 0
            && let Some(n) = key(TENSORS_KEY)?
            && n != tensors as i128
        {
            return Err(key_error(
                path,
                TENSORS_KEY,
                format!("is {n}, but the {count} part(s) hold {tensors} tensors"),
            ));
        }
    }
    Ok(())
}

fn key_error(path: &Path, key: &str, message: String) -> Error {
    Error::GgufKey {
        path: path.to_path_buf(),
        key: key.into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names() {
        assert_eq!(split_name("m-00002-of-00003.gguf"), Some(("m", 3)));
        assert_eq!(split_name("a-b-00001-of-00001.gguf"), Some(("a-b", 1)));
        assert_eq!(split_name("m-00004-of-00003.gguf"), None);
        assert_eq!(split_name("m-00000-of-00003.gguf"), None);
        assert_eq!(split_name("m-1-of-3.gguf"), None);
        assert_eq!(split_name("m.gguf"), None);
        assert_eq!(split_name("-00001-of-00002.gguf"), None);
    }
}
