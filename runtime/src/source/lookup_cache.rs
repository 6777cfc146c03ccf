//! eKuiper's lookup cache: the `lookup` options of a lookup table's source configuration
//! (`cache`, `cacheTtl`, `cacheMissingKey`) and [`CachedLookup`], which answers a key from what
//! an earlier lookup of it found, until its time to live is over.
//!
//! As in eKuiper, each lookup table of a rule has its own cache; an entry lives `cacheTtl`
//! (none: for as long as the rule runs); a key that found nothing is cached only with
//! `cacheMissingKey`; a lookup that fails is never cached. Expired entries are dropped every
//! two TTLs, as eKuiper's sweeper does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::clock::Clock;
use crate::sql::Lookup;
use crate::value::{Row, Value};

/// `cacheTtl` as eKuiper 2 reads it: a whole number of milliseconds, or a Go duration.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TtlSetting {
    /// Milliseconds.
    Millis(u64),
    /// `"10m"`, `"1s"`, `"500ms"`.
    Text(String),
}

/// The `lookup` section of a lookup table's source configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LookupSettings {
    /// Whether to cache what lookups find.
    pub cache: Option<bool>,
    /// How long an entry lives (none or 0: as long as the rule runs).
    pub cache_ttl: Option<TtlSetting>,
    /// Whether a key that found nothing is cached too.
    pub cache_missing_key: Option<bool>,
}

impl LookupSettings {
    /// `self` with the fields `over` sets replaced.
    pub fn overlay(&self, over: &Self) -> Self {
        Self {
            cache: over.cache.or(self.cache),
            cache_ttl: over.cache_ttl.clone().or_else(|| self.cache_ttl.clone()),
            cache_missing_key: over.cache_missing_key.or(self.cache_missing_key),
        }
    }

    /// The cache these settings ask for (`None`: no cache), checked.
    pub fn options(&self) -> Result<Option<CacheOptions>, String> {
        let ttl_ms = match &self.cache_ttl {
            None => 0,
            Some(TtlSetting::Millis(ms)) => *ms,
            Some(TtlSetting::Text(text)) => crate::rule::parse_duration_ms(text).ok_or_else(|| {
                format!(
                    "lookup: cacheTtl {text:?}: expected milliseconds or a duration like \"10m\""
                )
            })?,
        };
        Ok(self.cache.unwrap_or(false).then(|| CacheOptions {
            ttl: (ttl_ms > 0).then(|| Duration::from_millis(ttl_ms)),
            missing_keys: self.cache_missing_key.unwrap_or(false),
        }))
    }
}

/// A lookup cache's settings, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// How long an entry lives (`None`: as long as the rule runs).
    pub ttl: Option<Duration>,
    /// Whether a key that found nothing is cached.
    pub missing_keys: bool,
}

struct Entry {
    rows: Vec<Row>,
    /// When it expires (ms since the epoch, on the rule's clock); `None`: never.
    expires_ms: Option<i64>,
}

struct Entries {
    map: HashMap<String, Entry>,
    /// When expired entries were last dropped.
    swept_ms: i64,
}

/// A lookup table behind a cache.
pub struct CachedLookup {
    inner: Arc<dyn Lookup>,
    options: CacheOptions,
    clock: Clock,
    entries: Mutex<Entries>,
}

impl CachedLookup {
    /// `inner` behind a cache with `options`, its entries timed by `clock`.
    pub fn new(inner: Arc<dyn Lookup>, options: CacheOptions, clock: Clock) -> Self {
        let now = clock.now_ms();
        Self {
            inner,
            options,
            clock,
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                swept_ms: now,
            }),
        }
    }

    fn ttl_ms(&self) -> Option<i64> {
        self.options
            .ttl
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

impl Lookup for CachedLookup {
    fn get(&self, key: &Value) -> Result<Vec<Row>, String> {
        // The key's text, as eKuiper keys its cache (`1` and `1.0` are one entry).
        let text = super::redis::key_text(key);
        let now = self.clock.now_ms();
        if let Ok(entries) = self.entries.lock()
            && let Some(entry) = entries.map.get(&text)
            && entry.expires_ms.is_none_or(|at| now <= at)
        {
            return Ok(entry.rows.clone());
        }
        let rows = self.inner.get(key)?;
        if rows.is_empty() && !self.options.missing_keys {
            return Ok(rows);
        }
        if let Ok(mut entries) = self.entries.lock() {
            let ttl = self.ttl_ms();
            if let Some(ttl) = ttl
                && now.saturating_sub(entries.swept_ms) >= ttl.saturating_mul(2)
            {
                entries
                    .map
                    .retain(|_, e| e.expires_ms.is_none_or(|at| now <= at));
                entries.swept_ms = now;
            }
            entries.map.insert(
                text,
                Entry {
                    rows: rows.clone(),
                    expires_ms: ttl.map(|ttl| now.saturating_add(ttl)),
                },
            );
        }
        Ok(rows)
    }

    fn rows_hold_key(&self) -> bool {
        self.inner.rows_hold_key()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A store that counts its lookups: key 1 holds a row, key 9 fails, others hold nothing.
    #[derive(Default)]
    struct Store {
        asked: AtomicUsize,
    }

    impl Lookup for Store {
        fn get(&self, key: &Value) -> Result<Vec<Row>, String> {
            self.asked.fetch_add(1, Ordering::Relaxed);
            match key {
                Value::Int(1) | Value::Float(1.0) => Ok(vec![Row::from_pairs(
                    vec![(Arc::from("v"), Value::string("a"))],
                    0,
                )]),
                Value::Int(9) => Err("out of reach".into()),
                _ => Ok(Vec::new()),
            }
        }
    }

    fn cached(ttl_ms: Option<u64>, missing_keys: bool) -> (Arc<Store>, CachedLookup, Clock) {
        let store = Arc::new(Store::default());
        let clock = Clock::manual(1_000);
        let options = CacheOptions {
            ttl: ttl_ms.map(Duration::from_millis),
            missing_keys,
        };
        let lookup = CachedLookup::new(store.clone(), options, clock.clone());
        (store, lookup, clock)
    }

    fn asked(store: &Store) -> usize {
        store.asked.load(Ordering::Relaxed)
    }

    #[test]
    fn a_hit_is_answered_from_the_cache_until_its_ttl_is_over() {
        let (store, lookup, clock) = cached(Some(600), false);
        assert_eq!(lookup.get(&Value::Int(1)).unwrap().len(), 1);
        assert_eq!(lookup.get(&Value::Int(1)).unwrap().len(), 1);
        // `1.0` is the same key as `1`.
        assert_eq!(lookup.get(&Value::Float(1.0)).unwrap().len(), 1);
        assert_eq!(asked(&store), 1);
        clock.advance(600);
        lookup.get(&Value::Int(1)).unwrap();
        assert_eq!(asked(&store), 1, "still alive at its TTL");
        clock.advance(1);
        lookup.get(&Value::Int(1)).unwrap();
        assert_eq!(asked(&store), 2, "expired after its TTL");
    }

    #[test]
    fn without_a_ttl_an_entry_lives_as_long_as_the_rule() {
        let (store, lookup, clock) = cached(None, false);
        lookup.get(&Value::Int(1)).unwrap();
        clock.advance(86_400_000);
        lookup.get(&Value::Int(1)).unwrap();
        assert_eq!(asked(&store), 1);
    }

    #[test]
    fn a_missing_key_is_cached_only_with_cache_missing_key() {
        let (store, lookup, _) = cached(Some(1_000), false);
        assert!(lookup.get(&Value::Int(2)).unwrap().is_empty());
        assert!(lookup.get(&Value::Int(2)).unwrap().is_empty());
        assert_eq!(asked(&store), 2);
        let (store, lookup, _) = cached(Some(1_000), true);
        assert!(lookup.get(&Value::Int(2)).unwrap().is_empty());
        assert!(lookup.get(&Value::Int(2)).unwrap().is_empty());
        assert_eq!(asked(&store), 1);
    }

    #[test]
    fn a_failed_lookup_is_not_cached() {
        let (store, lookup, _) = cached(None, true);
        assert!(lookup.get(&Value::Int(9)).is_err());
        assert!(lookup.get(&Value::Int(9)).is_err());
        assert_eq!(asked(&store), 2);
    }

    #[test]
    fn expired_entries_are_swept() {
        let (_, lookup, clock) = cached(Some(100), true);
        for k in 10..20 {
            lookup.get(&Value::Int(k)).unwrap();
        }
        clock.advance(250);
        lookup.get(&Value::Int(100)).unwrap();
        assert_eq!(lookup.entries.lock().unwrap().map.len(), 1);
    }

    #[test]
    fn settings_follow_ekuiper() {
        let parse = |yaml: &str| -> LookupSettings { serde_saphyr::from_str(yaml).unwrap() };
        let s = parse("cache: true\ncacheTtl: 600\ncacheMissingKey: true\n");
        let o = s.options().unwrap().unwrap();
        assert_eq!(o.ttl, Some(Duration::from_millis(600)));
        assert!(o.missing_keys);
        let o = parse("cache: true\ncacheTtl: \"10m\"\n").options().unwrap();
        assert_eq!(o.unwrap().ttl, Some(Duration::from_secs(600)));
        assert!(parse("cacheTtl: 600\n").options().unwrap().is_none());
        let err = parse("cache: true\ncacheTtl: \"nosense\"\n")
            .options()
            .unwrap_err();
        assert!(err.contains("cacheTtl"), "{err}");
    }
}
