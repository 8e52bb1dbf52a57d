//! Byte counts as people write them (`512M`, `2G`, `1.5GiB`): `--expert-budget`,
//! `MOE_GPU_MAX_BINDING` and `MOE_GPU_DEVICE_MEMORY`, and as messages print them.

use crate::error::{Error, Result};

/// A byte count in the largest binary unit it reaches: `512 B`, `1.50 KiB`, `3.25 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    match unit {
        "B" => format!("{bytes} B"),
        _ => format!("{value:.2} {unit}"),
    }
}

/// Parses a byte count: a number with an optional binary suffix, `K`/`M`/`G`/`T` with an
/// optional `iB` or `B` (512M = 512 MiB, 2G = 2 GiB, 1.5GiB); a bare number is bytes.
pub fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let bad = || {
        Error::input(format!(
            "`{text}` is not a byte count; use e.g. 512M, 2G, 1.5GiB or 1048576"
        ))
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let unit = suffix.trim().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let scale: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2G").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("2g").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("64KB").unwrap(), 64 << 10);
        assert_eq!(parse_bytes("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_bytes(" 3 M ").unwrap(), 3 << 20);
        for bad in ["", "M", "12X", "-1G", "1.2.3M", "1e3", "lots"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn byte_counts_print_in_the_largest_unit_reached() {
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.50 KiB");
        assert_eq!(format_bytes(3 << 29), "1.50 GiB");
        assert_eq!(format_bytes(5 << 40), "5.00 TiB");
    }
}
