//! Avro: a registered schema (and the schemas it references) compiled once, each record's
//! payload decoded by `apache-avro` and written as plain JSON.
//!
//! Pure. The JSON is what an HTTP app expects, not Avro's own JSON encoding: a union is its
//! chosen branch's value (no `{"type": value}` wrapper), `bytes` and `fixed` are base64 strings,
//! an enum is its symbol, a `decimal` is a string with its exact digits (`"12.50"`), a `uuid` is a
//! string, `duration` is `{"months","days","millis"}`, dates, times and timestamps stay the
//! numbers Avro stores (days, or milli/microseconds since midnight or the epoch), and a float
//! that JSON cannot hold is the string `"NaN"`, `"Infinity"` or `"-Infinity"`.

use apache_avro::{
    Schema,
    reader::datum::GenericDatumReader,
    schema::{Name, NamesRef, ResolvedSchema},
    types::Value,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use num_bigint::BigInt;
use serde_json::{Map, Number, Value as Json};

/// A compiled Avro schema with the named schemas it references.
#[derive(Debug)]
pub struct AvroSchema {
    schema: Schema,
    /// The referenced named schemas, dependencies first.
    named: Vec<Schema>,
}

/// Compiles `schema`; `references` are the referenced schemas' texts, each after the ones it
/// references itself.
pub fn compile(schema: &str, references: &[String]) -> Result<AvroSchema, String> {
    let (schema, named) = if references.is_empty() {
        (
            Schema::parse_str(schema).map_err(|e| e.to_string())?,
            vec![],
        )
    } else {
        Schema::parse_str_with_list(schema, references).map_err(|e| e.to_string())?
    };
    let compiled = AvroSchema { schema, named };
    // Every name must resolve now, not at the first record.
    compiled.resolve().map_err(|e| e.to_string())?;
    Ok(compiled)
}

impl AvroSchema {
    fn resolve(&self) -> apache_avro::AvroResult<ResolvedSchema<'_>> {
        let all: Vec<&Schema> = self
            .named
            .iter()
            .chain(std::iter::once(&self.schema))
            .collect();
        ResolvedSchema::new_with_schemata(all)
    }

    /// The record's value as JSON; `Err` says why the payload does not match the schema.
    pub fn decode(&self, payload: &[u8]) -> Result<Json, String> {
        let resolved = self.resolve().map_err(|e| e.to_string())?;
        let names = resolved.get_names().clone();
        let reader = GenericDatumReader::builder(&self.schema)
            .resolved_writer_schemata(resolved)
            .build()
            .map_err(|e| e.to_string())?;
        // apache-avro reads the end of its input in the middle of a value as null (a string, a
        // boolean, a union's branch), so a payload cut short could decode. One byte past the
        // payload catches it: a whole datum stops before that byte, a cut one reads into it.
        let mut input = std::io::Read::chain(payload, &[0u8][..]);
        let value = reader.read_value(&mut input).map_err(|e| e.to_string())?;
        let (rest, guard) = input.into_inner();
        if guard.is_empty() {
            return Err("the payload ends inside a value".into());
        }
        if !rest.is_empty() {
            return Err(format!(
                "{} bytes left after the record: the payload is not one datum of this schema",
                rest.len()
            ));
        }
        to_json(&value, &self.schema, &names, None)
    }
}

/// `value`, written by `schema`, as plain JSON (see the module docs).
fn to_json(
    value: &Value,
    schema: &Schema,
    names: &NamesRef<'_>,
    namespace: Option<&str>,
) -> Result<Json, String> {
    if let Schema::Ref { name } = schema {
        let full = name.fully_qualified_name(namespace);
        let target = names
            .get(full.as_ref())
            .ok_or_else(|| format!("unresolved name {full}"))?;
        return to_json(value, target, names, full.namespace());
    }
    let inner_namespace = |name: &Name| {
        name.fully_qualified_name(namespace)
            .namespace()
            .map(str::to_owned)
    };
    Ok(match (value, schema) {
        (Value::Union(i, v), Schema::Union(u)) => {
            let branch = u
                .variants()
                .get(*i as usize)
                .ok_or_else(|| format!("union branch {i} does not exist"))?;
            return to_json(v, branch, names, namespace);
        }
        (Value::Record(fields), Schema::Record(r)) => {
            let ns = inner_namespace(&r.name);
            let mut object = Map::new();
            for ((name, v), field) in fields.iter().zip(&r.fields) {
                object.insert(
                    name.clone(),
                    to_json(v, &field.schema, names, ns.as_deref())?,
                );
            }
            Json::Object(object)
        }
        (Value::Array(items), Schema::Array(a)) => Json::Array(
            items
                .iter()
                .map(|v| to_json(v, &a.items, names, namespace))
                .collect::<Result<_, _>>()?,
        ),
        (Value::Map(entries), Schema::Map(m)) => {
            let mut object = Map::new();
            for (k, v) in entries {
                object.insert(k.clone(), to_json(v, &m.types, names, namespace)?);
            }
            Json::Object(object)
        }
        // apache-avro reads a string cut short by the end of the payload as null.
        (Value::Null, s) if !matches!(s, Schema::Null) => {
            return Err("the payload ends inside a value".into());
        }
        (Value::Decimal(d), Schema::Decimal(ds)) => {
            Json::String(decimal_text(&BigInt::from(d.clone()), ds.scale))
        }
        (v, _) => scalar(v)?,
    })
}

/// A value that needs no schema to be written.
fn scalar(value: &Value) -> Result<Json, String> {
    Ok(match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int(n) | Value::Date(n) | Value::TimeMillis(n) => Json::from(*n),
        Value::Long(n)
        | Value::TimeMicros(n)
        | Value::TimestampMillis(n)
        | Value::TimestampMicros(n)
        | Value::TimestampNanos(n)
        | Value::LocalTimestampMillis(n)
        | Value::LocalTimestampMicros(n)
        | Value::LocalTimestampNanos(n) => Json::from(*n),
        Value::Float(f) => float(f64::from(*f)),
        Value::Double(f) => float(*f),
        Value::Bytes(b) | Value::Fixed(_, b) => Json::String(STANDARD.encode(b)),
        Value::String(s) | Value::Enum(_, s) => Json::String(s.clone()),
        Value::Uuid(u) => Json::String(u.to_string()),
        Value::BigDecimal(d) => Json::String(d.to_string()),
        Value::Duration(d) => serde_json::json!({
            "months": u32::from(d.months()),
            "days": u32::from(d.days()),
            "millis": u32::from(d.millis()),
        }),
        other => return Err(format!("value {other:?} does not match its schema")),
    })
}

fn float(f: f64) -> Json {
    match Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None if f.is_nan() => Json::String("NaN".into()),
        None if f > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

/// An unscaled integer and a scale as exact decimal text: (-1250, 2) is `-12.50`.
fn decimal_text(unscaled: &BigInt, scale: usize) -> String {
    let digits = unscaled.magnitude().to_string();
    let sign = if unscaled.sign() == num_bigint::Sign::Minus {
        "-"
    } else {
        ""
    };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod tests {
    use apache_avro::writer::datum::GenericDatumWriter;

    use super::*;

    #[test]
    fn decimals_keep_their_exact_digits() {
        assert_eq!(decimal_text(&BigInt::from(-1250), 2), "-12.50");
        assert_eq!(decimal_text(&BigInt::from(5), 3), "0.005");
        assert_eq!(decimal_text(&BigInt::from(0), 2), "0.00");
        assert_eq!(decimal_text(&BigInt::from(42), 0), "42");
    }

    #[test]
    fn floats_json_cannot_hold_become_strings() {
        assert_eq!(float(f64::NAN), Json::String("NaN".into()));
        assert_eq!(float(f64::NEG_INFINITY), Json::String("-Infinity".into()));
        assert_eq!(float(1.5), serde_json::json!(1.5));
    }

    #[test]
    fn a_payload_with_bytes_left_over_or_cut_short_is_refused() {
        let schema = compile(r#""long""#, &[]).expect("compiles");
        let mut bytes = GenericDatumWriter::builder(&schema.schema)
            .build()
            .and_then(|w| w.write_value_to_vec(Value::Long(7)))
            .expect("encodes");
        assert_eq!(schema.decode(&bytes), Ok(serde_json::json!(7)));
        bytes.push(0);
        assert!(
            schema
                .decode(&bytes)
                .expect_err("trailing")
                .contains("1 bytes left")
        );
        let record = compile(
            r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#,
            &[],
        )
        .expect("compiles");
        let cut = record.decode(&[0x10, b'a']);
        assert!(cut.is_err(), "string cut short: {cut:?}");
    }

    #[test]
    fn a_schema_naming_a_type_it_was_not_given_does_not_compile() {
        let err = compile(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"com.example.Missing"}]}"#,
            &[],
        )
        .expect_err("unknown name");
        assert!(err.contains("Missing"), "{err}");
    }
}
