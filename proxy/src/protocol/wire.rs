//! Bounds-checked reading and writing of the protocol's basic types.

use super::packet::PacketError;

/// A cursor over a payload; every read checks bounds and fails instead of panicking.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

fn short() -> PacketError {
    PacketError::Malformed("payload shorter than its fields")
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn u8(&mut self) -> Result<u8, PacketError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, PacketError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u24(&mut self) -> Result<u32, PacketError> {
        let b = self.take(3)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    pub fn u32(&mut self) -> Result<u32, PacketError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, PacketError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], PacketError> {
        if self.buf.len() < n {
            return Err(short());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), PacketError> {
        self.take(n).map(|_| ())
    }

    /// A NUL-terminated string (the NUL is consumed, not returned).
    pub fn null_str(&mut self) -> Result<&'a [u8], PacketError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(PacketError::Malformed("missing NUL terminator"))?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// A NUL-terminated string, or the rest when no NUL follows (some clients omit it).
    pub fn null_str_or_rest(&mut self) -> &'a [u8] {
        match self.buf.iter().position(|&b| b == 0) {
            Some(end) => {
                let s = &self.buf[..end];
                self.buf = &self.buf[end + 1..];
                s
            }
            None => std::mem::take(&mut self.buf),
        }
    }

    /// A length-encoded integer; `None` for the NULL marker 0xfb.
    pub fn lenenc_int(&mut self) -> Result<Option<u64>, PacketError> {
        match self.u8()? {
            0xfb => Ok(None),
            0xfc => Ok(Some(u64::from(self.u16()?))),
            0xfd => Ok(Some(u64::from(self.u24()?))),
            0xfe => Ok(Some(self.u64()?)),
            0xff => Err(PacketError::Malformed(
                "0xff is not a length-encoded integer",
            )),
            n => Ok(Some(u64::from(n))),
        }
    }

    pub fn lenenc_bytes(&mut self) -> Result<&'a [u8], PacketError> {
        let n = self.lenenc_int()?.unwrap_or(0);
        let n = usize::try_from(n).map_err(|_| short())?;
        self.take(n)
    }
}

pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=250 => out.push(v as u8),
        251..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

pub fn put_lenenc_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_lenenc_int(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub fn put_null_str(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lenenc_roundtrip(v in any::<u64>()) {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, v);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.lenenc_int()?, Some(v));
            prop_assert!(r.is_empty());
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            let _ = r.lenenc_bytes();
            let _ = r.null_str();
            let _ = r.u64();
            let _ = r.lenenc_int();
        }
    }

    #[test]
    fn short_reads_fail() {
        let mut r = Reader::new(&[0xfc, 1]);
        assert!(r.lenenc_int().is_err());
        let mut r = Reader::new(&[5, b'a']);
        assert!(r.lenenc_bytes().is_err());
    }
}
