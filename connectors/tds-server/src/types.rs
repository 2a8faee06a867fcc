//! The server's own value model: SQL Server column types and the values they hold.
//!
//! Deliberately separate from SyncBridge's value model: the server judges the SQL Server source,
//! so it must not share the source's idea of what a type is.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use uuid::Uuid;

/// A column type, as `sys.types` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlType {
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Bit,
    /// `decimal(precision, scale)`.
    Decimal(u8, u8),
    Float,
    Real,
    /// `nvarchar(n)` in characters; `None` is `nvarchar(max)`.
    NVarChar(Option<u16>),
    /// `varchar(n)` in bytes (Latin-1 collation); `None` is `varchar(max)`.
    VarChar(Option<u16>),
    /// `varbinary(n)`; `None` is `varbinary(max)`.
    VarBinary(Option<u16>),
    Date,
    /// `time(scale)`.
    Time(u8),
    DateTime,
    /// `datetime2(scale)`.
    DateTime2(u8),
    /// `datetimeoffset(scale)`.
    DateTimeOffset(u8),
    UniqueIdentifier,
    /// An 8-byte counter the server sets on every insert and update.
    RowVersion,
    /// Types the wire subset cannot carry (`geography`, `hierarchyid`, `sql_variant`): a query
    /// returning one fails the way tiberius would, so sources must cast them.
    Unsupported(&'static str),
}

impl SqlType {
    /// The name `sys.types` gives it.
    pub fn name(&self) -> &'static str {
        match self {
            SqlType::TinyInt => "tinyint",
            SqlType::SmallInt => "smallint",
            SqlType::Int => "int",
            SqlType::BigInt => "bigint",
            SqlType::Bit => "bit",
            SqlType::Decimal(..) => "decimal",
            SqlType::Float => "float",
            SqlType::Real => "real",
            SqlType::NVarChar(_) => "nvarchar",
            SqlType::VarChar(_) => "varchar",
            SqlType::VarBinary(_) => "varbinary",
            SqlType::Date => "date",
            SqlType::Time(_) => "time",
            SqlType::DateTime => "datetime",
            SqlType::DateTime2(_) => "datetime2",
            SqlType::DateTimeOffset(_) => "datetimeoffset",
            SqlType::UniqueIdentifier => "uniqueidentifier",
            SqlType::RowVersion => "timestamp",
            SqlType::Unsupported(name) => name,
        }
    }

    /// `sys.types.user_type_id` of the built-in type (the values SQL Server uses).
    pub fn type_id(&self) -> i32 {
        match self {
            SqlType::TinyInt => 48,
            SqlType::SmallInt => 52,
            SqlType::Int => 56,
            SqlType::BigInt => 127,
            SqlType::Bit => 104,
            SqlType::Decimal(..) => 106,
            SqlType::Float => 62,
            SqlType::Real => 59,
            SqlType::NVarChar(_) => 231,
            SqlType::VarChar(_) => 167,
            SqlType::VarBinary(_) => 165,
            SqlType::Date => 40,
            SqlType::Time(_) => 41,
            SqlType::DateTime => 61,
            SqlType::DateTime2(_) => 42,
            SqlType::DateTimeOffset(_) => 43,
            SqlType::UniqueIdentifier => 36,
            SqlType::RowVersion => 189,
            SqlType::Unsupported("geography") => 130,
            SqlType::Unsupported("hierarchyid") => 128,
            SqlType::Unsupported(_) => 98,
        }
    }

    /// `sys.columns.max_length`: bytes, -1 for `max`.
    pub fn max_length(&self) -> i16 {
        match self {
            SqlType::TinyInt | SqlType::Bit => 1,
            SqlType::SmallInt => 2,
            SqlType::Int | SqlType::Real => 4,
            SqlType::BigInt | SqlType::Float | SqlType::DateTime | SqlType::RowVersion => 8,
            SqlType::Decimal(p, _) => decimal_bytes(*p) as i16,
            SqlType::NVarChar(Some(n)) => (*n as i16).saturating_mul(2),
            SqlType::VarChar(Some(n)) | SqlType::VarBinary(Some(n)) => *n as i16,
            SqlType::NVarChar(None) | SqlType::VarChar(None) | SqlType::VarBinary(None) => -1,
            SqlType::Date => 3,
            SqlType::Time(s) => time_bytes(*s) as i16,
            SqlType::DateTime2(s) => time_bytes(*s) as i16 + 3,
            SqlType::DateTimeOffset(s) => time_bytes(*s) as i16 + 5,
            SqlType::UniqueIdentifier => 16,
            SqlType::Unsupported(_) => -1,
        }
    }

    /// `sys.columns.precision` and `scale`.
    pub fn precision_scale(&self) -> (u8, u8) {
        match self {
            SqlType::TinyInt => (3, 0),
            SqlType::SmallInt => (5, 0),
            SqlType::Int => (10, 0),
            SqlType::BigInt => (19, 0),
            SqlType::Bit => (1, 0),
            SqlType::Decimal(p, s) => (*p, *s),
            SqlType::Float => (53, 0),
            SqlType::Real => (24, 0),
            SqlType::Time(s) => (8 + *s + u8::from(*s > 0), *s),
            SqlType::DateTime2(s) => (20 + *s + u8::from(*s > 0), *s),
            SqlType::DateTimeOffset(s) => (27 + *s + u8::from(*s > 0), *s),
            SqlType::DateTime => (23, 3),
            SqlType::Date => (10, 0),
            _ => (0, 0),
        }
    }
}

/// Bytes of a decimal of this precision on the wire, including the sign byte.
pub fn decimal_bytes(precision: u8) -> u8 {
    match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

/// Bytes of the time part of `time` / `datetime2` / `datetimeoffset` of this scale.
pub fn time_bytes(scale: u8) -> u8 {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

/// A value in a row or a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// An exact decimal: the value is `mantissa / 10^scale`.
    Decimal(i128, u8),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    DateTime(NaiveDateTime),
    DateTimeOffset(DateTime<FixedOffset>),
    Guid(Uuid),
}

impl SqlValue {
    pub fn is_null(&self) -> bool {
        matches!(self, SqlValue::Null)
    }

    /// SQL comparison: `None` when either side is NULL or the types do not compare.
    pub fn compare(&self, other: &SqlValue) -> Option<std::cmp::Ordering> {
        use SqlValue::*;
        match (self, other) {
            (Null, _) | (_, Null) => None,
            (Bool(a), Bool(b)) => Some(a.cmp(b)),
            (Int(a), Int(b)) => Some(a.cmp(b)),
            (Bool(a), Int(b)) => Some(i64::from(*a).cmp(b)),
            (Int(a), Bool(b)) => Some(a.cmp(&i64::from(*b))),
            (Decimal(..) | Int(_), Decimal(..) | Int(_)) => {
                let (am, asc) = self.as_decimal()?;
                let (bm, bsc) = other.as_decimal()?;
                let scale = asc.max(bsc);
                let am = am.checked_mul(10i128.checked_pow(u32::from(scale - asc))?)?;
                let bm = bm.checked_mul(10i128.checked_pow(u32::from(scale - bsc))?)?;
                Some(am.cmp(&bm))
            }
            (Float(a), Float(b)) => a.partial_cmp(b),
            (Float(a), Int(b)) => a.partial_cmp(&(*b as f64)),
            (Int(a), Float(b)) => (*a as f64).partial_cmp(b),
            (Text(a), Text(b)) => Some(a.to_lowercase().cmp(&b.to_lowercase())),
            (Bytes(a), Bytes(b)) => Some(a.cmp(b)),
            (Date(a), Date(b)) => Some(a.cmp(b)),
            (Time(a), Time(b)) => Some(a.cmp(b)),
            (DateTime(a), DateTime(b)) => Some(a.cmp(b)),
            (DateTimeOffset(a), DateTimeOffset(b)) => Some(a.cmp(b)),
            (Guid(a), Guid(b)) => Some(a.cmp(b)),
            // An implicit conversion the source relies on: a date compared with a datetime.
            (Date(a), DateTime(b)) => Some(a.and_hms_opt(0, 0, 0)?.cmp(b)),
            (DateTime(a), Date(b)) => Some(a.cmp(&b.and_hms_opt(0, 0, 0)?)),
            // Text parameters compared with typed columns convert to the column's type.
            (Text(t), other) => SqlValue::parse_like(t, other)?.compare(other),
            (other, Text(t)) => other.compare(&SqlValue::parse_like(t, other)?),
            _ => None,
        }
    }

    fn as_decimal(&self) -> Option<(i128, u8)> {
        match self {
            SqlValue::Int(v) => Some((i128::from(*v), 0)),
            SqlValue::Decimal(m, s) => Some((*m, *s)),
            _ => None,
        }
    }

    /// Converts text to the type of `like` (SQL Server's implicit conversion of literals).
    fn parse_like(text: &str, like: &SqlValue) -> Option<SqlValue> {
        let text = text.trim();
        match like {
            SqlValue::Int(_) => text.parse().ok().map(SqlValue::Int),
            SqlValue::Date(_) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .map(SqlValue::Date),
            SqlValue::DateTime(_) => NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
                .ok()
                .map(SqlValue::DateTime),
            SqlValue::Guid(_) => Uuid::parse_str(text).ok().map(SqlValue::Guid),
            _ => None,
        }
    }

    /// A value's natural type, for result columns computed by expressions.
    pub fn natural_type(&self) -> SqlType {
        match self {
            SqlValue::Null | SqlValue::Text(_) => SqlType::NVarChar(None),
            SqlValue::Bool(_) => SqlType::Bit,
            SqlValue::Int(_) => SqlType::BigInt,
            SqlValue::Float(_) => SqlType::Float,
            SqlValue::Decimal(_, scale) => SqlType::Decimal(38, *scale),
            SqlValue::Bytes(_) => SqlType::VarBinary(None),
            SqlValue::Date(_) => SqlType::Date,
            SqlValue::Time(_) => SqlType::Time(7),
            SqlValue::DateTime(_) => SqlType::DateTime2(7),
            SqlValue::DateTimeOffset(_) => SqlType::DateTimeOffset(7),
            SqlValue::Guid(_) => SqlType::UniqueIdentifier,
        }
    }
}
