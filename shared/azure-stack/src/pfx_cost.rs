//! What opening a PFX would cost, read before it is opened. Every password-based step of PKCS#12 (the
//! MAC over the file, each encrypted bag, the shrouded key) runs a key derivation whose iteration count
//! the file itself names, up to 2^31-1: one 64 KiB upload could hold a request thread for hours. The
//! counts are found by walking the DER (and BER, as Windows writes it) without decrypting anything:
//! MacData, pkcs-12PbeParams and PBKDF2-params all hold a salt (OCTET STRING) directly followed by the
//! iteration count (INTEGER), and the authenticated safe's contents are DER inside OCTET STRINGs.

/// Most iterations one derivation may ask for. Exports use 2,000 (Windows) to 10,000 (OpenSSL 3:
/// 2,048 for keys, the MAC likewise); NIST's and OWASP's highest PBKDF2 advice is 600,000.
pub(crate) const MAX_ITERATIONS: u64 = 1_000_000;
/// Most iterations all derivations of one file may ask for together.
pub(crate) const MAX_TOTAL_ITERATIONS: u64 = 4_000_000;
/// Nesting deeper than any PFX has: a file nested deeper is refused (were its deep parts skipped,
/// a count could hide below them).
const MAX_DEPTH: usize = 24;
/// The DER of scrypt's OID (1.3.6.1.4.1.11591.4.11). PBES2 may name scrypt, whose cost is N·r·p
/// and memory 128·N·r bytes: no PFX exporter uses it, so a file that names it is refused.
const SCRYPT_OID: &[u8] = &[0x06, 0x09, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x04, 0x0b];

/// The iteration counts the PFX names, in the order found; `None` when it is not readable DER/BER.
pub(crate) fn iteration_counts(pfx: &[u8]) -> Option<Vec<u64>> {
    if pfx.windows(SCRYPT_OID.len()).any(|w| w == SCRYPT_OID) {
        return None;
    }
    let mut counts = Vec::new();
    let (element, rest) = element(pfx)?;
    if !rest.iter().all(|b| *b == 0) {
        return None;
    }
    walk(&element, 0, &mut counts).ok()?;
    Some(counts)
}

/// Why a walk stopped.
enum Stop {
    /// The bytes are not DER/BER (fine below an OCTET STRING: a salt or other data).
    NotDer,
    /// Nested deeper than [`MAX_DEPTH`]: the file is refused, never skipped.
    TooDeep,
}

/// Why the PFX may not be opened, if it asks for too much work.
pub(crate) fn refusal(counts: &[u64]) -> Option<String> {
    let most = counts.iter().copied().max().unwrap_or(0);
    let total = counts.iter().fold(0u64, |sum, c| sum.saturating_add(*c));
    if most > MAX_ITERATIONS {
        Some(format!(
            "asks for {most} key-derivation iterations; at most {MAX_ITERATIONS} are accepted (export the \
             PFX again with the tool's default, e.g. openssl pkcs12 -export without -iter)"
        ))
    } else if total > MAX_TOTAL_ITERATIONS {
        Some(format!(
            "asks for {total} key-derivation iterations in all; at most {MAX_TOTAL_ITERATIONS} are accepted"
        ))
    } else {
        None
    }
}

/// One TLV: its tag byte, its contents (the children's bytes for a constructed one).
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
}

fn walk(e: &Element<'_>, depth: usize, counts: &mut Vec<u64>) -> Result<(), Stop> {
    if depth > MAX_DEPTH {
        return Err(Stop::TooDeep);
    }
    const CONSTRUCTED: u8 = 0x20;
    const OCTET_STRING: u8 = 0x04;
    const INTEGER: u8 = 0x02;
    if e.tag & CONSTRUCTED == 0 {
        // DER inside an OCTET STRING (the authenticated safe, each SafeContents); anything else
        // (ciphertext, a salt) is no DER and is skipped, but never a part too deep to finish.
        if e.tag == OCTET_STRING
            && let Some((inner, rest)) = element(e.contents)
            && rest.is_empty()
            && inner.tag & CONSTRUCTED != 0
        {
            let mut found = Vec::new();
            match walk(&inner, depth + 1, &mut found) {
                Ok(()) => counts.extend(found),
                Err(Stop::NotDer) => {}
                Err(Stop::TooDeep) => return Err(Stop::TooDeep),
            }
        }
        return Ok(());
    }
    let mut children = Vec::new();
    let mut rest = e.contents;
    while !rest.is_empty() {
        let (child, after) = element(rest).ok_or(Stop::NotDer)?;
        children.push(child);
        rest = after;
    }
    for pair in children.windows(2) {
        if pair[0].tag == OCTET_STRING && pair[1].tag == INTEGER {
            counts.push(unsigned(pair[1].contents));
        }
    }
    for child in &children {
        walk(child, depth + 1, counts)?;
    }
    Ok(())
}

/// A non-negative INTEGER's value, saturating (a negative one counts as huge: it is no count).
fn unsigned(bytes: &[u8]) -> u64 {
    let bytes = match bytes {
        [0, rest @ ..] => rest,
        [first, ..] if first & 0x80 != 0 => return u64::MAX,
        other => other,
    };
    if bytes.len() > 8 {
        return u64::MAX;
    }
    bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b))
}

/// The first TLV of `bytes` and what follows it. Definite lengths, and BER's indefinite length
/// (contents up to the matching end-of-contents octets) on constructed elements.
fn element(bytes: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers: no PKCS#12 structure uses them
    }
    let (&first, rest) = rest.split_first()?;
    if first == 0x80 {
        if tag & 0x20 == 0 {
            return None;
        }
        let end = indefinite_end(rest, 0)?;
        return Some((Element { tag, contents: &rest[..end] }, &rest[end + 2..]));
    }
    let (length, rest) = if first & 0x80 == 0 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let length = rest[..n].iter().fold(0usize, |l, b| (l << 8) | usize::from(*b));
        (length, &rest[n..])
    };
    if rest.len() < length {
        return None;
    }
    Some((Element { tag, contents: &rest[..length] }, &rest[length..]))
}

/// Where the end-of-contents octets of an indefinite-length element whose contents start at
/// `bytes` are (the offset of the `00 00`).
fn indefinite_end(bytes: &[u8], depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut at = 0;
    loop {
        let rest = bytes.get(at..)?;
        if rest.starts_with(&[0, 0]) {
            return Some(at);
        }
        if rest.get(1) == Some(&0x80) {
            let inner = indefinite_end(rest.get(2..)?, depth + 1)?;
            at += 2 + inner + 2;
        } else {
            let (_, after) = element(rest)?;
            at = bytes.len() - after.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::tests::fixture;
    use base64::Engine as _;

    fn pfx(name: &str) -> Vec<u8> {
        let text: String = fixture(name).chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD.decode(text).unwrap()
    }

    #[test]
    fn the_fixtures_name_the_iterations_their_exporters_chose() {
        // client.pfx: OpenSSL 3 (PBKDF2 2,048 for the key and certificates, MAC 2,048);
        // client-legacy.pfx: -legacy (pkcs-12PbeParams 2,048, MAC 2,048).
        for name in ["client.pfx.b64", "client-legacy.pfx.b64"] {
            let counts = iteration_counts(&pfx(name)).unwrap();
            assert!(counts.len() >= 3, "{name}: {counts:?}");
            assert!(counts.iter().all(|c| (1..=10_000).contains(c)), "{name}: {counts:?}");
            assert_eq!(refusal(&counts), None);
        }
    }

    #[test]
    fn the_mac_iterations_of_a_real_pfx_raised_to_2_pow_31_minus_1_are_found_and_refused() {
        let counts = iteration_counts(&pfx("client-2147483647-mac-iterations.pfx.b64")).unwrap();
        assert!(counts.contains(&2_147_483_647), "{counts:?}");
        assert!(refusal(&counts).unwrap().contains("2147483647"));
    }

    #[test]
    fn integers_are_read_as_counts_and_broken_input_is_no_pfx() {
        assert_eq!(unsigned(&[0x08, 0x00]), 2048);
        assert_eq!(unsigned(&[0x00, 0xff]), 255);
        assert_eq!(unsigned(&[0xff]), u64::MAX);
        assert_eq!(unsigned(&[1; 9]), u64::MAX);
        assert!(iteration_counts(b"").is_none());
        assert!(iteration_counts(&[0x30, 0x05, 0x04]).is_none());
        assert!(refusal(&[MAX_ITERATIONS; 5]).unwrap().contains("in all"));
    }

    #[test]
    fn a_count_hidden_below_nesting_too_deep_to_walk_or_a_scrypt_kdf_refuses_the_file() {
        // SEQUENCE { OCTET STRING { 30 levels of SEQUENCE around (OCTET STRING salt, INTEGER 2^31-1) } }
        let mut inner = vec![0x30, 0x09, 0x04, 0x01, 0x00, 0x02, 0x04, 0x7f, 0xff, 0xff, 0xff];
        for _ in 0..30 {
            let mut wrapped = vec![0x30, inner.len() as u8];
            wrapped.extend(&inner);
            inner = wrapped;
        }
        let mut octets = vec![0x04, 0x82, (inner.len() >> 8) as u8, inner.len() as u8];
        octets.extend(&inner);
        let mut deep = vec![0x30, 0x82, (octets.len() >> 8) as u8, octets.len() as u8];
        deep.extend(&octets);
        assert!(iteration_counts(&deep).is_none());
        // SEQUENCE { scrypt's OID }: well-formed, no count, refused for naming scrypt.
        let mut scrypt = vec![0x30, SCRYPT_OID.len() as u8];
        scrypt.extend(SCRYPT_OID);
        assert!(iteration_counts(&scrypt).is_none());
        assert_eq!(iteration_counts(&[0x30, 0x03, 0x06, 0x01, 0x2a]), Some(vec![]));
    }
}
