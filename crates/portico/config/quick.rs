//! The config file read fast, when it keeps to a strict subset of TOML 1.0: bare keys, `[table]`
//! and `[[array of tables]]` headers, basic strings without escapes, literal strings, decimal
//! integers, booleans, arrays and one-line inline tables. That covers the files Portico is given
//! in practice, 10,000-route ones included, which toml reads about ten times slower (it builds
//! toml_edit's document, with every span and every piece of whitespace, before serde sees it).
//!
//! It never decides what a file means on its own: anything outside the subset, anything TOML
//! forbids (a key or a table defined twice, an inline table extended...) and any serde error
//! (an unknown key, a wrong type) returns None, and the caller reads the file with toml, which
//! reports the errors by key exactly as before. The subset is chosen so that what this path
//! accepts, toml accepts too and reads to the same values (`tests::the_subset_reads_as_toml_does`
//! and the mutation test check it).

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::value::{Error, MapDeserializer, SeqDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};

use super::raw::RawConfig;

/// Arrays and inline tables nest at most this deep here (deeper ones go to toml).
const MAX_DEPTH: usize = 32;
/// A table header names at most this many keys here (Portico's deepest is 4, as in
/// `[pools.NAME.health]`; longer ones go to toml, which refuses them cleanly, where a tree that
/// deep would be freed by recursion).
const MAX_HEADER_KEYS: usize = 8;
/// i64::MAX has 19 decimal digits: more cannot fit.
const MAX_I64_DIGITS: usize = 19;
/// A table gets a hash index of its keys once it holds this many (`pools` holds 1,000; a route
/// three or four, for which a scan is faster than hashing).
const INDEX_FROM: usize = 16;

/// The raw config, or None when the file is outside the subset or does not deserialize.
pub(super) fn parse(text: &str) -> Option<RawConfig> {
    let root = Parser { text, pos: 0 }.document()?;
    RawConfig::deserialize(Value::Table(root)).ok()
}

#[derive(Debug)]
enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    /// `key = [ ... ]`.
    Array(Vec<Value<'a>>),
    /// `[[key]]` sections: never empty.
    Tables(Vec<Table<'a>>),
    Table(Table<'a>),
}

#[derive(Debug, Default)]
struct Table<'a> {
    entries: Vec<(&'a str, Value<'a>)>,
    /// Key -> position in `entries`, once there are `INDEX_FROM` of them (boxed: most tables
    /// never get one, and values move a lot while the tree is built and read).
    #[allow(clippy::box_collection)]
    index: Option<Box<HashMap<&'a str, usize>>>,
    /// Defined by its own header (or the root, or an element of an array of tables); a table
    /// only created on the way to a sub-table's header may still get its header once.
    defined: bool,
    /// An inline table: complete as written, nothing may add to it.
    inline: bool,
}

impl<'a> Table<'a> {
    fn defined() -> Self {
        Table {
            defined: true,
            ..Table::default()
        }
    }

    fn find(&self, key: &str) -> Option<usize> {
        match &self.index {
            None => self.entries.iter().position(|(k, _)| *k == key),
            Some(index) => index.get(key).copied(),
        }
    }

    /// Adds `key`; None when it is already there.
    fn insert(&mut self, key: &'a str, value: Value<'a>) -> Option<usize> {
        if self.find(key).is_some() {
            return None;
        }
        let i = self.entries.len();
        self.entries.push((key, value));
        if let Some(index) = &mut self.index {
            index.insert(key, i);
        } else if self.entries.len() >= INDEX_FROM {
            let index = self.entries.iter().enumerate().map(|(i, (k, _))| (*k, i));
            self.index = Some(Box::new(index.collect()));
        }
        Some(i)
    }
}

/// A section of the file: its header's path and the keys under it, put in place at its end.
struct Section<'a> {
    path: Vec<&'a str>,
    array: bool,
    table: Table<'a>,
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.text.as_bytes().get(self.pos + ahead).copied()
    }

    fn document(mut self) -> Option<Table<'a>> {
        let mut root = Table::defined();
        let mut section: Option<Section<'a>> = None;
        loop {
            self.skip_spaces();
            match self.peek() {
                None => break,
                Some(b'\n' | b'\r') => self.newline()?,
                Some(b'#') => {
                    self.comment()?;
                    self.newline_or_end()?;
                }
                Some(b'[') => {
                    if let Some(done) = section.take() {
                        install(&mut root, done)?;
                    }
                    section = Some(self.header()?);
                }
                Some(_) => {
                    let (key, value) = self.key_value(0, false)?;
                    self.end_of_line()?;
                    let table = match &mut section {
                        Some(s) => &mut s.table,
                        None => &mut root,
                    };
                    table.insert(key, value)?;
                }
            }
        }
        if let Some(done) = section.take() {
            install(&mut root, done)?;
        }
        Some(root)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.pos += 1)
    }

    fn skip_spaces(&mut self) {
        while let Some(b' ' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    fn newline(&mut self) -> Option<()> {
        match (self.peek(), self.peek_at(1)) {
            (Some(b'\n'), _) => self.pos += 1,
            (Some(b'\r'), Some(b'\n')) => self.pos += 2,
            _ => return None,
        }
        Some(())
    }

    fn newline_or_end(&mut self) -> Option<()> {
        if self.peek().is_none() {
            return Some(());
        }
        self.newline()
    }

    /// Spaces, an optional comment, then the end of the line or of the file.
    fn end_of_line(&mut self) -> Option<()> {
        self.skip_spaces();
        if self.peek() == Some(b'#') {
            self.comment()?;
        }
        self.newline_or_end()
    }

    /// From `#` to the end of the line, which stays; no control character but tab.
    fn comment(&mut self) -> Option<()> {
        let bytes = self.text.as_bytes();
        while let Some(&b) = bytes.get(self.pos) {
            match b {
                b'\n' => break,
                b'\r' if bytes.get(self.pos + 1) == Some(&b'\n') => break,
                b'\t' => {}
                0..0x20 | 0x7f => return None,
                _ => {}
            }
            self.pos += 1;
        }
        Some(())
    }

    /// A bare key: ASCII letters, digits, `_` and `-`.
    fn key(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while let Some(b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-') = self.peek() {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.text[start..self.pos])
    }

    /// `[a.b]` or `[[a.b]]` and the end of its line.
    fn header(&mut self) -> Option<Section<'a>> {
        self.expect(b'[')?;
        let array = self.expect(b'[').is_some();
        let mut path = Vec::new();
        loop {
            if path.len() == MAX_HEADER_KEYS {
                return None;
            }
            self.skip_spaces();
            path.push(self.key()?);
            self.skip_spaces();
            match self.peek() {
                Some(b'.') => self.pos += 1,
                Some(b']') => break,
                _ => return None,
            }
        }
        self.expect(b']')?;
        if array {
            self.expect(b']')?;
        }
        self.end_of_line()?;
        Some(Section {
            path,
            array,
            table: Table::defined(),
        })
    }

    /// A value inside `depth` arrays or inline tables (`inline`: one of them is an inline table,
    /// so the value must stay on its line).
    fn value(&mut self, depth: usize, inline: bool) -> Option<Value<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let value = match self.peek()? {
            b'"' => Value::Str(self.string(b'"')?),
            b'\'' => Value::Str(self.string(b'\'')?),
            b't' => self.word("true", Value::Bool(true))?,
            b'f' => self.word("false", Value::Bool(false))?,
            b'-' | b'0'..=b'9' => Value::Int(self.integer()?),
            b'[' => self.array(depth, inline)?,
            b'{' => self.inline_table(depth)?,
            _ => return None,
        };
        Some(value)
    }

    /// A one-line string quoted by `quote`, without escapes (a backslash in a basic string
    /// leaves the subset; in a literal string it is a backslash).
    fn string(&mut self, quote: u8) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let start = self.pos + 1;
        let mut i = start;
        loop {
            match *bytes.get(i)? {
                b if b == quote => break,
                b'\\' if quote == b'"' => return None,
                b'\t' => {}
                0..0x20 | 0x7f => return None,
                _ => {}
            }
            i += 1;
        }
        // `""` followed by another quote opens a multi-line string.
        if i == start && bytes.get(i + 1) == Some(&quote) {
            return None;
        }
        self.pos = i + 1;
        self.delimited()?;
        Some(&self.text[start..i])
    }

    fn word(&mut self, word: &str, value: Value<'a>) -> Option<Value<'a>> {
        if !self.text[self.pos..].starts_with(word) {
            return None;
        }
        self.pos += word.len();
        self.delimited()?;
        Some(value)
    }

    /// `0`, or digits not starting with 0, with an optional `-` (`+`, `_`, hex, octal, binary,
    /// floats and dates leave the subset).
    fn integer(&mut self) -> Option<i64> {
        let negative = self.expect(b'-').is_some();
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        let digits = &self.text[start..self.pos];
        if digits.is_empty()
            || (digits.len() > 1 && digits.starts_with('0'))
            || digits.len() > MAX_I64_DIGITS
        {
            return None;
        }
        self.delimited()?;
        let magnitude: i128 = digits.parse().ok()?;
        i64::try_from(if negative { -magnitude } else { magnitude }).ok()
    }

    /// What may follow a scalar: the end of the file, a space, a newline or a `,` `]` `}`.
    fn delimited(&self) -> Option<()> {
        match self.peek() {
            None | Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}') => Some(()),
            _ => None,
        }
    }

    /// `[ v, v, ]`: newlines and comments between values, except inside an inline table.
    fn array(&mut self, depth: usize, inline: bool) -> Option<Value<'a>> {
        let multiline = !inline;
        self.expect(b'[')?;
        let mut items = Vec::new();
        loop {
            self.skip_blank(multiline)?;
            if self.expect(b']').is_some() {
                break;
            }
            items.push(self.value(depth + 1, inline)?);
            self.skip_blank(multiline)?;
            if self.comma_or_close(b']')? {
                break;
            }
        }
        self.delimited()?;
        Some(Value::Array(items))
    }

    fn skip_blank(&mut self, multiline: bool) -> Option<()> {
        loop {
            self.skip_spaces();
            match self.peek() {
                Some(b'\n' | b'\r') if multiline => self.newline()?,
                Some(b'#') if multiline => self.comment()?,
                _ => return Some(()),
            }
        }
    }

    /// `key = value`, spaces around `=` allowed; the value inside `depth` arrays or inline
    /// tables, as [`Parser::value`] takes it.
    fn key_value(&mut self, depth: usize, inline: bool) -> Option<(&'a str, Value<'a>)> {
        let key = self.key()?;
        self.skip_spaces();
        self.expect(b'=')?;
        self.skip_spaces();
        Some((key, self.value(depth, inline)?))
    }

    /// After an element of an array or inline table: a `,` (false: more may follow) or `close`
    /// (true: the end); anything else leaves the subset.
    fn comma_or_close(&mut self, close: u8) -> Option<bool> {
        let closed = match self.peek()? {
            b',' => false,
            b if b == close => true,
            _ => return None,
        };
        self.pos += 1;
        Some(closed)
    }

    /// `{ k = v, k = v }` on one line, no trailing comma.
    fn inline_table(&mut self, depth: usize) -> Option<Value<'a>> {
        self.expect(b'{')?;
        let mut table = Table {
            defined: true,
            inline: true,
            ..Table::default()
        };
        self.skip_spaces();
        if self.expect(b'}').is_none() {
            loop {
                self.skip_spaces();
                let (key, value) = self.key_value(depth + 1, true)?;
                table.insert(key, value)?;
                self.skip_spaces();
                if self.comma_or_close(b'}')? {
                    break;
                }
            }
        }
        self.delimited()?;
        Some(Value::Table(table))
    }
}

/// Puts a section's table where its header says, as TOML does: a table is defined once, an
/// array of tables grows by one, the path to either goes through tables (the last element of an
/// array of tables), creating those missing. Anything else (extending an inline table or a
/// value, a key defined twice) is None.
fn install<'a>(root: &mut Table<'a>, section: Section<'a>) -> Option<()> {
    let (last, parents) = section.path.split_last()?;
    let mut table = root;
    for key in parents {
        let i = match table.find(key) {
            Some(i) => i,
            None => table.insert(key, Value::Table(Table::default()))?,
        };
        table = match &mut table.entries[i].1 {
            Value::Table(t) if !t.inline => t,
            Value::Tables(list) => list.last_mut()?,
            _ => return None,
        };
    }
    match (table.find(last), section.array) {
        (None, false) => {
            table.insert(last, Value::Table(section.table))?;
        }
        (None, true) => {
            table.insert(last, Value::Tables(vec![section.table]))?;
        }
        (Some(i), false) => match &mut table.entries[i].1 {
            Value::Table(t) if !t.defined && !t.inline => {
                t.defined = true;
                for (key, value) in section.table.entries {
                    t.insert(key, value)?;
                }
            }
            _ => return None,
        },
        (Some(i), true) => match &mut table.entries[i].1 {
            Value::Tables(list) => list.push(section.table),
            _ => return None,
        },
    }
    Some(())
}

impl<'de> IntoDeserializer<'de, Error> for Value<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// Values as toml's deserializer hands them to serde: a table is a map, an array (of tables or
/// not) a sequence, a string may be an enum's unit variant, and every value is `Some`.
impl<'de> de::Deserializer<'de> for Value<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Int(n) => visitor.visit_i64(n),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Array(items) => SeqDeserializer::new(items.into_iter()).deserialize_any(visitor),
            Value::Tables(tables) => {
                SeqDeserializer::new(tables.into_iter().map(Value::Table)).deserialize_any(visitor)
            }
            Value::Table(t) => MapDeserializer::new(t.entries.into_iter()).deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Value::Str(s) => s
                .into_deserializer()
                .deserialize_enum(name, variants, visitor),
            _ => Err(de::Error::custom("only unit variants are read here")),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests;
