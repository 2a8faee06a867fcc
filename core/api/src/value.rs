//! The value model: every field of every row, whatever the source or target, is one [`Value`].
//!
//! Exact numbers stay exact: [`Decimal`] keeps up to 38 significant digits as an `i128` mantissa and a
//! scale, which covers SQL Server's and PostgreSQL's common `numeric(38, s)` and MySQL's `BIGINT
//! UNSIGNED`. Floating point is only used where the source itself stores floats.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One field value.
///
/// The serialized form is externally tagged (`{"int": 5}`, `{"text": "a"}`, `"null"`), so a value
/// round-trips through JSON without losing its type: a decimal stays a decimal, a date stays a date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// SQL NULL. Distinct from the empty string everywhere in SyncBridge.
    Null,
    Bool(bool),
    /// Any integer that fits in 64 bits. Wider integers are [`Value::Decimal`] with scale 0.
    Int(i64),
    Float(f64),
    Decimal(Decimal),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    /// A timestamp without time zone: the wall-clock time the source stored.
    Timestamp(NaiveDateTime),
    /// A timestamp with time zone, keeping the offset it was read with.
    TimestampTz(DateTime<FixedOffset>),
    Uuid(Uuid),
    Json(serde_json::Value),
}

impl Value {
    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A short name of the variant, for error messages (`"text"`, `"decimal"` …).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Decimal(_) => "decimal",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::Timestamp(_) => "timestamp",
            Value::TimestampTz(_) => "timestamptz",
            Value::Uuid(_) => "uuid",
            Value::Json(_) => "json",
        }
    }

    /// The text inside a [`Value::Text`], if it is one.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    /// A human-readable rendering for messages and previews; not a canonical encoding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Decimal(v) => write!(f, "{v}"),
            Value::Text(v) => f.write_str(v),
            Value::Bytes(v) => write!(f, "<{} bytes>", v.len()),
            Value::Date(v) => write!(f, "{v}"),
            Value::Time(v) => write!(f, "{v}"),
            Value::Timestamp(v) => write!(f, "{}", v.format("%Y-%m-%dT%H:%M:%S%.f")),
            Value::TimestampTz(v) => write!(f, "{}", v.to_rfc3339()),
            Value::Uuid(v) => write!(f, "{v}"),
            Value::Json(v) => write!(f, "{v}"),
        }
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// The largest number of significant digits a [`Decimal`] holds.
pub const MAX_DECIMAL_DIGITS: u32 = 38;

/// An exact decimal number of up to 38 significant digits: `mantissa × 10^-scale`.
///
/// Equality is numeric (`1.50 == 1.5`); [`Decimal::normalized`] gives the canonical form used for
/// hashing. Parsing rejects more than 38 digits instead of rounding, because a silently rounded
/// amount is worse than a clear error.
#[derive(Clone, Copy, Debug, Default)]
pub struct Decimal {
    mantissa: i128,
    scale: u8,
}

/// Why a string or number could not become a [`Decimal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecimalError {
    /// The text is not a decimal number.
    #[error("`{0}` is not a decimal number (expected digits with an optional sign and point)")]
    Syntax(String),
    /// More significant digits than the value model holds.
    #[error(
        "`{0}` has more than 38 significant digits; cast it to text or a float in the source query"
    )]
    TooManyDigits(String),
}

const TEN_POW_38: i128 = 100_000_000_000_000_000_000_000_000_000_000_000_000;

impl Decimal {
    /// Builds `mantissa × 10^-scale`, or `None` when the scale exceeds 38 or the mantissa has more
    /// than 38 digits.
    pub fn new(mantissa: i128, scale: u8) -> Option<Self> {
        if u32::from(scale) > MAX_DECIMAL_DIGITS || mantissa.unsigned_abs() >= TEN_POW_38 as u128 {
            return None;
        }
        Some(Self { mantissa, scale })
    }

    /// The digits as an integer.
    pub fn mantissa(&self) -> i128 {
        self.mantissa
    }

    /// The number of digits after the decimal point.
    pub fn scale(&self) -> u8 {
        self.scale
    }

    /// The same number with trailing fractional zeros removed (`1.500` → `1.5`, `2.0` → `2`).
    pub fn normalized(&self) -> Self {
        let mut out = *self;
        while out.scale > 0 && out.mantissa % 10 == 0 {
            out.mantissa /= 10;
            out.scale -= 1;
        }
        out
    }

    /// Rounds half away from zero to `scale` digits after the point (a no-op when already shorter).
    pub fn round_to(&self, scale: u8) -> Self {
        if scale >= self.scale {
            return *self;
        }
        let drop = u32::from(self.scale - scale);
        let divisor = 10i128.pow(drop);
        let quotient = self.mantissa / divisor;
        let remainder = self.mantissa % divisor;
        let rounded = if remainder.abs() * 2 >= divisor {
            quotient + self.mantissa.signum()
        } else {
            quotient
        };
        Self {
            mantissa: rounded,
            scale,
        }
    }

    /// The nearest `f64`, for targets that only store doubles (SharePoint number columns).
    pub fn to_f64(&self) -> f64 {
        // Formatting and re-parsing gives the correctly rounded double, which dividing does not.
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    /// Compares `self` and `other` as numbers. `None` only if aligning scales would overflow,
    /// which cannot happen for values within 38 digits and scale 38 beyond extreme mixes.
    fn cmp_numeric(&self, other: &Self) -> Option<Ordering> {
        let (a, b) = (self.normalized(), other.normalized());
        let scale = a.scale.max(b.scale);
        let a_m = a
            .mantissa
            .checked_mul(10i128.checked_pow(u32::from(scale - a.scale))?)?;
        let b_m = b
            .mantissa
            .checked_mul(10i128.checked_pow(u32::from(scale - b.scale))?)?;
        Some(a_m.cmp(&b_m))
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.normalized(), other.normalized());
        a.mantissa == b.mantissa && a.scale == b.scale
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.cmp_numeric(other)
    }
}

impl From<i64> for Decimal {
    fn from(value: i64) -> Self {
        Self {
            mantissa: i128::from(value),
            scale: 0,
        }
    }
}

impl From<u64> for Decimal {
    fn from(value: u64) -> Self {
        Self {
            mantissa: i128::from(value),
            scale: 0,
        }
    }
}

impl FromStr for Decimal {
    type Err = DecimalError;

    /// Parses `-12.3400`, `+5`, `.5`, `7.` and `1.5e3`; keeps the scale as written.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || DecimalError::Syntax(text.to_owned());
        let trimmed = text.trim();
        let (mantissa_part, exponent) = match trimmed.find(['e', 'E']) {
            Some(at) => {
                let exp: i32 = trimmed[at + 1..].parse().map_err(|_| syntax())?;
                (&trimmed[..at], exp)
            }
            None => (trimmed, 0),
        };
        let (negative, unsigned) = match mantissa_part.as_bytes().first() {
            Some(b'-') => (true, &mantissa_part[1..]),
            Some(b'+') => (false, &mantissa_part[1..]),
            _ => (false, mantissa_part),
        };
        let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(syntax());
        }
        if !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return Err(syntax());
        }
        // Accumulated digit by digit (every decimal of a full read comes through here): at most
        // 38 significant digits, which an i128 holds.
        let mut mantissa: i128 = 0;
        let mut significant = 0;
        for digit in int_part.bytes().chain(frac_part.bytes()) {
            if significant == 0 && digit == b'0' {
                continue;
            }
            significant += 1;
            if significant > MAX_DECIMAL_DIGITS {
                return Err(DecimalError::TooManyDigits(text.to_owned()));
            }
            mantissa = mantissa * 10 + i128::from(digit - b'0');
        }
        let mut scale = i32::try_from(frac_part.len()).map_err(|_| syntax())? - exponent;
        while scale < 0 {
            mantissa = mantissa
                .checked_mul(10)
                .filter(|m| m.unsigned_abs() < TEN_POW_38 as u128)
                .ok_or_else(|| DecimalError::TooManyDigits(text.to_owned()))?;
            scale += 1;
        }
        while scale > MAX_DECIMAL_DIGITS as i32 {
            if mantissa % 10 != 0 {
                return Err(DecimalError::TooManyDigits(text.to_owned()));
            }
            mantissa /= 10;
            scale -= 1;
        }
        if negative {
            mantissa = -mantissa;
        }
        let scale = u8::try_from(scale).map_err(|_| syntax())?;
        Decimal::new(mantissa, scale).ok_or_else(|| DecimalError::TooManyDigits(text.to_owned()))
    }
}

impl fmt::Display for Decimal {
    /// Plain notation with exactly `scale` fractional digits (`-0.050`, `12`). Digits are
    /// written into a stack buffer (every content hash formats the row's decimals).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buffer = [0u8; 40]; // u128::MAX has 39 digits
        let mut start = buffer.len();
        let mut rest = self.mantissa.unsigned_abs();
        loop {
            // u64 division is several times cheaper than u128's, and most mantissas fit.
            let (quotient, digit) = match u64::try_from(rest) {
                Ok(small) => (u128::from(small / 10), small % 10),
                Err(_) => (rest / 10, (rest % 10) as u64),
            };
            start -= 1;
            buffer[start] = b'0' + digit as u8;
            rest = quotient;
            if rest == 0 {
                break;
            }
        }
        let digits = std::str::from_utf8(&buffer[start..]).map_err(|_| fmt::Error)?;
        let scale = usize::from(self.scale);
        if self.mantissa < 0 {
            f.write_str("-")?;
        }
        if scale == 0 {
            return f.write_str(digits);
        }
        if digits.len() <= scale {
            f.write_str("0.")?;
            for _ in digits.len()..scale {
                f.write_str("0")?;
            }
            return f.write_str(digits);
        }
        let (int_part, frac_part) = digits.split_at(digits.len() - scale);
        f.write_str(int_part)?;
        f.write_str(".")?;
        f.write_str(frac_part)
    }
}

impl Serialize for Decimal {
    /// Serialized as a string so that no JSON reader turns it into a float.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_common_forms() {
        let cases = [
            ("12.3400", "12.3400"),
            ("-0.05", "-0.05"),
            ("+5", "5"),
            (".5", "0.5"),
            ("7.", "7"),
            ("1.5e3", "1500"),
            ("1.5e-3", "0.0015"),
            ("0", "0"),
            ("-0.000", "0.000"),
        ];
        for (input, printed) in cases {
            let parsed: Decimal = input.parse().expect(input);
            assert_eq!(parsed.to_string(), printed, "input {input}");
        }
    }

    #[test]
    fn holds_thirty_eight_digits_and_refuses_thirty_nine() {
        let max = "99999999999999999999999999999999999999";
        let parsed: Decimal = max.parse().expect("38 digits fit");
        assert_eq!(parsed.to_string(), max);
        let fraction = "0.12345678901234567890123456789012345678";
        assert_eq!(
            fraction.parse::<Decimal>().expect("scale 38").to_string(),
            fraction
        );
        assert!(matches!(
            "999999999999999999999999999999999999999".parse::<Decimal>(),
            Err(DecimalError::TooManyDigits(_))
        ));
    }

    #[test]
    fn rejects_garbage() {
        for input in ["", "-", ".", "1.2.3", "abc", "1e", "--1", "1 2"] {
            assert!(
                input.parse::<Decimal>().is_err(),
                "{input:?} should not parse"
            );
        }
    }

    #[test]
    fn equality_is_numeric() {
        let a: Decimal = "1.50".parse().expect("valid");
        let b: Decimal = "1.5".parse().expect("valid");
        assert_eq!(a, b);
        assert!(a < "1.51".parse::<Decimal>().expect("valid"));
        assert_eq!(a.normalized().to_string(), "1.5");
    }

    #[test]
    fn rounds_half_away_from_zero() {
        let cases = [
            ("2.345", 2, "2.35"),
            ("-2.345", 2, "-2.35"),
            ("2.344", 2, "2.34"),
            ("9.99", 1, "10.0"),
        ];
        for (input, scale, expected) in cases {
            let value: Decimal = input.parse().expect(input);
            assert_eq!(value.round_to(scale).to_string(), expected);
        }
    }

    #[test]
    fn unsigned_bigint_beyond_i64_is_exact() {
        assert_eq!(Decimal::from(u64::MAX).to_string(), "18446744073709551615");
    }

    #[test]
    fn value_json_round_trip_keeps_types() {
        let values = vec![
            Value::Null,
            Value::Decimal("123.450".parse().expect("valid")),
            Value::Date(NaiveDate::from_ymd_opt(2024, 2, 29).expect("valid date")),
            Value::Text(String::new()),
            Value::Bytes(vec![0, 255]),
        ];
        let json = serde_json::to_string(&values).expect("serializes");
        let back: Vec<Value> = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(values, back);
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(mantissa in -(TEN_POW_38 - 1)..TEN_POW_38, scale in 0u8..=38) {
            let value = Decimal::new(mantissa, scale).expect("within range");
            let back: Decimal = value.to_string().parse().expect("own output parses");
            prop_assert_eq!(back.mantissa(), value.mantissa());
            prop_assert_eq!(back.scale(), value.scale());
        }

        #[test]
        fn i64_text_parses_exactly(n in any::<i64>()) {
            let parsed: Decimal = n.to_string().parse().expect("integer parses");
            prop_assert_eq!(parsed, Decimal::from(n));
        }
    }
}
