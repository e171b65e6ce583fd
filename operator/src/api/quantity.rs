//! Sizes as Kubernetes writes them (`10Gi`, `500M`, `1.5Gi`, `2048`), in bytes, so that a
//! volume's requested size can be compared with the spec's.

/// Bytes of a quantity, or `None` when it is not a plain size (negative, exponent forms, an
/// unknown suffix).
pub fn bytes(quantity: &str) -> Option<u128> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut value = whole.checked_mul(multiplier)?;
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().ok()?;
        let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        // a fraction of a byte rounds up, as Kubernetes does
        value = value.checked_add(digits.checked_mul(multiplier)?.div_ceil(scale))?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn sizes() {
        let table = [
            ("10Gi", Some(10u128 << 30)),
            ("1.5Gi", Some(3u128 << 29)),
            ("500M", Some(500_000_000)),
            ("2048", Some(2048)),
            ("1k", Some(1000)),
            ("0.5Ki", Some(512)),
            (" 1Mi ", Some(1 << 20)),
            ("1e3", None),
            ("-1Gi", None),
            ("Gi", None),
            ("10GB", None),
            ("", None),
        ];
        for (q, want) in table {
            assert_eq!(bytes(q), want, "{q}");
        }
    }
}
