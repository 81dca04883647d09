//! The stream of each record: its tenant, app and label fields, found in a
//! table so that a stream costs its allocations once, not once per record
//! or per batch.

use std::sync::Arc;

use simd_json::prelude::ValueIntoString;
use skidder_common::format::layout::{valid_tenant, MAX_APP_LEN};

use super::{lookup, scalar_text, Parser, Value};
use crate::config::{AppSource, TenantSource};
use crate::dead_letter::Reason;
use crate::models::template::{AppTemplate, TemplatePart};
use crate::models::StreamKey;

/// The batch's distinct streams, and every stream seen lately, so that a
/// stream costs its allocations once, not once per batch.
#[derive(Default)]
pub(super) struct StreamTable {
    /// By stream key text: the stream, the batch that last used it, and its
    /// index in that batch's `streams`.
    pub(super) known: rustc_hash::FxHashMap<String, (StreamKey, u64, u32)>,
    pub(super) batch: u64,
    pub(super) streams: Vec<StreamKey>,
}

/// Streams remembered across batches; past this the memory is given back.
pub(super) const KNOWN_STREAMS: usize = 100_000;

impl Parser {
    /// Finds or adds the record's stream in the batch table.
    /// The record's stream, or why it is refused. Only new streams are
    /// checked: a refused one never enters the table.
    pub(super) fn stream_of(
        &mut self,
        v: Option<Value<'_, '_>>,
        topic: &str,
        table: &mut StreamTable,
    ) -> Result<u32, Reason> {
        let tenant = match (&self.cfg.tenant, v) {
            (TenantSource::Fixed(t), _) => t.as_str(),
            (TenantSource::Topic, _) => topic,
            (TenantSource::Field(_), Some(v)) => self
                .tenant_path
                .as_ref()
                .and_then(|p| lookup(v, p))
                .and_then(|t| t.into_string())
                .filter(|t| !t.is_empty())
                .unwrap_or(&self.cfg.default_tenant),
            (TenantSource::Field(_), None) => &self.cfg.default_tenant,
        };
        self.key_buf.clear();
        self.key_buf.push_str(tenant);
        self.key_buf.push('\0');
        let app_start = self.key_buf.len();
        let filled = match (&self.cfg.app, &self.app_template, v) {
            (AppSource::Fixed(a), _, _) => {
                self.key_buf.push_str(a);
                true
            }
            (_, Some(t), Some(v)) => fill_template(t, v, &mut self.key_buf, &mut self.value_buf),
            _ => false,
        };
        if !filled || self.key_buf.len() == app_start {
            self.key_buf.truncate(app_start);
            self.key_buf.push_str(&self.cfg.default_app);
        }
        let app_end = self.key_buf.len();
        if let Some(v) = v {
            for (name, path) in &self.label_paths {
                if let Some(val) = lookup(v, path) {
                    if scalar_text(val, &mut self.value_buf) {
                        for part in ["\0", name, "\0", &self.value_buf] {
                            self.key_buf.push_str(part);
                        }
                    }
                }
            }
        }
        if let Some((key, batch, id)) = table.known.get_mut(self.key_buf.as_str()) {
            if *batch != table.batch {
                *batch = table.batch;
                *id = table.streams.len() as u32;
                table.streams.push(key.clone());
            }
            return Ok(*id);
        }
        if !valid_tenant(tenant) {
            return Err(Reason::InvalidTenant);
        }
        if app_end - app_start > MAX_APP_LEN {
            return Err(Reason::AppTooLong);
        }
        let app: Arc<str> = self.key_buf[app_start..app_end].into();
        let mut labels = Vec::new();
        let mut parts = self.key_buf[app_end..].split('\0').skip(1);
        while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
            if v.len() > self.cfg.max_label_value_bytes {
                return Err(Reason::LabelTooLong);
            }
            labels.push((k.to_owned(), v.to_owned()));
        }
        let id = table.streams.len() as u32;
        let key = StreamKey {
            tenant: tenant.into(),
            app,
            labels: labels.into(),
        };
        table.streams.push(key.clone());
        table
            .known
            .insert(self.key_buf.clone(), (key, table.batch, id));
        Ok(id)
    }
}

fn fill_template(t: &AppTemplate, v: Value<'_, '_>, out: &mut String, tmp: &mut String) -> bool {
    for part in &t.parts {
        match part {
            TemplatePart::Literal(s) => out.push_str(s),
            TemplatePart::Field(path) => match lookup(v, path) {
                Some(val) if scalar_text(val, tmp) => out.push_str(tmp),
                _ => return false,
            },
        }
    }
    true
}
