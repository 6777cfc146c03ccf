//! A sink built against `oort:sink@0.1.0` (the frozen `wit/v0.1.0`), with wit-bindgen directly
//! (the SDK targets the current version): it appends each message to the file its `path` prop
//! names, tagged `"wit":"0.1.0"`, so a test can see that a 0.1.0 component still loads and runs.
#![cfg_attr(
    target_arch = "wasm32",
    expect(unsafe_code, reason = "the export glue wit-bindgen generates")
)]

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/v0.1.0",
        world: "sink-world",
    });
}

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;

use bindings::exports::oort::sink::sink::Guest;
use bindings::oort::sink::types::{Batch, Context, SinkError};

thread_local! {
    static PATH: RefCell<Option<String>> = const { RefCell::new(None) };
    static OUT: RefCell<Option<File>> = const { RefCell::new(None) };
}

struct Legacy;

impl Guest for Legacy {
    fn configure(_ctx: Context, props: String) -> Result<(), SinkError> {
        // The props are `{"path":"..."}`; a full JSON parser is not worth a dependency here.
        let path = props
            .split("\"path\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| SinkError::InvalidConfig("`path` is required".into()))?;
        PATH.with(|p| *p.borrow_mut() = Some(path.to_string()));
        Ok(())
    }

    fn open() -> Result<(), SinkError> {
        let path = PATH.with(|p| p.borrow().clone()).unwrap_or_default();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| SinkError::Transient(format!("{path}: {e}")))?;
        OUT.with(|o| *o.borrow_mut() = Some(file));
        Ok(())
    }

    fn collect(batch: Batch) -> Result<(), SinkError> {
        let mut text = String::new();
        let mut start = 0usize;
        for &end in &batch.ends {
            let payload = String::from_utf8_lossy(&batch.payloads[start..end as usize]);
            text.push_str(&format!("{{\"wit\":\"0.1.0\",\"m\":{payload}}}\n"));
            start = end as usize;
        }
        OUT.with(|o| match o.borrow_mut().as_mut() {
            Some(out) => out
                .write_all(text.as_bytes())
                .map_err(|e| SinkError::Transient(e.to_string())),
            None => Err(SinkError::Transient("not open".into())),
        })
    }

    fn close() -> Result<(), SinkError> {
        OUT.with(|o| o.borrow_mut().take());
        Ok(())
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Legacy with_types_in bindings);
