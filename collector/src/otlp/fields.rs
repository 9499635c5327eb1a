//! A protobuf field reader over borrowed bytes, for the in-place fast paths of OTLP ingest
//! (spans in [`super::wire`], metrics in `crate::prom::otlp`): fields in order, values
//! borrowed, malformed input reported rather than panicking.

/// One protobuf field value.
#[derive(Clone, Copy)]
pub enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32,
    Bytes(&'a [u8]),
}

/// Fields of one message, in order; `None` ends the message or reports malformed input
/// (`fail` tells which).
pub struct Fields<'a> {
    pub buf: &'a [u8],
    pub fail: bool,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf, fail: false }
    }

    #[inline]
    pub fn varint(&mut self) -> Option<u64> {
        // Most varints here (tags, lengths, enums) are one byte.
        if let Some((&b, rest)) = self.buf.split_first()
            && b < 0x80
        {
            self.buf = rest;
            return Some(u64::from(b));
        }
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first()?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    #[inline]
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    #[inline]
    fn read(&mut self) -> Option<(u32, Wire<'a>)> {
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).ok().filter(|f| *f > 0)?;
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            2 => {
                let n = usize::try_from(self.varint()?).ok()?;
                Wire::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            _ => return None,
        };
        Some((field, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u32, Wire<'a>);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() || self.fail {
            return None;
        }
        let item = self.read();
        if item.is_none() {
            self.fail = true;
        }
        item
    }
}

pub fn bytes(w: Wire<'_>) -> Option<&[u8]> {
    match w {
        Wire::Bytes(b) => Some(b),
        _ => None,
    }
}

pub fn string(w: Wire<'_>) -> Option<&str> {
    std::str::from_utf8(bytes(w)?).ok()
}

pub fn varint(w: Wire<'_>) -> Option<u64> {
    match w {
        Wire::Varint(v) => Some(v),
        _ => None,
    }
}

pub fn fixed64(w: Wire<'_>) -> Option<u64> {
    match w {
        Wire::Fixed64(v) => Some(v),
        _ => None,
    }
}
