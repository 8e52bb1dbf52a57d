//! GGUF metadata values: the thirteen value types of the format and the conversions the
//! typed accessors of [`GgufFile`](super::GgufFile) allow between them.

/// One metadata value, as stored in a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Type 0.
    U8(u8),
    /// Type 1.
    I8(i8),
    /// Type 2.
    U16(u16),
    /// Type 3.
    I16(i16),
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 10.
    U64(u64),
    /// Type 11.
    I64(i64),
    /// Type 6.
    F32(f32),
    /// Type 12.
    F64(f64),
    /// Type 7: one byte, 0 or 1.
    Bool(bool),
    /// Type 8: a u64 byte length, then UTF-8 bytes.
    String(String),
    /// Type 9: a u32 element type, a u64 count, then the elements (arrays may nest).
    Array(Vec<Value>),
}

/// GGUF value type ids (gguf.h's `gguf_type`).
pub(super) mod id {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// The fewest bytes one value of type `ty` takes in a file (a string's or an array's length
/// fields), which bounds how many of them the rest of a file can hold; `None` for an unknown
/// type.
pub(super) fn min_size(ty: u32) -> Option<usize> {
    Some(match ty {
        id::U8 | id::I8 | id::BOOL => 1,
        id::U16 | id::I16 => 2,
        id::U32 | id::I32 | id::F32 => 4,
        id::U64 | id::I64 | id::F64 | id::STRING => 8,
        id::ARRAY => 12,
        _ => return None,
    })
}

impl Value {
    /// The type's name as gguf-py spells it (`UINT32`, `STRING`, `ARRAY`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "UINT8",
            Value::I8(_) => "INT8",
            Value::U16(_) => "UINT16",
            Value::I16(_) => "INT16",
            Value::U32(_) => "UINT32",
            Value::I32(_) => "INT32",
            Value::U64(_) => "UINT64",
            Value::I64(_) => "INT64",
            Value::F32(_) => "FLOAT32",
            Value::F64(_) => "FLOAT64",
            Value::Bool(_) => "BOOL",
            Value::String(_) => "STRING",
            Value::Array(_) => "ARRAY",
        }
    }

    /// The value as an i128 when it is an integer of any width or sign, so that every
    /// integer converts without loss before a range check.
    pub(super) fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value as an f32 when it is a number: floats and integers.
    pub(super) fn as_number(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => self.as_integer().map(|v| v as f32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_widen_without_loss() {
        assert_eq!(Value::U64(u64::MAX).as_integer(), Some(u64::MAX.into()));
        assert_eq!(Value::I8(-3).as_integer(), Some(-3));
        assert_eq!(Value::F32(1.0).as_integer(), None);
        assert_eq!(Value::I32(-2).as_number(), Some(-2.0));
        assert_eq!(Value::Bool(true).as_number(), None);
    }

    #[test]
    fn every_type_has_a_minimum_size() {
        for ty in 0..=12 {
            assert!(min_size(ty).is_some(), "type {ty}");
        }
        assert_eq!(min_size(13), None);
    }
}
