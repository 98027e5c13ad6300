//! RESP values (what a server answers, what a client decodes) and commands (what a client
//! sends, what a server decodes).

use bytes::Bytes;

/// One RESP2/RESP3 value.
///
/// A server encodes it in the connection's current protocol version: in RESP2 the RESP3-only
/// types are downgraded the way redis-server downgrades them (see
/// [`encode_value`](super::encode_value)). A client decodes every reply into one.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A simple string (`+OK`). CR and LF are replaced by spaces when encoded.
    Simple(Bytes),
    /// An error reply (`-ERR ...`, or a RESP3 blob error), without the leading `-`. CR and LF
    /// are replaced by spaces when encoded.
    Error(Bytes),
    /// A signed 64-bit integer (`:42`).
    Integer(i64),
    /// A bulk (binary-safe) string (`$3\r\nfoo`).
    Bulk(Bytes),
    /// Null: RESP3 `_`, RESP2 `$-1` (a RESP2 null array `*-1` decodes to it too).
    Null,
    /// An array of values.
    Array(Vec<Value>),
    /// A RESP3 map, in wire order.
    Map(Vec<(Value, Value)>),
    /// A RESP3 set, in wire order.
    Set(Vec<Value>),
    /// A RESP3 double.
    Double(f64),
    /// A RESP3 boolean.
    Boolean(bool),
    /// A RESP3 big number, as its decimal digits.
    BigNumber(Bytes),
    /// A RESP3 verbatim string: a three-byte format (`txt`, `mkd`) and the text.
    Verbatim {
        /// The format, e.g. `*b"txt"`.
        format: [u8; 3],
        /// The text.
        text: Bytes,
    },
    /// A RESP3 push message (pub/sub messages, invalidations).
    Push(Vec<Value>),
    /// Not a wire type: several frames written back to back (a multi-channel SUBSCRIBE's
    /// confirmations). Nested inside an aggregate it is encoded as an array.
    Frames(Vec<Value>),
}

impl Value {
    /// `+OK`.
    pub fn ok() -> Value {
        Value::Simple(Bytes::from_static(b"OK"))
    }

    /// A simple string from a static text, e.g. `Value::simple("PONG")`.
    pub fn simple(text: &'static str) -> Value {
        Value::Simple(Bytes::from_static(text.as_bytes()))
    }

    /// An error reply; by convention the message starts with an upper-case code, e.g.
    /// `Value::error("ERR wrong number of arguments for 'get' command")`.
    pub fn error(message: impl Into<Bytes>) -> Value {
        Value::Error(message.into())
    }

    /// A bulk string.
    pub fn bulk(data: impl Into<Bytes>) -> Value {
        Value::Bulk(data.into())
    }

    /// An integer.
    pub fn int(n: i64) -> Value {
        Value::Integer(n)
    }

    /// An array.
    pub fn array(items: Vec<Value>) -> Value {
        Value::Array(items)
    }

    /// A RESP3 push message (an array in RESP2).
    pub fn push(items: Vec<Value>) -> Value {
        Value::Push(items)
    }

    /// The bytes of a simple string, a bulk string or a verbatim string's text.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Simple(b) | Value::Bulk(b) | Value::Verbatim { text: b, .. } => Some(b),
            _ => None,
        }
    }

    /// Like [`Value::as_bytes`], by value.
    pub fn into_bytes(self) -> Option<Bytes> {
        match self {
            Value::Simple(b) | Value::Bulk(b) | Value::Verbatim { text: b, .. } => Some(b),
            _ => None,
        }
    }

    /// [`Value::as_bytes`] as UTF-8 text, if it is.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The number of an integer reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// A double, an integer, or a string holding a number (RESP2 sends doubles as bulk
    /// strings, e.g. `ZSCORE`).
    pub fn as_double(&self) -> Option<f64> {
        match self {
            Value::Double(d) => Some(*d),
            Value::Integer(n) => Some(*n as f64),
            _ => self.as_str().and_then(|s| s.parse().ok()),
        }
    }

    /// A boolean, or an integer 1/0 (how RESP2 sends booleans).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            Value::Integer(1) => Some(true),
            Value::Integer(0) => Some(false),
            _ => None,
        }
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    /// Whether this is null.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// An error reply's message (without the leading `-`).
    pub fn as_error(&self) -> Option<&Bytes> {
        match self {
            Value::Error(b) => Some(b),
            _ => None,
        }
    }

    /// The elements of an array, a set or a push message.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) | Value::Set(v) | Value::Push(v) => Some(v),
            _ => None,
        }
    }

    /// Like [`Value::as_array`], by value.
    pub fn into_array(self) -> Option<Vec<Value>> {
        match self {
            Value::Array(v) | Value::Set(v) | Value::Push(v) => Some(v),
            _ => None,
        }
    }

    /// The pairs of a map.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The pairs of a map, or of an even-length array read as alternating keys and values
    /// (how RESP2 sends maps, e.g. `HGETALL`).
    pub fn into_map(self) -> Option<Vec<(Value, Value)>> {
        match self {
            Value::Map(m) => Some(m),
            Value::Array(v) if v.len() % 2 == 0 => {
                let mut pairs = Vec::with_capacity(v.len() / 2);
                let mut it = v.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                Some(pairs)
            }
            _ => None,
        }
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Integer(n)
    }
}

impl From<Bytes> for Value {
    fn from(b: Bytes) -> Value {
        Value::Bulk(b)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Boolean(b)
    }
}

impl From<f64> for Value {
    fn from(d: f64) -> Value {
        Value::Double(d)
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::Array(v)
    }
}

/// A command: its name and arguments, each a binary-safe string.
///
/// Decoded commands hold zero-copy slices of the receive buffer.
///
/// ```
/// use sinew_protocols::resp::Command;
/// let cmd = Command::new("SET").arg("key").arg(&b"v\r\n"[..]);
/// assert!(cmd.is("set"));
/// assert_eq!(cmd.len(), 3);
/// assert_eq!(cmd.get(1).map(|b| &b[..]), Some(&b"key"[..]));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Command {
    args: Vec<Bytes>,
}

impl Command {
    /// A command with no arguments yet.
    pub fn new(name: impl Into<Bytes>) -> Self {
        let mut args = Vec::with_capacity(4);
        args.push(name.into());
        Command { args }
    }

    /// Adds an argument (builder style).
    #[must_use]
    pub fn arg(mut self, arg: impl Into<Bytes>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds an argument.
    pub fn push_arg(&mut self, arg: impl Into<Bytes>) {
        self.args.push(arg.into());
    }

    /// A command from its name and arguments (`args[0]` is the name).
    pub fn from_args(args: Vec<Bytes>) -> Self {
        Command { args }
    }

    /// The name (`args[0]`), empty if there is none.
    pub fn name(&self) -> &[u8] {
        self.args.first().map_or(&[][..], |b| &b[..])
    }

    /// Whether the name is `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.name().eq_ignore_ascii_case(name.as_bytes())
    }

    /// All arguments, the name first.
    pub fn args(&self) -> &[Bytes] {
        &self.args
    }

    /// All arguments by value, the name first.
    pub fn into_args(self) -> Vec<Bytes> {
        self.args
    }

    /// Argument `i` (0 is the name).
    pub fn get(&self, i: usize) -> Option<&Bytes> {
        self.args.get(i)
    }

    /// The number of arguments, the name included.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Whether there are no arguments at all (not even a name).
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }
}
