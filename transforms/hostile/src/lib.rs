//! Hostile guests for the host's tests (not an example to follow): each function misbehaves
//! for one input so the tests can check that only that row is lost.
//!
//! - `spin`: loops forever when the value is the text "spin";
//! - `hog`: allocates without end when the value is "hog";
//! - `panic`: panics when the value is "panic";
//! - `read_file`: tries to read `/etc/passwd` when the value is "read";
//! - `connect`: tries to open a TCP connection when the value is "connect";
//! - `clock`: answers the seconds since 1970 it reads from the clock (always).
//!
//! Any other value passes through unchanged; the self-test always fails.

use syncbridge_guest::{Field, Value};

fn is(value: &Value, text: &str) -> bool {
    matches!(value, Value::Text(t) if t == text)
}

fn spin(value: Value, _row: &[Field], _args: &[String]) -> Result<Value, String> {
    if is(&value, "spin") {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    Ok(value)
}

fn hog(value: Value, _row: &[Field], _args: &[String]) -> Result<Value, String> {
    if is(&value, "hog") {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
    Ok(value)
}

fn panic(value: Value, _row: &[Field], _args: &[String]) -> Result<Value, String> {
    if is(&value, "panic") {
        panic!("the guest gave up");
    }
    Ok(value)
}

fn read_file(value: Value, _row: &[Field], _args: &[String]) -> Result<Value, String> {
    if is(&value, "read") {
        return std::fs::read_to_string("/etc/passwd")
            .map(Value::Text)
            .map_err(|e| format!("reading a file failed: {e}"));
    }
    Ok(value)
}

fn connect(value: Value, _row: &[Field], _args: &[String]) -> Result<Value, String> {
    if is(&value, "connect") {
        return std::net::TcpStream::connect("127.0.0.1:5432")
            .map(|_| Value::Text("connected".into()))
            .map_err(|e| format!("connecting failed: {e}"));
    }
    Ok(value)
}

fn clock(_value: Value, _row: &[Field], _args: &[String]) -> Result<Value, String> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    Ok(Value::Int(seconds as i64))
}

/// Fails on purpose, so `syncbridge plugins check` can be seen refusing a module.
fn self_test() -> Result<(), String> {
    Err("these guests misbehave on purpose".into())
}

syncbridge_guest::field_rules! {
    "spin" => spin,
    "hog" => hog,
    "panic" => panic,
    "read_file" => read_file,
    "connect" => connect,
    "clock" => clock;
    self_test = self_test,
}
