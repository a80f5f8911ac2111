//! TYPE A line-ending conversion (RFC 959 section 3.1.1.1): the wire uses CRLF,
//! storage keeps LF. Both converters carry state across chunk boundaries.

/// LF → CRLF for sending. A LF already preceded by CR is left alone, so a file
/// that already has CRLF endings is sent unchanged.
#[derive(Debug, Default)]
pub struct ToCrlf {
    last_was_cr: bool,
}

impl ToCrlf {
    pub fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 16);
        for &b in input {
            if b == b'\n' && !self.last_was_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.last_was_cr = b == b'\r';
        }
    }

    /// How many bytes `convert` would add for `input` (for SIZE in TYPE A).
    pub fn extra(&mut self, input: &[u8]) -> u64 {
        let mut extra = 0;
        for &b in input {
            if b == b'\n' && !self.last_was_cr {
                extra += 1;
            }
            self.last_was_cr = b == b'\r';
        }
        extra
    }
}

/// CRLF → LF for receiving. A CR at the end of a chunk is held back until the
/// next byte shows whether it starts a CRLF.
#[derive(Debug, Default)]
pub struct FromCrlf {
    held_cr: bool,
}

impl FromCrlf {
    pub fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + 1);
        for &b in input {
            if self.held_cr {
                self.held_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                self.held_cr = true;
            } else {
                out.push(b);
            }
        }
    }

    /// Emits a CR held back at the very end of the stream.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.held_cr) {
            out.push(b'\r');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_crlf(chunks: &[&[u8]]) -> Vec<u8> {
        let mut conv = ToCrlf::default();
        let mut out = Vec::new();
        for chunk in chunks {
            conv.convert(chunk, &mut out);
        }
        out
    }

    fn from_crlf(chunks: &[&[u8]]) -> Vec<u8> {
        let mut conv = FromCrlf::default();
        let mut out = Vec::new();
        for chunk in chunks {
            conv.convert(chunk, &mut out);
        }
        conv.finish(&mut out);
        out
    }

    #[test]
    fn lf_to_crlf() {
        assert_eq!(to_crlf(&[b"a\nb\n"]), b"a\r\nb\r\n");
        assert_eq!(to_crlf(&[b"a\r\nb"]), b"a\r\nb");
        assert_eq!(to_crlf(&[b"a\r", b"\nb\n"]), b"a\r\nb\r\n");
        let mut conv = ToCrlf::default();
        assert_eq!(conv.extra(b"a\nb\r\nc\n"), 2);
    }

    #[test]
    fn crlf_to_lf() {
        assert_eq!(from_crlf(&[b"a\r\nb\r\n"]), b"a\nb\n");
        assert_eq!(from_crlf(&[b"a\r", b"\nb"]), b"a\nb");
        assert_eq!(from_crlf(&[b"a\rb"]), b"a\rb");
        assert_eq!(from_crlf(&[b"a\r"]), b"a\r");
        assert_eq!(from_crlf(&[b"a\r\r\n"]), b"a\r\n");
    }
}
