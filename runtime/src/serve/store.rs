//! The server's persistent state: streams, tables, rules (and whether each runs), plugins, the
//! MQTT source's and sink's configuration keys and the shared connections,
//! kept in one redb database in the data directory, the embedded store the action caches use.
//! Values are JSON documents keyed by name; every change is one committed transaction, so a
//! crash leaves the last acknowledged state.

use std::path::Path;

use redb::{Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition};

/// A table of the store.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `CREATE STREAM` / `CREATE TABLE` statements, by name.
    Streams,
    /// Rules and whether each should run, by id.
    Rules,
    /// Installed sink plugins, by name.
    Plugins,
    /// The MQTT source's configuration keys given over the API, by key.
    ConfKeys,
    /// The MQTT sink's configuration keys (what an action's `resourceId` names), by key.
    SinkConfKeys,
    /// Shared connections (`/connections`): `{"typ", "props"}` by id.
    Connections,
}

impl Kind {
    fn table(self) -> TableDefinition<'static, &'static str, &'static str> {
        match self {
            Kind::Streams => TableDefinition::new("streams"),
            Kind::Rules => TableDefinition::new("rules"),
            Kind::Plugins => TableDefinition::new("plugins"),
            Kind::ConfKeys => TableDefinition::new("mqtt_conf_keys"),
            Kind::SinkConfKeys => TableDefinition::new("mqtt_sink_conf_keys"),
            Kind::Connections => TableDefinition::new("connections"),
        }
    }
}

/// The store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct StoreError {
    /// The database file.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// The server's database.
pub struct Store {
    db: Database,
    path: String,
}

impl Store {
    /// Opens (or creates) the database at `path`, with every table present.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let fail = |e: &dyn std::fmt::Display| StoreError {
            path: shown.clone(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
        let db = Database::create(path).map_err(|e| fail(&e))?;
        let txn = db.begin_write().map_err(|e| fail(&e))?;
        for kind in [
            Kind::Streams,
            Kind::Rules,
            Kind::Plugins,
            Kind::ConfKeys,
            Kind::SinkConfKeys,
            Kind::Connections,
        ] {
            txn.open_table(kind.table()).map_err(|e| fail(&e))?;
        }
        txn.commit().map_err(|e| fail(&e))?;
        Ok(Self { db, path: shown })
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Writes `value` under `key`, replacing what was there.
    pub fn put(&self, kind: Kind, key: &str, value: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(kind.table()).map_err(|e| self.err(e))?;
            table.insert(key, value).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Removes `key`.
    pub fn remove(&self, kind: Kind, key: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(kind.table()).map_err(|e| self.err(e))?;
            table.remove(key).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Every entry of a table, in key order.
    pub fn all(&self, kind: Kind) -> Result<Vec<(String, String)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(kind.table()).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = entry.map_err(|e| self.err(e))?;
            out.push((k.value().to_string(), v.value().to_string()));
        }
        Ok(out)
    }
}

/// Every entry of one table of the store at `path`, opened read-only (what `oort run-rule`
/// reads): `None` when there is no store there, empty when the store has no such table yet.
/// A store a running server holds cannot be read (the server locks it).
pub fn read_table(path: &Path, kind: Kind) -> Result<Option<Vec<(String, String)>>, StoreError> {
    let fail = |message: String| StoreError {
        path: path.display().to_string(),
        message,
    };
    if !path.is_file() {
        return Ok(None);
    }
    let db = ReadOnlyDatabase::open(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => fail(
            "the store is in use by a running `oort serve`: stop it first, or run the rule on \
             the server (POST /rules)"
                .into(),
        ),
        e => fail(e.to_string()),
    })?;
    let txn = db.begin_read().map_err(|e| fail(e.to_string()))?;
    let table = match txn.open_table(kind.table()) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Some(Vec::new())),
        Err(e) => return Err(fail(e.to_string())),
    };
    let mut out = Vec::new();
    for entry in table.iter().map_err(|e| fail(e.to_string()))? {
        let (k, v) = entry.map_err(|e| fail(e.to_string()))?;
        out.push((k.value().to_string(), v.value().to_string()));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oort.redb");
        {
            let store = Store::open(&path).unwrap();
            store.put(Kind::Rules, "r1", "{}").unwrap();
            store.put(Kind::Rules, "r2", "{\"a\":1}").unwrap();
            store.remove(Kind::Rules, "r1").unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.all(Kind::Rules).unwrap(),
            vec![("r2".to_string(), "{\"a\":1}".to_string())]
        );
        assert!(store.all(Kind::Streams).unwrap().is_empty());
    }
}
