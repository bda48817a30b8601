//! Byte rates as people write them (`sync.max_upload_rate = "2 Mbit/s"`), parsed once when the
//! configuration is validated; the worker's pacer only ever sees bytes per second.

/// Parses a rate such as `"2 Mbit/s"`, `"500 kbit/s"`, `"1.5 MB/s"`, `"256 KiB/s"` or a plain
/// number of bytes per second, into bytes per second.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = (t[..split].trim(), t[split..].trim());
    let value: f64 = number.parse().map_err(|_| format!("{text:?} does not start with a number"))?;
    let per_sec = match unit {
        "" | "B/s" => 1.0,
        "bit/s" => 1.0 / 8.0,
        "kbit/s" => 1000.0 / 8.0,
        "Mbit/s" => 1_000_000.0 / 8.0,
        "Gbit/s" => 1_000_000_000.0 / 8.0,
        "kB/s" => 1000.0,
        "MB/s" => 1_000_000.0,
        "KiB/s" => 1024.0,
        "MiB/s" => 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use bit/s, kbit/s, Mbit/s, Gbit/s, B/s, kB/s, MB/s, KiB/s or MiB/s)"
            ))
        }
    };
    let bytes = value * per_sec;
    if !(bytes >= 1024.0 && bytes.is_finite()) {
        return Err(format!("{text:?} is below 1 KiB/s"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_the_usual_units() {
        assert_eq!(parse_rate("2 Mbit/s"), Ok(250_000));
        assert_eq!(parse_rate("500kbit/s"), Ok(62_500));
        assert_eq!(parse_rate("1.5 MB/s"), Ok(1_500_000));
        assert_eq!(parse_rate("256 KiB/s"), Ok(262_144));
        assert_eq!(parse_rate("100000"), Ok(100_000));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("2 Mbps").unwrap_err().contains("unknown unit"));
        assert!(parse_rate("10 bit/s").unwrap_err().contains("below"));
    }
}
