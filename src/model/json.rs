//! Typed reads from config.json that name the field when it is missing or of the wrong type.

use serde_json::Value;

use crate::error::{Error, Result};

pub struct Json<'a>(pub &'a Value);

impl<'a> Json<'a> {
    /// A field that is present and not null.
    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    pub fn usize(&self, field: &str) -> Result<usize> {
        self.opt_usize(field)?
            .ok_or_else(|| Error::config(field, "is missing"))
    }

    pub fn opt_usize(&self, field: &str) -> Result<Option<usize>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                Error::config(field, format!("must be a non-negative integer, found {v}"))
            }),
        }
    }

    pub fn usize_or(&self, field: &str, default: usize) -> Result<usize> {
        Ok(self.opt_usize(field)?.unwrap_or(default))
    }

    pub fn opt_f64(&self, field: &str) -> Result<Option<f64>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| Error::config(field, format!("must be a number, found {v}"))),
        }
    }

    pub fn f64_or(&self, field: &str, default: f64) -> Result<f64> {
        Ok(self.opt_f64(field)?.unwrap_or(default))
    }

    pub fn bool_or(&self, field: &str, default: bool) -> Result<bool> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| Error::config(field, format!("must be true or false, found {v}"))),
        }
    }

    pub fn opt_str(&self, field: &str) -> Result<Option<&'a str>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| Error::config(field, format!("must be a string, found {v}"))),
        }
    }

    /// The first of `fields` that is present, as a count.
    pub fn first_usize(&self, fields: &[&str]) -> Result<usize> {
        for f in fields {
            if let Some(v) = self.opt_usize(f)? {
                return Ok(v);
            }
        }
        Err(Error::config(fields.join(" | "), "is missing"))
    }

    /// A list of non-negative integers, or a single one.
    pub fn usize_list(&self, field: &str) -> Result<Vec<usize>> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_u64().map(|n| n as usize).ok_or_else(|| {
                        Error::config(field, format!("must hold integers, found {v}"))
                    })
                })
                .collect(),
            Some(v) => v.as_u64().map(|n| vec![n as usize]).ok_or_else(|| {
                Error::config(field, format!("must be an integer or a list, found {v}"))
            }),
        }
    }
}
