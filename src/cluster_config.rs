//! The cluster's dynamic settings (`ctxctl config`): one versioned document in the
//! meta shard, on top of each node's own configuration.
//!
//! - Names are the node file's keys, dotted (`limits.max-value-size`); values are
//!   stored as TOML literals, so one parser (the node file's) reads both.
//! - Only the settings in [`DYNAMIC`] can be set: their readers look them up at each
//!   use. Any other known key needs a restart and is refused by name; an unknown key
//!   is refused too.
//! - A change is checked on the meta leader before it is proposed: its value must
//!   parse as the setting's type (sizes may carry a unit: `2KiB`), and the proposer's
//!   configuration with the cluster's settings on top must pass
//!   [`NodeConfig::validate`]. A refused change changes nothing.
//! - Every node lays the document over its own configuration when its heartbeat (or
//!   its meta replica) brings a newer version: the cluster's value wins over the
//!   node's flag, file and default.

use crate::config::{flatten, NodeConfig};
use crate::error::{Error, Result};
use crate::proto::{ClusterConfig, ConfigChange, ConfigValue};
use std::collections::BTreeMap;

/// The settings a running cluster can change.
pub const DYNAMIC: &[&str] = &[
    "limits.max-key-size",
    "limits.max-value-size",
    "limits.max-batch-ops",
    "limits.max-scan-limit",
    "limits.max-message-size",
    "limits.max-messages-per-append",
    "limits.max-blobs-per-checkpoint",
    "limits.max-thread-id-size",
    "limits.max-checkpoint-ns-size",
    "context.purge-interval",
    "context.watch-retain-bytes",
    "context.watch-retain-age",
    "log.level",
    "raft.log-gc-threshold",
    "raft.log-gc-keep",
    "raft.leader-balance",
    "split.enabled",
    "split.max-size",
    "split.max-keys",
    "split.max-writes-per-sec",
    "split.max-write-bytes-per-sec",
    "split.min-interval",
    "split.max-concurrent-per-node",
    "split.max-shards-per-node",
    "pd.replicas",
    "pd.node-down-after",
    "pd.interval",
    "pd.max-replica-ops",
    "pd.max-leader-ops",
    "pd.max-snapshots-per-node",
    "pd.min-free-bytes",
    "pd.balance-tolerance",
    "pd.operator-timeout",
];

/// Every setting of `cfg`, dotted key → value.
pub fn settings(cfg: &NodeConfig) -> Result<BTreeMap<String, toml::Value>> {
    let tree = toml::Value::try_from(cfg)
        .map_err(|e| Error::Internal(format!("cannot serialize the config: {e}")))?;
    let mut out = BTreeMap::new();
    flatten(&tree, "", &mut out);
    Ok(out)
}

/// Parses a stored TOML literal.
fn literal(key: &str, text: &str) -> Result<toml::Value> {
    let mut t: toml::Table = toml::from_str(&format!("v = {text}"))
        .map_err(|e| Error::invalid(key, format!("`{text}` is not a TOML value: {e}")))?;
    t.remove("v")
        .ok_or_else(|| Error::invalid(key, format!("`{text}` is not a TOML value")))
}

/// `raw` (as an operator typed it) as a value of the type `like` has.
fn parse_as(key: &str, raw: &str, like: &toml::Value) -> Result<toml::Value> {
    let raw = raw.trim();
    match like {
        toml::Value::Integer(_) => {
            let n = match raw.parse::<u64>() {
                Ok(n) => n,
                Err(_) => raw
                    .parse::<bytesize::ByteSize>()
                    .map(|b| b.as_u64())
                    .map_err(|_| {
                        Error::invalid(
                            key,
                            format!("`{raw}` is not a whole number or a size like 2KiB"),
                        )
                    })?,
            };
            i64::try_from(n)
                .map(toml::Value::Integer)
                .map_err(|_| Error::invalid(key, format!("`{raw}` is too large")))
        }
        toml::Value::Boolean(_) => raw
            .parse::<bool>()
            .map(toml::Value::Boolean)
            .map_err(|_| Error::invalid(key, format!("`{raw}` is not true or false"))),
        toml::Value::Float(_) => raw
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| Error::invalid(key, format!("`{raw}` is not a number"))),
        toml::Value::String(_) => Ok(toml::Value::String(raw.to_string())),
        _ => Err(Error::invalid(
            key,
            "this setting cannot be set from the cluster",
        )),
    }
}

/// Sets dotted `key` in `tree` (its tables exist: `tree` is a serialized config).
fn set_path(tree: &mut toml::Value, key: &str, value: toml::Value) {
    let mut node = tree;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(t) = node.as_table_mut() else { return };
        if parts.peek().is_none() {
            t.insert(part.to_string(), value);
            return;
        }
        node = t
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
}

/// `base` with the cluster's `settings` on top, checked by [`NodeConfig::validate`].
/// A key that is not [`DYNAMIC`] (stored by a newer version) is ignored.
pub fn overlay(base: &NodeConfig, settings: &BTreeMap<String, String>) -> Result<NodeConfig> {
    let mut tree = toml::Value::try_from(base)
        .map_err(|e| Error::Internal(format!("cannot serialize the config: {e}")))?;
    for (key, text) in settings {
        if DYNAMIC.contains(&key.as_str()) {
            set_path(&mut tree, key, literal(key, text)?);
        }
    }
    let mut cfg: NodeConfig = tree
        .try_into()
        .map_err(|e: toml::de::Error| Error::invalid("config", e.message().to_string()))?;
    cfg.origins = base.origins.clone();
    cfg.validate().map_err(|e| match e {
        Error::Config { field, reason } => Error::invalid(&field, reason),
        other => other,
    })?;
    Ok(cfg)
}

/// Checks `changes` against `current` and the proposer's own configuration `base`;
/// returns them with each value as a TOML literal (what the meta shard stores).
pub fn check_changes(
    base: &NodeConfig,
    current: &ClusterConfig,
    changes: &[ConfigChange],
) -> Result<Vec<ConfigChange>> {
    if changes.is_empty() {
        return Err(Error::invalid("changes", "no setting to change"));
    }
    let known = settings(base)?;
    let mut after: BTreeMap<String, String> = current
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        let key = c.key.trim();
        let Some(like) = known.get(key) else {
            // Settings whose default is "unset" do not show in the serialized config.
            let unknown_but_optional = [
                "advertise",
                "status.listen",
                "security.ca-path",
                "security.cert-path",
                "security.key-path",
                "security.max-connection-age",
            ]
            .contains(&key);
            return Err(if unknown_but_optional {
                Error::invalid(key, "needs a restart: set it in the node's file or flags")
            } else {
                Error::invalid(key, "no such setting")
            });
        };
        if !DYNAMIC.contains(&key) {
            return Err(Error::invalid(
                key,
                "needs a restart: set it in each node's file or flags",
            ));
        }
        if c.unset {
            after.remove(key);
            out.push(ConfigChange {
                key: key.to_string(),
                value: String::new(),
                unset: true,
            });
            continue;
        }
        let text = parse_as(key, &c.value, like)?.to_string();
        after.insert(key.to_string(), text.clone());
        // A value of the right TOML type can still be refused by the setting's own
        // type (a duration) or rule: name the setting.
        overlay(base, &after).map_err(|e| match e {
            Error::InvalidArgument { field, reason } if field == "config" => {
                Error::invalid(key, reason)
            }
            other => other,
        })?;
        out.push(ConfigChange {
            key: key.to_string(),
            value: text,
            unset: false,
        });
    }
    overlay(base, &after)?;
    Ok(out)
}

/// Applies checked changes to the document (in the meta shard's state machine: no
/// check can fail here, and every replica gets the same result).
pub fn apply_changes(doc: &mut ClusterConfig, changes: &[ConfigChange]) {
    for c in changes {
        if c.unset {
            doc.settings.remove(&c.key);
        } else {
            doc.settings.insert(c.key.clone(), c.value.clone());
        }
    }
    doc.version += 1;
}

/// Every setting in effect on a node, with where it comes from.
pub fn describe(effective: &NodeConfig, cluster: &ClusterConfig) -> Result<Vec<ConfigValue>> {
    let origins = &effective.origins;
    Ok(settings(effective)?
        .into_iter()
        .map(|(key, v)| {
            let dynamic = DYNAMIC.contains(&key.as_str());
            let source = if dynamic && cluster.settings.contains_key(&key) {
                "cluster"
            } else if origins.flags.contains(&key) {
                "flag"
            } else if origins.file.contains(&key) {
                "file"
            } else {
                "default"
            };
            ConfigValue {
                value: v.to_string(),
                source: source.into(),
                dynamic,
                key,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> NodeConfig {
        NodeConfig {
            node_id: 1,
            data_dir: "/tmp/x".into(),
            initial_cluster: "1=127.0.0.1:7001".into(),
            ..Default::default()
        }
    }

    fn change(key: &str, value: &str) -> ConfigChange {
        ConfigChange {
            key: key.into(),
            value: value.into(),
            unset: false,
        }
    }

    #[test]
    fn every_dynamic_key_is_a_setting() {
        let known = settings(&base()).unwrap();
        for k in DYNAMIC {
            assert!(known.contains_key(*k), "{k} is not a setting");
        }
    }

    #[test]
    fn changes_are_typed_checked_and_laid_over_the_node() {
        let mut doc = ClusterConfig::default();
        let ok = check_changes(
            &base(),
            &doc,
            &[
                change("limits.max-value-size", "2KiB"),
                change("context.purge-interval", "30s"),
                change("raft.leader-balance", "false"),
            ],
        )
        .unwrap();
        assert_eq!(ok[0].value, "2048");
        assert_eq!(ok[1].value, "\"30s\"");
        apply_changes(&mut doc, &ok);
        assert_eq!(doc.version, 1);
        let settings: BTreeMap<String, String> = doc.settings.clone().into_iter().collect();
        let cfg = overlay(&base(), &settings).unwrap();
        assert_eq!(cfg.limits.max_value_size, 2048);
        assert_eq!(
            cfg.context.purge_interval,
            std::time::Duration::from_secs(30)
        );
        assert!(!cfg.raft.leader_balance);
        let shown = describe(&cfg, &doc).unwrap();
        let of = |k: &str| shown.iter().find(|v| v.key == k).unwrap().clone();
        assert_eq!(
            (
                of("limits.max-value-size").source.as_str(),
                of("limits.max-value-size").value.as_str()
            ),
            ("cluster", "2048")
        );
        assert_eq!(of("limits.max-key-size").source, "default");
        assert!(!of("raft.tick-interval").dynamic);

        let unset = check_changes(
            &base(),
            &doc,
            &[ConfigChange {
                key: "limits.max-value-size".into(),
                value: String::new(),
                unset: true,
            }],
        )
        .unwrap();
        apply_changes(&mut doc, &unset);
        assert_eq!(doc.version, 2);
        assert!(!doc.settings.contains_key("limits.max-value-size"));
    }

    #[test]
    fn bad_changes_name_the_setting_and_change_nothing() {
        let doc = ClusterConfig::default();
        let cases = [
            (
                change("limits.max-value-size", "lots"),
                "limits.max-value-size",
                "size like 2KiB",
            ),
            (
                change("raft.leader-balance", "maybe"),
                "raft.leader-balance",
                "true or false",
            ),
            (
                change("raft.tick-interval", "50ms"),
                "raft.tick-interval",
                "needs a restart",
            ),
            (change("listen", "0.0.0.0:1"), "listen", "needs a restart"),
            (change("limits.nope", "1"), "limits.nope", "no such setting"),
            (
                change("context.purge-interval", "1ms"),
                "context.purge-interval",
                "at least 10ms",
            ),
            (
                change("context.purge-interval", "soon"),
                "context.purge-interval",
                "soon",
            ),
            (
                change("split.max-shards-per-node", "0"),
                "split.max-shards-per-node",
                "",
            ),
            (change("log.level", "info,[nope"), "log.level", "nope"),
        ];
        for (c, field, why) in cases {
            let e = check_changes(&base(), &doc, std::slice::from_ref(&c)).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(field) && text.contains(why), "{c:?}: {text}");
        }
    }
}
