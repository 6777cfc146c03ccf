//! Placeholder until the template engine lands.
use crate::value::Value;
#[derive(Debug, Clone)]
pub struct Template(String);
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(String);
impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        Ok(Self(text.to_string()))
    }
    pub fn render(&self, _dot: &Value, out: &mut Vec<u8>) -> Result<(), TemplateError> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(())
    }
}
