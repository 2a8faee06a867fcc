//! TDS 7.4 on the wire, server side: packets, the tokens a response is made of, the encoding
//! of every supported type, and the decoding of RPC parameters. Written from MS-TDS
//! (sections named in the comments).

use chrono::{NaiveDate, NaiveTime, Timelike as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::types::{SqlType, SqlValue, decimal_bytes, time_bytes};

/// Packet types (MS-TDS 2.2.3.1.1).
pub const SQL_BATCH: u8 = 0x01;
pub const RPC: u8 = 0x03;
pub const TABULAR_RESULT: u8 = 0x04;
pub const ATTENTION: u8 = 0x06;
pub const LOGIN7: u8 = 0x10;
pub const PRELOGIN: u8 = 0x12;

/// The packet size the server announces and splits responses at.
pub const PACKET_SIZE: usize = 4096;

/// The collation sent for character data: LCID 0x0409, sort id 52 (SQL_Latin1_General_CP1_CI_AS).
pub const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

/// Reads one message: packets until the one whose status has EOM (MS-TDS 2.2.3.1.2).
pub async fn read_message<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut payload = Vec::new();
    let mut kind = None;
    loop {
        let mut header = [0u8; 8];
        match reader.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && kind.is_none() => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let length = u16::from_be_bytes([header[2], header[3]]) as usize;
        if length < 8 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a packet shorter than its header",
            ));
        }
        let start = payload.len();
        payload.resize(start + length - 8, 0);
        reader.read_exact(&mut payload[start..]).await?;
        kind.get_or_insert(header[0]);
        if header[1] & 0x01 != 0 {
            return Ok(kind.map(|k| (k, payload)));
        }
    }
}

/// Writes `payload` as a message of packets of at most [`PACKET_SIZE`] bytes.
pub async fn write_message<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    kind: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let chunk = PACKET_SIZE - 8;
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(chunk).collect()
    };
    let mut out = Vec::with_capacity(payload.len() + chunks.len() * 8);
    for (i, part) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        out.push(kind);
        out.push(u8::from(last));
        out.extend_from_slice(&((part.len() + 8) as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0]); // SPID
        out.push(((i + 1) % 256) as u8); // packet id, wrapping
        out.push(0);
        out.extend_from_slice(part);
    }
    writer.write_all(&out).await?;
    writer.flush().await
}

/// UTF-16LE bytes of `text`.
pub fn utf16(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn b_varchar(out: &mut Vec<u8>, text: &str) {
    let units: Vec<u16> = text.encode_utf16().collect();
    out.push(units.len().min(255) as u8);
    for unit in units.iter().take(255) {
        out.extend_from_slice(&unit.to_le_bytes());
    }
}

fn us_varchar(out: &mut Vec<u8>, text: &str) {
    let units: Vec<u16> = text.encode_utf16().collect();
    out.extend_from_slice(&(units.len() as u16).to_le_bytes());
    for unit in units {
        out.extend_from_slice(&unit.to_le_bytes());
    }
}

/// The PRELOGIN answer (MS-TDS 2.2.6.5): version, encryption not supported, no instance,
/// thread id, MARS off.
pub fn prelogin_response() -> Vec<u8> {
    let data: [(u8, Vec<u8>); 5] = [
        (0x00, vec![16, 0, 0x07, 0xD0, 0, 0]), // VERSION 16.0.2000
        (0x01, vec![0x02]),                    // ENCRYPTION: ENCRYPT_NOT_SUP
        (0x02, vec![0x00]),                    // INSTOPT
        (0x03, vec![0, 0, 0, 0]),              // THREADID
        (0x04, vec![0x00]),                    // MARS
    ];
    let mut out = Vec::new();
    let mut offset = data.len() * 5 + 1;
    for (token, bytes) in &data {
        out.push(*token);
        out.extend_from_slice(&(offset as u16).to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        offset += bytes.len();
    }
    out.push(0xFF);
    for (_, bytes) in &data {
        out.extend_from_slice(bytes);
    }
    out
}

/// What the server reads from a LOGIN7 message (MS-TDS 2.2.6.4).
#[derive(Debug, Clone, Default)]
pub struct Login {
    pub user: String,
    pub database: String,
}

/// Reads the user and database names of a LOGIN7 payload.
pub fn parse_login(payload: &[u8]) -> Login {
    let field = |at: usize| -> String {
        let Some(bytes) = payload.get(at..at + 4) else {
            return String::new();
        };
        let offset = u16::from_le_bytes([bytes[0], bytes[1]]) as usize;
        let chars = u16::from_le_bytes([bytes[2], bytes[3]]) as usize;
        let Some(text) = payload.get(offset..offset + chars * 2) else {
            return String::new();
        };
        let units: Vec<u16> = text
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    };
    Login {
        user: field(36 + 4),
        database: field(36 + 32),
    }
}

/// A response being built, token by token.
#[derive(Debug, Default)]
pub struct Response {
    pub bytes: Vec<u8>,
}

/// DONE status bits (MS-TDS 2.2.7.6).
pub const DONE_MORE: u16 = 0x0001;
pub const DONE_ERROR: u16 = 0x0002;
pub const DONE_COUNT: u16 = 0x0010;

impl Response {
    fn env_change(&mut self, kind: u8, new: &[u8], old: &[u8]) {
        let mut body = vec![kind];
        body.extend_from_slice(new);
        body.extend_from_slice(old);
        self.bytes.push(0xE3);
        self.bytes
            .extend_from_slice(&(body.len() as u16).to_le_bytes());
        self.bytes.extend_from_slice(&body);
    }

    /// ENVCHANGEs for the database, collation and packet size, then LOGINACK and DONE.
    pub fn login_ack(&mut self, database: &str) {
        let mut new = Vec::new();
        b_varchar(&mut new, database);
        let mut old = Vec::new();
        b_varchar(&mut old, "master");
        self.env_change(1, &new, &old);
        let mut collation = vec![COLLATION.len() as u8];
        collation.extend_from_slice(&COLLATION);
        self.env_change(7, &collation, &[0]);
        let mut size = Vec::new();
        b_varchar(&mut size, &PACKET_SIZE.to_string());
        self.env_change(4, &size, &size);
        let mut body = vec![0x01];
        body.extend_from_slice(&0x7400_0004u32.to_be_bytes());
        b_varchar(&mut body, "SyncBridge TDS test server");
        body.extend_from_slice(&[16, 0, 0x07, 0xD0]);
        self.bytes.push(0xAD);
        self.bytes
            .extend_from_slice(&(body.len() as u16).to_le_bytes());
        self.bytes.extend_from_slice(&body);
        self.done(0xFD, 0, 0, 0);
    }

    /// DONE (0xFD), DONEPROC (0xFE) or DONEINPROC (0xFF).
    pub fn done(&mut self, token: u8, status: u16, command: u16, rows: u64) {
        self.bytes.push(token);
        self.bytes.extend_from_slice(&status.to_le_bytes());
        self.bytes.extend_from_slice(&command.to_le_bytes());
        self.bytes.extend_from_slice(&rows.to_le_bytes());
    }

    pub fn return_status(&mut self, status: i32) {
        self.bytes.push(0x79);
        self.bytes.extend_from_slice(&status.to_le_bytes());
    }

    /// ERROR (MS-TDS 2.2.7.10).
    pub fn error(&mut self, number: i32, class: u8, message: &str) {
        let mut body = Vec::new();
        body.extend_from_slice(&number.to_le_bytes());
        body.push(1); // state
        body.push(class);
        us_varchar(&mut body, message);
        b_varchar(&mut body, "syncbridge-tds");
        b_varchar(&mut body, "");
        body.extend_from_slice(&1u32.to_le_bytes());
        self.bytes.push(0xAA);
        self.bytes
            .extend_from_slice(&(body.len() as u16).to_le_bytes());
        self.bytes.extend_from_slice(&body);
    }

    /// COLMETADATA (MS-TDS 2.2.7.4).
    pub fn columns(&mut self, columns: &[(String, SqlType, bool)]) {
        self.bytes.push(0x81);
        self.bytes
            .extend_from_slice(&(columns.len() as u16).to_le_bytes());
        for (name, ty, nullable) in columns {
            self.bytes.extend_from_slice(&0u32.to_le_bytes()); // user type
            let flags: u16 = if *nullable { 0x0001 } else { 0 } | 0x0008; // nullable, updateable unknown
            self.bytes.extend_from_slice(&flags.to_le_bytes());
            type_info(&mut self.bytes, ty);
            b_varchar(&mut self.bytes, name);
        }
    }

    /// A ROW, or an NBCROW when a value is NULL (both forms exist in real traffic).
    pub fn row(&mut self, types: &[SqlType], values: &[SqlValue]) -> Result<(), String> {
        if values.iter().any(SqlValue::is_null) {
            self.bytes.push(0xD2);
            let mut bitmap = vec![0u8; values.len().div_ceil(8)];
            for (i, value) in values.iter().enumerate() {
                if value.is_null() {
                    bitmap[i / 8] |= 1 << (i % 8);
                }
            }
            self.bytes.extend_from_slice(&bitmap);
            for (ty, value) in types.iter().zip(values) {
                if !value.is_null() {
                    encode_value(&mut self.bytes, ty, value)?;
                }
            }
        } else {
            self.bytes.push(0xD1);
            for (ty, value) in types.iter().zip(values) {
                encode_value(&mut self.bytes, ty, value)?;
            }
        }
        Ok(())
    }
}

/// TYPE_INFO of a column (MS-TDS 2.2.5.4 / 2.2.5.5).
fn type_info(out: &mut Vec<u8>, ty: &SqlType) {
    let max = |n: Option<u16>, unit: u16| n.map_or(0xFFFF, |n| n.saturating_mul(unit));
    match ty {
        SqlType::TinyInt => out.extend_from_slice(&[0x26, 1]),
        SqlType::SmallInt => out.extend_from_slice(&[0x26, 2]),
        SqlType::Int => out.extend_from_slice(&[0x26, 4]),
        SqlType::BigInt => out.extend_from_slice(&[0x26, 8]),
        SqlType::Bit => out.extend_from_slice(&[0x68, 1]),
        SqlType::Float => out.extend_from_slice(&[0x6D, 8]),
        SqlType::Real => out.extend_from_slice(&[0x6D, 4]),
        SqlType::Decimal(p, s) => out.extend_from_slice(&[0x6A, decimal_bytes(*p), *p, *s]),
        SqlType::NVarChar(n) => {
            out.push(0xE7);
            out.extend_from_slice(&max(*n, 2).to_le_bytes());
            out.extend_from_slice(&COLLATION);
        }
        SqlType::VarChar(n) => {
            out.push(0xA7);
            out.extend_from_slice(&max(*n, 1).to_le_bytes());
            out.extend_from_slice(&COLLATION);
        }
        SqlType::VarBinary(n) => {
            out.push(0xA5);
            out.extend_from_slice(&max(*n, 1).to_le_bytes());
        }
        SqlType::RowVersion => {
            out.push(0xAD);
            out.extend_from_slice(&8u16.to_le_bytes());
        }
        SqlType::Date => out.push(0x28),
        SqlType::Time(s) => out.extend_from_slice(&[0x29, *s]),
        SqlType::DateTime2(s) => out.extend_from_slice(&[0x2A, *s]),
        SqlType::DateTimeOffset(s) => out.extend_from_slice(&[0x2B, *s]),
        SqlType::DateTime => out.extend_from_slice(&[0x6F, 8]),
        SqlType::UniqueIdentifier => out.extend_from_slice(&[0x24, 16]),
        // sql_variant-like: tiberius cannot read these; never sent (the query fails first).
        SqlType::Unsupported(_) => out.extend_from_slice(&[0x62, 0, 0, 0, 0]),
    }
}

fn plp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    // Chunks of at most 8000 bytes, as SQL Server sends them.
    for chunk in bytes.chunks(8000) {
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
}

const PLP_NULL: u64 = u64::MAX;

fn days_since(date: NaiveDate, epoch: NaiveDate) -> i64 {
    (date - epoch).num_days()
}

fn epoch_0001() -> NaiveDate {
    NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or_default()
}

fn epoch_1900() -> NaiveDate {
    NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or_default()
}

/// Time of day in units of 10^-scale seconds.
fn time_ticks(time: NaiveTime, scale: u8) -> u64 {
    let nanos = u64::from(time.num_seconds_from_midnight()) * 1_000_000_000
        + u64::from(time.nanosecond() % 1_000_000_000);
    nanos / 10u64.pow(9 - u32::from(scale.min(7)))
}

fn push_le(out: &mut Vec<u8>, value: u64, bytes: u8) {
    out.extend_from_slice(&value.to_le_bytes()[..bytes as usize]);
}

fn mismatch(ty: &SqlType, value: &SqlValue) -> String {
    format!("a {value:?} cannot be sent as {}", ty.name())
}

/// Rescales a decimal mantissa to `scale` (rounding half away from zero when shortening).
fn rescale(mantissa: i128, from: u8, to: u8) -> Option<i128> {
    if to >= from {
        mantissa.checked_mul(10i128.checked_pow(u32::from(to - from))?)
    } else {
        let div = 10i128.checked_pow(u32::from(from - to))?;
        let q = mantissa / div;
        let r = (mantissa % div).abs();
        Some(if r * 2 >= div {
            q + mantissa.signum()
        } else {
            q
        })
    }
}

/// One non-NULL-aware value (NULL is encoded per type: MS-TDS 2.2.4.2.1).
fn encode_value(out: &mut Vec<u8>, ty: &SqlType, value: &SqlValue) -> Result<(), String> {
    let long_null = |out: &mut Vec<u8>| out.extend_from_slice(&0xFFFFu16.to_le_bytes());
    match (ty, value) {
        (
            SqlType::TinyInt
            | SqlType::SmallInt
            | SqlType::Int
            | SqlType::BigInt
            | SqlType::Bit
            | SqlType::Float
            | SqlType::Real
            | SqlType::Decimal(..)
            | SqlType::Date
            | SqlType::Time(_)
            | SqlType::DateTime2(_)
            | SqlType::DateTimeOffset(_)
            | SqlType::DateTime
            | SqlType::UniqueIdentifier,
            SqlValue::Null,
        ) => out.push(0),
        (
            SqlType::NVarChar(None) | SqlType::VarChar(None) | SqlType::VarBinary(None),
            SqlValue::Null,
        ) => out.extend_from_slice(&PLP_NULL.to_le_bytes()),
        (_, SqlValue::Null) => long_null(out),
        (SqlType::TinyInt, SqlValue::Int(v)) => {
            out.push(1);
            out.push(u8::try_from(*v).map_err(|_| mismatch(ty, value))?);
        }
        (SqlType::SmallInt, SqlValue::Int(v)) => {
            out.push(2);
            out.extend_from_slice(
                &i16::try_from(*v)
                    .map_err(|_| mismatch(ty, value))?
                    .to_le_bytes(),
            );
        }
        (SqlType::Int, SqlValue::Int(v)) => {
            out.push(4);
            out.extend_from_slice(
                &i32::try_from(*v)
                    .map_err(|_| mismatch(ty, value))?
                    .to_le_bytes(),
            );
        }
        (SqlType::BigInt, SqlValue::Int(v)) => {
            out.push(8);
            out.extend_from_slice(&v.to_le_bytes());
        }
        (SqlType::Bit, SqlValue::Bool(v)) => out.extend_from_slice(&[1, u8::from(*v)]),
        (SqlType::Bit, SqlValue::Int(v)) => out.extend_from_slice(&[1, u8::from(*v != 0)]),
        (SqlType::Float, SqlValue::Float(v)) => {
            out.push(8);
            out.extend_from_slice(&v.to_le_bytes());
        }
        (SqlType::Real, SqlValue::Float(v)) => {
            out.push(4);
            out.extend_from_slice(&(*v as f32).to_le_bytes());
        }
        (SqlType::Decimal(p, s), SqlValue::Decimal(..) | SqlValue::Int(_)) => {
            let (m, from) = match value {
                SqlValue::Decimal(m, from) => (*m, *from),
                SqlValue::Int(v) => (i128::from(*v), 0),
                _ => unreachable!("matched above"),
            };
            let m = rescale(m, from, *s).ok_or_else(|| mismatch(ty, value))?;
            let len = decimal_bytes(*p);
            out.push(len);
            out.push(u8::from(m >= 0));
            out.extend_from_slice(&m.unsigned_abs().to_le_bytes()[..len as usize - 1]);
        }
        (SqlType::NVarChar(n), SqlValue::Text(text)) => {
            let bytes = utf16(text);
            match n {
                Some(n) if bytes.len() > usize::from(*n) * 2 => {
                    return Err(format!(
                        "String or binary data would be truncated: {} characters into nvarchar({n})",
                        text.chars().count()
                    ));
                }
                Some(_) => {
                    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                    out.extend_from_slice(&bytes);
                }
                None => plp(out, &bytes),
            }
        }
        (SqlType::VarChar(n), SqlValue::Text(text)) => {
            // Windows-1252 for the Latin-1 range; other characters become `?`, as SQL Server does.
            let bytes: Vec<u8> = text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect();
            match n {
                Some(_) => {
                    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                    out.extend_from_slice(&bytes);
                }
                None => plp(out, &bytes),
            }
        }
        (SqlType::VarBinary(n), SqlValue::Bytes(bytes)) => match n {
            Some(_) => {
                out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            None => plp(out, bytes),
        },
        (SqlType::RowVersion, SqlValue::Bytes(bytes)) => {
            out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        (SqlType::Date, SqlValue::Date(date)) => {
            out.push(3);
            push_le(out, days_since(*date, epoch_0001()) as u64, 3);
        }
        (SqlType::Time(s), SqlValue::Time(time)) => {
            out.push(time_bytes(*s));
            push_le(out, time_ticks(*time, *s), time_bytes(*s));
        }
        (SqlType::DateTime2(s), SqlValue::DateTime(at)) => {
            out.push(time_bytes(*s) + 3);
            push_le(out, time_ticks(at.time(), *s), time_bytes(*s));
            push_le(out, days_since(at.date(), epoch_0001()) as u64, 3);
        }
        (SqlType::DateTimeOffset(s), SqlValue::DateTimeOffset(at)) => {
            let utc = at.naive_utc();
            out.push(time_bytes(*s) + 5);
            push_le(out, time_ticks(utc.time(), *s), time_bytes(*s));
            push_le(out, days_since(utc.date(), epoch_0001()) as u64, 3);
            let minutes = (at.offset().local_minus_utc() / 60) as i16;
            out.extend_from_slice(&minutes.to_le_bytes());
        }
        (SqlType::DateTime, SqlValue::DateTime(at)) => {
            out.push(8);
            let days = days_since(at.date(), epoch_1900()) as i32;
            let nanos = u64::from(at.time().num_seconds_from_midnight()) * 1_000_000_000
                + u64::from(at.time().nanosecond());
            // 1/300 s ticks, rounded.
            let ticks = ((nanos * 3 + 5_000_000) / 10_000_000) as u32;
            out.extend_from_slice(&days.to_le_bytes());
            out.extend_from_slice(&ticks.to_le_bytes());
        }
        (SqlType::UniqueIdentifier, SqlValue::Guid(guid)) => {
            out.push(16);
            out.extend_from_slice(&guid_bytes(guid.as_bytes()));
        }
        (SqlType::NVarChar(_), other) => {
            // Expressions of other types sent as text (e.g. a CAST the evaluator did not type).
            return encode_value(out, ty, &SqlValue::Text(display(other)));
        }
        _ => return Err(mismatch(ty, value)),
    }
    Ok(())
}

/// A value as SQL Server would convert it to text.
pub fn display(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => String::new(),
        SqlValue::Bool(v) => u8::from(*v).to_string(),
        SqlValue::Int(v) => v.to_string(),
        SqlValue::Float(v) => v.to_string(),
        SqlValue::Decimal(m, s) => {
            let digits = m.unsigned_abs().to_string();
            let s = usize::from(*s);
            let padded = format!("{digits:0>width$}", width = s + 1);
            let (int, frac) = padded.split_at(padded.len() - s);
            let sign = if *m < 0 { "-" } else { "" };
            if s == 0 {
                format!("{sign}{int}")
            } else {
                format!("{sign}{int}.{frac}")
            }
        }
        SqlValue::Text(t) => t.clone(),
        SqlValue::Bytes(b) => format!(
            "0x{}",
            b.iter().map(|x| format!("{x:02X}")).collect::<String>()
        ),
        SqlValue::Date(d) => d.format("%Y-%m-%d").to_string(),
        SqlValue::Time(t) => t.format("%H:%M:%S%.f").to_string(),
        SqlValue::DateTime(t) => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
        SqlValue::DateTimeOffset(t) => t.format("%Y-%m-%d %H:%M:%S%.f %:z").to_string(),
        SqlValue::Guid(g) => g.to_string().to_uppercase(),
    }
}

/// A GUID's 16 bytes in the wire order: the first three groups little-endian.
fn guid_bytes(b: &[u8; 16]) -> [u8; 16] {
    [
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15],
    ]
}

/// A reader over a request payload.
#[derive(Debug)]
pub struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let slice = self.bytes.get(self.at..self.at + n).ok_or_else(|| {
            format!(
                "the request ends {} bytes early",
                self.at + n - self.bytes.len()
            )
        })?;
        self.at += n;
        Ok(slice)
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn le(&mut self, n: usize) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(self.take(n)?);
        Ok(u64::from_le_bytes(a))
    }

    /// Skips ALL_HEADERS (MS-TDS 2.2.5.3): its first u32 is its own total length.
    pub fn skip_all_headers(&mut self) -> Result<(), String> {
        let total = self.u32()? as usize;
        self.take(total.saturating_sub(4)).map(|_| ())
    }

    pub fn b_varchar(&mut self) -> Result<String, String> {
        let chars = self.u8()? as usize;
        Ok(from_utf16(self.take(chars * 2)?))
    }

    fn plp(&mut self) -> Result<Option<Vec<u8>>, String> {
        let total = self.u64()?;
        if total == PLP_NULL {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        loop {
            let chunk = self.u32()? as usize;
            if chunk == 0 {
                return Ok(Some(bytes));
            }
            bytes.extend_from_slice(self.take(chunk)?);
        }
    }
}

pub fn from_utf16(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// The SQL text of a SQL batch (after ALL_HEADERS).
pub fn parse_batch(payload: &[u8]) -> Result<String, String> {
    let mut cursor = Cursor::new(payload);
    cursor.skip_all_headers()?;
    Ok(from_utf16(cursor.take(cursor.remaining())?))
}

/// A decoded RPC call: the procedure and its parameters (name, value).
#[derive(Debug)]
pub struct RpcCall {
    pub procedure: String,
    pub params: Vec<(String, SqlValue)>,
}

/// Decodes an RPC request (MS-TDS 2.2.6.6).
pub fn parse_rpc(payload: &[u8]) -> Result<RpcCall, String> {
    let mut c = Cursor::new(payload);
    c.skip_all_headers()?;
    let name_length = c.u16()?;
    let procedure = if name_length == 0xFFFF {
        match c.u16()? {
            10 => "sp_executesql".to_owned(),
            id => format!("procedure id {id}"),
        }
    } else {
        from_utf16(c.take(name_length as usize * 2)?)
    };
    c.u16()?; // option flags
    let mut params = Vec::new();
    while c.remaining() > 0 {
        let name = c.b_varchar()?;
        c.u8()?; // status flags
        params.push((name, decode_param(&mut c)?));
    }
    Ok(RpcCall { procedure, params })
}

fn decode_param(c: &mut Cursor<'_>) -> Result<SqlValue, String> {
    let ty = c.u8()?;
    Ok(match ty {
        0x1F => SqlValue::Null,
        0x26 => {
            c.u8()?;
            match c.u8()? {
                0 => SqlValue::Null,
                1 => SqlValue::Int(i64::from(c.u8()?)),
                2 => SqlValue::Int(i64::from(c.u16()? as i16)),
                4 => SqlValue::Int(i64::from(c.u32()? as i32)),
                8 => SqlValue::Int(c.u64()? as i64),
                n => return Err(format!("an integer of {n} bytes")),
            }
        }
        0x68 => {
            c.u8()?;
            match c.u8()? {
                0 => SqlValue::Null,
                _ => SqlValue::Bool(c.u8()? != 0),
            }
        }
        0x6D => {
            c.u8()?;
            match c.u8()? {
                0 => SqlValue::Null,
                4 => SqlValue::Float(f64::from(f32::from_bits(c.u32()?))),
                8 => SqlValue::Float(f64::from_bits(c.u64()?)),
                n => return Err(format!("a float of {n} bytes")),
            }
        }
        0x6A | 0x6C => {
            c.take(1)?;
            let _precision = c.u8()?;
            let scale = c.u8()?;
            match c.u8()? {
                0 => SqlValue::Null,
                len => {
                    let positive = c.u8()? == 1;
                    let mut magnitude = [0u8; 16];
                    magnitude[..len as usize - 1].copy_from_slice(c.take(len as usize - 1)?);
                    let m = u128::from_le_bytes(magnitude) as i128;
                    SqlValue::Decimal(if positive { m } else { -m }, scale)
                }
            }
        }
        0xE7 | 0xA7 => {
            let max = c.u16()?;
            c.take(5)?; // collation
            let bytes = if max == 0xFFFF {
                c.plp()?
            } else {
                match c.u16()? {
                    0xFFFF => None,
                    n => Some(c.take(n as usize)?.to_vec()),
                }
            };
            match bytes {
                None => SqlValue::Null,
                Some(bytes) if ty == 0xE7 => SqlValue::Text(from_utf16(&bytes)),
                Some(bytes) => SqlValue::Text(bytes.iter().map(|b| char::from(*b)).collect()),
            }
        }
        0xA5 => {
            let max = c.u16()?;
            let bytes = if max == 0xFFFF {
                c.plp()?
            } else {
                match c.u16()? {
                    0xFFFF => None,
                    n => Some(c.take(n as usize)?.to_vec()),
                }
            };
            bytes.map_or(SqlValue::Null, SqlValue::Bytes)
        }
        0x24 => {
            c.u8()?;
            match c.u8()? {
                0 => SqlValue::Null,
                _ => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(c.take(16)?);
                    SqlValue::Guid(uuid::Uuid::from_bytes(guid_bytes(&b)))
                }
            }
        }
        0x28 => match c.u8()? {
            0 => SqlValue::Null,
            _ => SqlValue::Date(date_from_days(c.le(3)?)?),
        },
        0x29 => {
            let scale = c.u8()?;
            match c.u8()? {
                0 => SqlValue::Null,
                _ => SqlValue::Time(time_from_ticks(c.le(time_bytes(scale) as usize)?, scale)?),
            }
        }
        0x2A => {
            let scale = c.u8()?;
            match c.u8()? {
                0 => SqlValue::Null,
                _ => {
                    let time = time_from_ticks(c.le(time_bytes(scale) as usize)?, scale)?;
                    let date = date_from_days(c.le(3)?)?;
                    SqlValue::DateTime(date.and_time(time))
                }
            }
        }
        0x2B => {
            let scale = c.u8()?;
            match c.u8()? {
                0 => SqlValue::Null,
                _ => {
                    let time = time_from_ticks(c.le(time_bytes(scale) as usize)?, scale)?;
                    let date = date_from_days(c.le(3)?)?;
                    let minutes = c.u16()? as i16;
                    let offset = chrono::FixedOffset::east_opt(i32::from(minutes) * 60)
                        .ok_or("an offset out of range")?;
                    SqlValue::DateTimeOffset(
                        chrono::DateTime::<chrono::Utc>::from_naive_utc_and_offset(
                            date.and_time(time),
                            chrono::Utc,
                        )
                        .with_timezone(&offset),
                    )
                }
            }
        }
        0x6F => {
            c.u8()?;
            match c.u8()? {
                0 => SqlValue::Null,
                8 => {
                    let days = c.u32()? as i32;
                    let ticks = c.u32()?;
                    let date = epoch_1900() + chrono::Duration::days(i64::from(days));
                    let nanos = u64::from(ticks) * 10_000_000 / 3;
                    let time = NaiveTime::from_num_seconds_from_midnight_opt(
                        (nanos / 1_000_000_000) as u32,
                        (nanos % 1_000_000_000) as u32,
                    )
                    .ok_or("a datetime time out of range")?;
                    SqlValue::DateTime(date.and_time(time))
                }
                n => return Err(format!("a datetime of {n} bytes")),
            }
        }
        other => {
            return Err(format!(
                "parameter type 0x{other:02X} is not supported by this server"
            ));
        }
    })
}

fn date_from_days(days: u64) -> Result<NaiveDate, String> {
    epoch_0001()
        .checked_add_days(chrono::Days::new(days))
        .ok_or_else(|| "a date out of range".to_owned())
}

fn time_from_ticks(ticks: u64, scale: u8) -> Result<NaiveTime, String> {
    let nanos = ticks * 10u64.pow(9 - u32::from(scale.min(7)));
    NaiveTime::from_num_seconds_from_midnight_opt(
        (nanos / 1_000_000_000) as u32,
        (nanos % 1_000_000_000) as u32,
    )
    .ok_or_else(|| "a time out of range".to_owned())
}
