//! Card numbers and security codes: PANs from a CSPRNG with the brand's prefix and a Luhn check
//! digit, the keyed PAN hash used for lookup, masking, and CVVs derived (never stored) from PAN and
//! expiry with a keyed hash. A `Pan` never prints its digits.

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

/// The default card networks: (name, prefixes, length, CVV length). The networks in use are
/// configuration (`cards.networks`, `config::CardNetwork`), which defaults to this list.
pub const BRANDS: &[(&str, &[&str], usize, usize)] = &[
    ("visa", &["4"], 16, 3),
    ("mastercard", &["51", "52", "53", "54", "55"], 16, 3),
    ("american express", &["34", "37"], 15, 4),
    ("discover", &["6011", "65"], 16, 3),
];

pub fn brand(name: &str) -> Option<&'static (&'static str, &'static [&'static str], usize, usize)> {
    let n = name.trim().to_lowercase();
    BRANDS.iter().find(|b| b.0 == n)
}

/// A full card number. `Debug` and `Display` show only the masked form.
#[derive(Clone, PartialEq, Eq)]
pub struct Pan(String);

impl Pan {
    /// Parses digits (spaces and dashes ignored); checks length and the Luhn digit.
    pub fn parse(raw: &str) -> Option<Self> {
        let digits: String = raw.chars().filter(|c| *c != ' ' && *c != '-').collect();
        if !(12..=19).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) || !luhn_valid(&digits) {
            return None;
        }
        Some(Self(digits))
    }
    pub fn digits(&self) -> &str {
        &self.0
    }
    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }
    /// First six and last four digits, the rest as `*`.
    pub fn masked(&self) -> String {
        let n = self.0.len();
        format!("{}{}{}", &self.0[..6], "*".repeat(n - 10), &self.0[n - 4..])
    }
}

impl std::fmt::Debug for Pan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

impl std::fmt::Display for Pan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

fn digit(c: char) -> u32 {
    c.to_digit(10).unwrap_or(0)
}

/// The Luhn check digit for a number without it.
pub fn luhn_digit(partial: &str) -> char {
    let sum: u32 = partial
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = digit(c);
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    char::from_digit((10 - sum % 10) % 10, 10).unwrap_or('0')
}

pub fn luhn_valid(number: &str) -> bool {
    match number.len().checked_sub(1) {
        Some(n) if n > 0 => number[n..].starts_with(luhn_digit(&number[..n])),
        _ => false,
    }
}

/// A new random PAN for a brand (CSPRNG digits, brand prefix, Luhn digit).
pub fn generate(brand: &(&str, &[&str], usize, usize)) -> Pan {
    generate_for(brand.1, brand.2)
}

/// A new random PAN of `len` digits starting with one of `prefixes` (CSPRNG digits, Luhn digit).
/// The configuration guarantees at least one prefix, shorter than `len - 1`.
pub fn generate_for<P: AsRef<str>>(prefixes: &[P], len: usize) -> Pan {
    let mut rng = rand::rngs::OsRng;
    let prefix = prefixes.get(rng.gen_range(0..prefixes.len().max(1))).map_or("4", AsRef::as_ref);
    let mut s = String::with_capacity(len);
    s.push_str(prefix);
    while s.len() < len.saturating_sub(1) {
        s.push(char::from_digit(rng.gen_range(0..10), 10).unwrap_or('0'));
    }
    let check = luhn_digit(&s);
    s.push(check);
    Pan(s)
}

fn mac(key: &str, parts: &[&str]) -> Vec<u8> {
    match <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()) {
        Ok(mut m) => {
            for p in parts {
                m.update(p.as_bytes());
                m.update(b"\x1f");
            }
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Keyed hash under which a PAN is stored and looked up.
pub fn pan_hash(key: &str, pan: &Pan) -> String {
    hex::encode(mac(key, &["pan", pan.digits()]))
}

/// The CVV of a card: derived from PAN and expiry with a keyed hash, so it is verifiable but never stored.
pub fn cvv(key: &str, pan: &Pan, month: i32, year: i32, len: usize) -> String {
    let m = mac(key, &["cvv", pan.digits(), &format!("{month:02}"), &year.to_string()]);
    let mut n: u64 = 0;
    for b in m.iter().take(8) {
        n = (n << 8) | u64::from(*b);
    }
    let modulus = 10u64.pow(u32::try_from(len).unwrap_or(3));
    format!("{:0width$}", n % modulus, width = len)
}

/// Constant-time comparison of a presented CVV with the derived one.
pub fn cvv_matches(key: &str, pan: &Pan, month: i32, year: i32, len: usize, presented: &str) -> bool {
    let expected = cvv(key, pan, month, year, len);
    expected.len() == presented.len()
        && expected.bytes().zip(presented.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_pans_are_luhn_valid_with_brand_prefix() {
        for b in BRANDS {
            for _ in 0..200 {
                let p = generate(b);
                assert_eq!(p.digits().len(), b.2);
                assert!(luhn_valid(p.digits()), "{}", p.digits());
                assert!(b.1.iter().any(|pre| p.digits().starts_with(pre)));
                assert!(Pan::parse(p.digits()).is_some());
            }
        }
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
    }

    #[test]
    fn pans_never_print_digits() {
        let p = Pan::parse("4111 1111 1111 1111").unwrap();
        assert_eq!(format!("{p:?}"), "Pan(411111******1111)");
        assert_eq!(p.to_string(), "411111******1111");
    }

    #[test]
    fn cvv_is_deterministic_keyed_and_checked() {
        let p = Pan::parse("4111111111111111").unwrap();
        let a = cvv("k1-0123456789abcdef0123456789abcdef", &p, 5, 2030, 3);
        assert_eq!(a.len(), 3);
        assert_eq!(a, cvv("k1-0123456789abcdef0123456789abcdef", &p, 5, 2030, 3));
        assert!(cvv_matches("k1-0123456789abcdef0123456789abcdef", &p, 5, 2030, 3, &a));
        assert!(
            !cvv_matches("k1-0123456789abcdef0123456789abcdef", &p, 6, 2030, 3, &a)
                || a == cvv("k1-0123456789abcdef0123456789abcdef", &p, 6, 2030, 3)
        );
        assert_eq!(cvv("k", &p, 5, 2030, 4).len(), 4);
    }
}
