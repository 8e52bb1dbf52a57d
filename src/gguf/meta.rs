//! Typed access to a GGUF model's metadata. A key of the wrong type is an error naming the key
//! and what it holds; the `_opt` accessors return `None` only when the key is missing.

use super::file::GgufFile;
use super::value::Value;
use crate::error::{Error, Result};

impl GgufFile {
    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv_index.get(key).map(|&i| &self.kvs[i].1)
    }

    /// Every metadata key, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.kvs.iter().map(|(k, _)| k.as_str())
    }

    /// An integer key of any width that is >= 0.
    pub fn u64(&self, key: &str) -> Result<u64> {
        self.required(key, self.u64_opt(key))
    }

    /// An integer key of any width that is >= 0, or `None` when missing.
    pub fn u64_opt(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "a non-negative integer", |v| {
            v.as_integer().and_then(|i| u64::try_from(i).ok())
        })
    }

    /// A number key: F32, F64 or an integer, as f32.
    pub fn f32(&self, key: &str) -> Result<f32> {
        self.required(key, self.f32_opt(key))
    }

    /// A number key, or `None` when missing.
    pub fn f32_opt(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, "a number", Value::as_number)
    }

    /// A bool key, or `None` when missing.
    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "a bool", |v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        })
    }

    /// A string key.
    pub fn string(&self, key: &str) -> Result<&str> {
        self.required(key, self.string_opt(key))
    }

    /// A string key, or `None` when missing.
    pub fn string_opt(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "a string", as_str)
    }

    /// An array key.
    pub fn array(&self, key: &str) -> Result<&[Value]> {
        let array = self.typed(key, "an array", |v| match v {
            Value::Array(a) => Some(a.as_slice()),
            _ => None,
        });
        self.required(key, array)
    }

    /// An array of strings (a vocabulary, merges).
    pub fn strings(&self, key: &str) -> Result<Vec<&str>> {
        self.elements(key, "a string", as_str)
    }

    /// An array of numbers, as f32.
    pub fn f32s(&self, key: &str) -> Result<Vec<f32>> {
        self.elements(key, "a number", Value::as_number)
    }

    /// An array of integers that fit i64 (token types, per-layer counts).
    pub fn i64s(&self, key: &str) -> Result<Vec<i64>> {
        self.elements(key, "an integer in i64's range", |v| {
            v.as_integer().and_then(|i| i64::try_from(i).ok())
        })
    }

    /// `key`'s value through `convert`; `None` when missing, an error when `convert` refuses.
    fn typed<'a, T>(
        &'a self,
        key: &str,
        want: &str,
        convert: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<T>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        convert(value)
            .map(Some)
            .ok_or_else(|| self.key_error(key, format!("expected {want}, found {}", show(value))))
    }

    /// Each element of array `key` through `convert`.
    fn elements<'a, T>(
        &'a self,
        key: &str,
        want: &str,
        convert: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Vec<T>> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                convert(v).ok_or_else(|| {
                    self.key_error(
                        key,
                        format!("element {i}: expected {want}, found {}", show(v)),
                    )
                })
            })
            .collect()
    }

    fn required<T>(&self, key: &str, value: Result<Option<T>>) -> Result<T> {
        value?.ok_or_else(|| self.key_error(key, "missing".into()))
    }

    pub(super) fn key_error(&self, key: &str, message: String) -> Error {
        Error::GgufKey {
            path: self.path().to_path_buf(),
            key: key.into(),
            message,
        }
    }
}

fn as_str(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// A value for an error message: its type, and the value itself unless it is long.
fn show(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("an ARRAY of {} elements", a.len()),
        Value::String(s) if s.len() > 40 => format!("a STRING of {} bytes", s.len()),
        Value::String(s) => format!("the STRING {s:?}"),
        v => format!("{v:?}"),
    }
}
