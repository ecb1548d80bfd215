//! A minimal, bounds-checked reader for the flexbuffer maps TFLite stores
//! as custom-op options.
//!
//! The `flexbuffers` crate's reader indexes slices directly in several
//! places (`read_usize`, map key comparison, `get_bool`) and so panics on
//! some corrupt input. Custom options come from model files we did not
//! write, so this reader does its own checked arithmetic instead and only
//! supports what option maps need: a root map with scalar values. Every
//! failure is an `Err(String)`; nothing here can panic or loop for longer
//! than the input is long.

/// A scalar map value, with flexbuffer's inline and indirect forms merged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    /// Any other flexbuffer type (string, vector, map, blob ...), by its
    /// type code.
    Other(u8),
}

// Flexbuffer type codes (the upper six bits of a packed type byte).
const T_NULL: u8 = 0;
const T_INT: u8 = 1;
const T_UINT: u8 = 2;
const T_FLOAT: u8 = 3;
const T_INDIRECT_INT: u8 = 6;
const T_INDIRECT_UINT: u8 = 7;
const T_INDIRECT_FLOAT: u8 = 8;
const T_MAP: u8 = 9;
const T_BOOL: u8 = 26;

/// The root map of a flexbuffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Map<'a> {
    buf: &'a [u8],
    /// Address of the first value slot.
    values: usize,
    /// Byte width of the value slots.
    width: usize,
    /// Address of the first key-offset slot.
    keys: usize,
    /// Byte width of the key-offset slots.
    key_width: usize,
    len: usize,
}

fn byte_width(code: u64) -> Option<usize> {
    match code {
        1 | 2 | 4 | 8 => Some(code as usize),
        _ => None,
    }
}

fn slice(buf: &[u8], at: usize, len: usize) -> Result<&[u8], String> {
    at.checked_add(len)
        .and_then(|end| buf.get(at..end))
        .ok_or_else(|| {
            format!(
                "{len} bytes at offset {at} are past the end ({} bytes)",
                buf.len()
            )
        })
}

fn read_uint(buf: &[u8], at: usize, width: usize) -> Result<u64, String> {
    let b = slice(buf, at, width)?;
    let mut le = [0u8; 8];
    le[..width].copy_from_slice(b);
    Ok(u64::from_le_bytes(le))
}

fn read_int(buf: &[u8], at: usize, width: usize) -> Result<i64, String> {
    let u = read_uint(buf, at, width)?;
    // Sign-extend from `width` bytes.
    let shift = 64 - 8 * width as u32;
    Ok(((u << shift) as i64) >> shift)
}

fn read_float(buf: &[u8], at: usize, width: usize) -> Result<f64, String> {
    match width {
        4 => Ok(f64::from(f32::from_bits(read_uint(buf, at, 4)? as u32))),
        8 => Ok(f64::from_bits(read_uint(buf, at, 8)?)),
        w => Err(format!("{w}-byte float at offset {at}")),
    }
}

/// Follows the backwards offset stored at `at`.
fn deref(buf: &[u8], at: usize, width: usize) -> Result<usize, String> {
    let off = read_uint(buf, at, width)?;
    usize::try_from(off)
        .ok()
        .and_then(|off| at.checked_sub(off))
        .ok_or_else(|| format!("offset {off} at {at} points before the start"))
}

impl<'a> Map<'a> {
    /// Reads the root of `buf`, which must be a map.
    pub(crate) fn root(buf: &'a [u8]) -> Result<Self, String> {
        let n = buf.len();
        if n < 3 {
            return Err(format!("{n} bytes is too short for a flexbuffer"));
        }
        let root_width =
            byte_width(u64::from(buf[n - 1])).ok_or_else(|| format!("bad root byte width {}", buf[n - 1]))?;
        let packed = buf[n - 2];
        let (ty, width) = (packed >> 2, 1usize << (packed & 3));
        if ty != T_MAP {
            return Err(format!("root is flexbuffer type {ty}, expected a map"));
        }
        let slot = (n - 2)
            .checked_sub(root_width)
            .ok_or("root value does not fit in the buffer")?;
        let values = deref(buf, slot, root_width)?;
        // A map's values are preceded by: keys offset, keys width, length.
        let prefix = values
            .checked_sub(3 * width)
            .ok_or("map header is before the start of the buffer")?;
        let keys_slot = prefix;
        let key_width = byte_width(read_uint(buf, prefix + width, width)?).ok_or("bad map key byte width")?;
        let len = read_uint(buf, prefix + 2 * width, width)?;
        let len = usize::try_from(len).map_err(|_| format!("map length {len} is too large"))?;
        let keys = deref(buf, keys_slot, width)?;
        // All slots and type bytes must be inside the buffer; this also bounds
        // `len` by the buffer size.
        let value_bytes = len
            .checked_mul(width + 1)
            .ok_or_else(|| format!("map length {len} is too large"))?;
        slice(buf, values, value_bytes).map_err(|e| format!("map values: {e}"))?;
        let key_bytes = len
            .checked_mul(key_width)
            .ok_or_else(|| format!("map length {len} is too large"))?;
        slice(buf, keys, key_bytes).map_err(|e| format!("map keys: {e}"))?;
        Ok(Map {
            buf,
            values,
            width,
            keys,
            key_width,
            len,
        })
    }

    /// Whether entry `i`'s key is exactly `key`.
    fn key_is(&self, i: usize, key: &str) -> Result<bool, String> {
        // In bounds: checked in `root`.
        let at = deref(self.buf, self.keys + i * self.key_width, self.key_width)?;
        let want = key.as_bytes();
        // Compare at most `key.len() + 1` bytes (key and its terminator).
        let have = &self.buf[at.min(self.buf.len())..];
        let n = have.len().min(want.len() + 1);
        let have = &have[..n];
        if have.len() <= want.len() {
            // The buffer ends before the terminator: a match is impossible,
            // but only report corruption when the prefix matched.
            return if want.starts_with(have) {
                Err(format!("key at offset {at} has no terminator"))
            } else {
                Ok(false)
            };
        }
        Ok(&have[..want.len()] == want && have[want.len()] == 0)
    }

    /// The value of entry `i`.
    fn value(&self, i: usize) -> Result<Value, String> {
        // Slots and type bytes are in bounds: checked in `root`.
        let slot = self.values + i * self.width;
        let packed = self.buf[self.values + self.len * self.width + i];
        let (ty, child_width) = (packed >> 2, 1usize << (packed & 3));
        let w = self.width;
        Ok(match ty {
            T_NULL => Value::Null,
            T_INT => Value::Int(read_int(self.buf, slot, w)?),
            T_UINT => Value::UInt(read_uint(self.buf, slot, w)?),
            T_FLOAT => Value::Float(read_float(self.buf, slot, w)?),
            T_BOOL => Value::Bool(read_uint(self.buf, slot, w)? != 0),
            T_INDIRECT_INT => Value::Int(read_int(self.buf, deref(self.buf, slot, w)?, child_width)?),
            T_INDIRECT_UINT => Value::UInt(read_uint(self.buf, deref(self.buf, slot, w)?, child_width)?),
            T_INDIRECT_FLOAT => Value::Float(read_float(self.buf, deref(self.buf, slot, w)?, child_width)?),
            other => Value::Other(other),
        })
    }

    /// Looks `key` up. `Ok(None)` if the map has no such key.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Value>, String> {
        for i in 0..self.len {
            if self.key_is(i, key).map_err(|e| format!("key {i}: {e}"))? {
                return self
                    .value(i)
                    .map(Some)
                    .map_err(|e| format!("value of \"{key}\": {e}"));
            }
        }
        Ok(None)
    }
}

impl Value {
    /// The value as an integer, converting like flexbuffers' `AsInt64`
    /// (floats truncate, booleans are 0/1). `None` for null and
    /// non-scalar values.
    pub(crate) fn as_i64(self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(i),
            Value::UInt(u) => i64::try_from(u).ok(),
            Value::Float(f) if f.is_finite() => Some(f as i64),
            Value::Bool(b) => Some(i64::from(b)),
            _ => None,
        }
    }

    /// The value as a float, converting like flexbuffers' `AsDouble`.
    pub(crate) fn as_f64(self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(i as f64),
            Value::UInt(u) => Some(u as f64),
            Value::Float(f) => Some(f),
            Value::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// The value as a boolean, converting like flexbuffers' `AsBool`.
    pub(crate) fn as_bool(self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(b),
            Value::Int(i) => Some(i != 0),
            Value::UInt(u) => Some(u != 0),
            Value::Float(f) => Some(f != 0.0),
            _ => None,
        }
    }
}
