//! The command-line client of a running paylink, in the manner of the
//! Stripe CLI: `paylink links ...`, `paylink events ...`, `paylink
//! webhook-endpoints ...` call the native API at `--api-url` with
//! `--api-key` and print readable tables (or, with `--json`, the API's own
//! JSON for scripts). An API error prints its code and message from the
//! error envelope and the command exits non-zero.
//!
//! It is a client only: it speaks HTTP to the server like any merchant
//! integration, and shares no state with it.

use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};

use crate::domain::Currency;
use crate::domain::money::format_money;

/// Longest a call may take before the command gives up.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the API is and who calls it.
pub struct Client {
    api_url: String,
    api_key: String,
    http: reqwest::Client,
    json: bool,
}

/// One call to the API.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl Call {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: None,
        }
    }

    pub fn send(method: Method, path: impl Into<String>, body: Value) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            body: Some(body),
        }
    }

    /// Adds `name=value` to the query when `value` is given.
    pub fn query(mut self, name: &str, value: Option<impl ToString>) -> Self {
        if let Some(value) = value {
            self.query.push((name.to_owned(), value.to_string()));
        }
        self
    }
}

impl Client {
    pub fn new(api_url: &str, api_key: &str, json: bool) -> anyhow::Result<Self> {
        Ok(Self {
            api_url: api_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            http: reqwest::Client::builder().timeout(TIMEOUT).build()?,
            json,
        })
    }

    /// Makes the call and prints its answer; an API error becomes the
    /// command's error, with the envelope's code and message.
    pub async fn run(&self, call: Call) -> anyhow::Result<()> {
        let answer = self.call(call).await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        } else {
            print!("{}", render(&answer));
        }
        Ok(())
    }

    async fn call(&self, call: Call) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.api_url, call.path);
        let mut request = self
            .http
            .request(call.method, &url)
            .bearer_auth(&self.api_key)
            .query(&call.query);
        if let Some(body) = call.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body)?);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let text = response.text().await.context("reading the answer")?;
        let body: Value = if text.is_empty() {
            json!({})
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("the answer ({status}) is not JSON: {text}"))?
        };
        if status.is_success() {
            return Ok(body);
        }
        let error = &body["error"];
        let mut message = format!(
            "{} ({}): {}",
            error["code"].as_str().unwrap_or("error"),
            status.as_u16(),
            error["message"].as_str().unwrap_or(&text)
        );
        if let Some(param) = error["param"].as_str() {
            message.push_str(&format!(" [param: {param}]"));
        }
        if let Some(id) = error["request_id"].as_str() {
            message.push_str(&format!(" [request: {id}]"));
        }
        anyhow::bail!(message)
    }
}

/// `KEY=VALUE` pairs as a JSON object (metadata).
pub fn pairs(given: &[String]) -> anyhow::Result<Option<Value>> {
    if given.is_empty() {
        return Ok(None);
    }
    let mut object = serde_json::Map::new();
    for pair in given {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("`{pair}` is not KEY=VALUE"))?;
        object.insert(key.to_owned(), json!(value));
    }
    Ok(Some(Value::Object(object)))
}

/// Puts each `(field, value)` whose value is given into a JSON object.
pub fn body(fields: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name.to_owned(), v)))
            .collect(),
    )
}

/// A list as a table; any other object as `field: value` lines.
fn render(answer: &Value) -> String {
    match answer["data"].as_array() {
        Some(items) if answer["object"] == "list" => table(items, answer["has_more"] == true),
        _ => fields(answer),
    }
}

/// A table column: its title and how a row's cell reads.
type Column = (&'static str, fn(&Value) -> String);

fn table(items: &[Value], has_more: bool) -> String {
    let Some(first) = items.first() else {
        return "(none)\n".to_owned();
    };
    let columns: &[Column] = match first["object"].as_str() {
        Some("payment_link") => &[
            ("ID", |v| text(&v["id"])),
            ("STATUS", |v| text(&v["status"])),
            ("AMOUNT", money),
            ("DESCRIPTION", |v| text(&v["description"])),
            ("CREATED", |v| text(&v["created_at"])),
        ],
        Some("event") => &[
            ("ID", |v| text(&v["id"])),
            ("TYPE", |v| text(&v["type"])),
            ("LINK", |v| text(&v["data"]["object"]["id"])),
            ("CREATED", |v| text(&v["created_at"])),
        ],
        Some("webhook_endpoint") => &[
            ("ID", |v| text(&v["id"])),
            ("URL", |v| text(&v["url"])),
            ("ENABLED", |v| text(&v["enabled"])),
            ("EVENTS", |v| text(&v["events"])),
        ],
        Some("refund") => &[
            ("ID", |v| text(&v["id"])),
            ("STATUS", |v| text(&v["status"])),
            ("AMOUNT", money),
            ("KIND", |v| text(&v["kind"])),
            ("CREATED", |v| text(&v["created_at"])),
        ],
        _ => &[
            ("ID", |v| text(&v["id"])),
            ("OBJECT", |v| text(&v["object"])),
        ],
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| columns.iter().map(|(_, cell)| cell(item)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (title, _))| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns.iter().map(|(t, _)| (*t).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    if has_more {
        out.push_str("(more: pass --starting-after with the last id)\n");
    }
    out
}

fn fields(object: &Value) -> String {
    let Some(map) = object.as_object() else {
        return format!("{object}\n");
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in map {
        let shown = match key.as_str() {
            "amount" | "amount_refunded" if object["currency"].is_string() => {
                money_of(value, &object["currency"])
            }
            _ => text(value),
        };
        out.push_str(&format!("{key:<width$}  {shown}\n"));
    }
    out
}

/// A scalar as itself, null as `-`, anything else as compact JSON.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

fn money(item: &Value) -> String {
    money_of(&item["amount"], &item["currency"])
}

/// `4995` `USD` as `$49.95`, or as given when it is not a currency.
fn money_of(amount: &Value, currency: &Value) -> String {
    match (
        amount.as_i64(),
        currency.as_str().and_then(|c| Currency::parse(c).ok()),
    ) {
        (Some(amount), Some(currency)) => format_money(amount, currency),
        _ => text(amount),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_tables_and_objects_as_fields() {
        let list = json!({"object": "list", "has_more": true, "data": [
            {"object": "payment_link", "id": "plink_1", "status": "active", "amount": 4995, "currency": "USD", "description": "Monitor", "created_at": "2026-01-15T10:00:00Z"},
            {"object": "payment_link", "id": "plink_22", "status": "cancelled", "amount": 500, "currency": "JPY", "description": null, "created_at": "2026-01-15T09:00:00Z"},
        ]});
        let shown = render(&list);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines[0],
            "ID        STATUS     AMOUNT  DESCRIPTION  CREATED"
        );
        assert_eq!(
            lines[1],
            "plink_1   active     $49.95  Monitor      2026-01-15T10:00:00Z"
        );
        assert_eq!(
            lines[2],
            "plink_22  cancelled  ¥500    -            2026-01-15T09:00:00Z"
        );
        assert!(lines[3].starts_with("(more"));
        let one = fields(
            &json!({"id": "plink_1", "amount": 4995, "currency": "EUR", "metadata": {"a": "b"}}),
        );
        assert!(one.contains("amount    €49.95"), "{one}");
        assert!(one.contains(r#"metadata  {"a":"b"}"#), "{one}");
        assert_eq!(render(&json!({"object": "list", "data": []})), "(none)\n");
    }

    #[test]
    fn metadata_pairs() {
        assert_eq!(pairs(&[]).unwrap(), None);
        assert_eq!(
            pairs(&["order=A-1".into(), "note=a=b".into()]).unwrap(),
            Some(json!({"order": "A-1", "note": "a=b"}))
        );
        assert!(pairs(&["nokey".into()]).is_err());
    }
}
