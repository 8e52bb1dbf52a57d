//! Seeded mutations: raw bytes (flips, inserts, deletes, truncation, splicing), JSON-aware edits
//! (odd values, dropped and duplicated keys, raw `NaN`/`1e999` text) and safetensors header edits
//! (the 8-byte length field, the header JSON). Deterministic for a given `Rng`.

use moe_gpu::synthetic::Rng;
use serde_json::{Map, Value, json};

/// Text standing in for a value while the JSON is printed; replaced by raw text afterwards, so
/// that the output can hold what `serde_json` would never write (duplicate keys, `NaN`).
const SENTINEL: &str = "\"__moe_gpu_fuzz_sentinel__\"";

/// Raw JSON texts that replace a value: huge, negative, non-finite, wrong-typed.
const ODD: [&str; 20] = [
    "1e308",
    "1e999",
    "-1",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "0",
    "0.5",
    "-0.0",
    "NaN",
    "Infinity",
    "\"NaN\"",
    "null",
    "true",
    "[]",
    "{}",
    "\"x\"",
    "[1,2,3]",
    "1e-320",
];

/// One to four stacked byte-level mutations of `input`; `others` supply splice material.
pub fn bytes(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        byte_op(rng, &mut v, others, None);
    }
    v
}

/// A byte mutation at a position in `focus` (when given and non-empty) or anywhere.
fn byte_op(rng: &mut Rng, v: &mut Vec<u8>, others: &[Vec<u8>], focus: Option<usize>) {
    let span = focus.unwrap_or(v.len()).min(v.len());
    let pos = |rng: &mut Rng, n: usize| if n == 0 { 0 } else { rng.below(n) };
    match rng.below(7) {
        0 if !v.is_empty() => {
            let i = pos(rng, span);
            v[i] ^= 1 << rng.below(8);
        }
        1 if !v.is_empty() => {
            let i = pos(rng, span);
            v[i] = [0, 0xff, b'"', b'{', b'}', b'[', b']', b',', b':', b'9'][rng.below(10)];
        }
        2 => {
            let i = pos(rng, span + 1);
            let n = 1 + rng.below(8);
            for _ in 0..n {
                v.insert(i, rng.next_u64() as u8);
            }
        }
        3 if !v.is_empty() => {
            let i = pos(rng, span);
            let n = (1 + rng.below(16)).min(v.len() - i);
            v.drain(i..i + n);
        }
        4 => {
            let keep = pos(rng, v.len() + 1);
            v.truncate(keep);
        }
        5 if !others.is_empty() => {
            // Splice: our head, someone's tail.
            let o = &others[rng.below(others.len())];
            let a = pos(rng, v.len() + 1);
            let b = pos(rng, o.len() + 1);
            v.truncate(a);
            v.extend_from_slice(&o[b..]);
        }
        _ if v.len() >= 2 => {
            // Copy a chunk over another place in the same input.
            let a = pos(rng, span);
            let b = pos(rng, v.len());
            let n = (1 + rng.below(32)).min(v.len() - a).min(v.len() - b);
            let chunk = v[b..b + n].to_vec();
            v[a..a + n].copy_from_slice(&chunk);
        }
        _ => v.push(rng.next_u64() as u8),
    }
}

/// A JSON-aware mutation of `input` (one to three edits), falling back to bytes when it is not
/// JSON; one time in five it is plain byte mutation anyway.
pub fn json(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let Ok(mut root) = serde_json::from_slice::<Value>(input) else {
        return bytes(rng, input, others);
    };
    if rng.below(5) == 0 {
        return bytes(rng, input, others);
    }
    for _ in 0..rng.below(3) {
        edit_value(rng, &mut root, false);
    }
    // The last edit may write raw text (duplicate key, NaN).
    let raw = edit_value(rng, &mut root, true);
    let text = root.to_string();
    match raw {
        Some(r) => text.replacen(SENTINEL, &r, 1).into_bytes(),
        None => text.into_bytes(),
    }
}

/// A random path from the root: object keys and array indices.
fn random_path(rng: &mut Rng, root: &Value) -> Vec<Result<String, usize>> {
    let mut path = Vec::new();
    let mut node = root;
    for _ in 0..rng.below(6) {
        if rng.below(4) == 0 {
            break;
        }
        match node {
            Value::Object(m) if !m.is_empty() => {
                let (k, v) = m.iter().nth(rng.below(m.len())).unwrap();
                path.push(Ok(k.clone()));
                node = v;
            }
            Value::Array(a) if !a.is_empty() => {
                let i = rng.below(a.len());
                path.push(Err(i));
                node = &a[i];
            }
            _ => break,
        }
    }
    path
}

fn walk<'v>(mut node: &'v mut Value, path: &[Result<String, usize>]) -> &'v mut Value {
    for p in path {
        node = match p {
            Ok(k) => node.get_mut(k.as_str()).unwrap(),
            Err(i) => node.get_mut(*i).unwrap(),
        };
    }
    node
}

/// Walks to a random node and edits it. With `raw`, may leave the sentinel in its place and
/// return the raw text that replaces it.
fn edit_value(rng: &mut Rng, root: &mut Value, raw: bool) -> Option<String> {
    let path = random_path(rng, root);
    let node = walk(root, &path);
    let choice = rng.below(6);
    if let Value::Object(m) = node
        && !m.is_empty()
        && (choice == 0 || (choice == 1 && raw))
    {
        let k = m.keys().nth(rng.below(m.len())).cloned().unwrap();
        if choice == 0 {
            m.remove(&k);
            return None;
        }
        // Duplicate a key with an odd second value.
        let mut text = String::from("{");
        for (key, val) in m.iter() {
            text += &format!("{}:{},", Value::String(key.clone()), val);
        }
        text += &format!("{}:{}}}", Value::String(k), ODD[rng.below(ODD.len())]);
        *node = Value::String(SENTINEL.trim_matches('"').into());
        return Some(text);
    }
    if let Value::Array(a) = node
        && !a.is_empty()
        && choice == 2
    {
        let i = rng.below(a.len());
        if rng.below(2) == 0 {
            a.remove(i);
        } else {
            let x = a[i].clone();
            a.extend(std::iter::repeat_n(x, 1 + rng.below(3)));
        }
        return None;
    }
    if let Value::Object(m) = node
        && choice == 3
    {
        m.insert(format!("k{}", rng.below(4)), json!(rng.next_u64()));
        return None;
    }
    if raw {
        *node = Value::String(SENTINEL.trim_matches('"').into());
        return Some(ODD[rng.below(ODD.len())].to_string());
    }
    *node = odd_value(rng);
    None
}

/// An odd value that `serde_json` can hold.
fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 => json!(u64::MAX),
        1 => json!(i64::MIN),
        2 => json!(-1),
        3 => json!(1e308),
        4 => json!(0),
        5 => json!("NaN"),
        6 => Value::Null,
        7 => json!([]),
        8 => Value::Object(Map::new()),
        _ => json!(rng.next_u64() >> rng.below(64)),
    }
}

/// A safetensors file mutated in its length field, its header JSON, or its bytes (mostly the
/// header's).
pub fn safetensors(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let header_len = input
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
        .filter(|&n| n <= input.len() - 8);
    let Some(n) = header_len else {
        return bytes(rng, input, others);
    };
    match rng.below(4) {
        0 => {
            // The length field.
            let mut v = input.to_vec();
            let len: u64 = match rng.below(7) {
                0 => 0,
                1 => u64::MAX,
                2 => (n as u64).wrapping_add(1 + rng.below(8) as u64),
                3 => (n as u64).saturating_sub(1 + rng.below(8) as u64),
                4 => input.len() as u64,
                5 => 1 << (20 + rng.below(40)),
                _ => rng.next_u64(),
            };
            v[..8].copy_from_slice(&len.to_le_bytes());
            v
        }
        1 | 2 => {
            // The header JSON, the length field rewritten to match (or not, one time in four).
            let header = json(rng, &input[8..8 + n], &[]);
            let mut v = if rng.below(4) == 0 {
                n as u64
            } else {
                header.len() as u64
            }
            .to_le_bytes()
            .to_vec();
            v.extend_from_slice(&header);
            v.extend_from_slice(&input[8 + n..]);
            v
        }
        _ => {
            let mut v = input.to_vec();
            for _ in 0..1 + rng.below(3) {
                let focus = if rng.below(5) == 0 { None } else { Some(8 + n) };
                byte_op(rng, &mut v, others, focus);
            }
            v
        }
    }
}
