//! `ctxctl config`: the cluster's dynamic settings (set, unset, get, show).

use crate::Output;
use clap::Subcommand;
use ctxstore_client::proto::{ConfigChange, GetConfigResponse};
use ctxstore_client::{Client, Error, Result};
use std::fmt::Write as _;

#[derive(Subcommand)]
pub(crate) enum ConfigCmd {
    /// Set settings for the whole cluster: KEY VALUE [KEY VALUE ...], as in the node
    /// file (`limits.max-value-size 2KiB`, `context.purge-interval 30s`). Every node
    /// applies them within one heartbeat, without a restart. A bad value, or a
    /// setting that needs a restart, is refused by name and changes nothing.
    Set {
        #[arg(num_args = 2.., required = true, value_names = ["KEY", "VALUE"])]
        pairs: Vec<String>,
    },
    /// Remove the cluster's value of each KEY: every node's own applies again.
    Unset {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// The value of KEY in effect on a node, and where it comes from.
    Get {
        key: String,
        /// The node to ask (default: the first endpoint).
        #[arg(long)]
        node: Option<u64>,
    },
    /// Every setting in effect on a node with its source (cluster, flag, file,
    /// default) and whether `config set` can change it; without --node, the
    /// cluster's own settings.
    Show {
        /// The node to ask.
        #[arg(long)]
        node: Option<u64>,
        /// `table` (default) or `json`.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

pub(crate) async fn run(client: &Client, endpoints: &[String], cmd: ConfigCmd) -> Result<()> {
    match cmd {
        ConfigCmd::Set { pairs } => {
            if pairs.len() % 2 != 0 {
                return Err(Error::invalid(
                    "pairs",
                    format!("`{}` has no value", pairs[pairs.len() - 1]),
                ));
            }
            let changes = pairs
                .chunks(2)
                .map(|kv| ConfigChange {
                    key: kv[0].clone(),
                    value: kv[1].clone(),
                    unset: false,
                })
                .collect();
            let doc = client.set_config(changes).await?;
            println!("cluster settings are at version {}", doc.version);
        }
        ConfigCmd::Unset { keys } => {
            let changes = keys
                .into_iter()
                .map(|key| ConfigChange {
                    key,
                    value: String::new(),
                    unset: true,
                })
                .collect();
            let doc = client.set_config(changes).await?;
            println!("cluster settings are at version {}", doc.version);
        }
        ConfigCmd::Get { key, node } => {
            let r = node_config(client, endpoints, node).await?;
            let v = r
                .effective
                .iter()
                .find(|v| v.key == key)
                .ok_or_else(|| Error::invalid(&key, "no such setting"))?;
            println!("{} ({})", v.value, v.source);
        }
        ConfigCmd::Show { node: None, output } => {
            let table = client.routing_table().await?;
            let doc = table.cluster_config.unwrap_or_default();
            match output {
                Output::Json => println!(
                    "{}",
                    json(&serde_json::json!({
                        "version": doc.version,
                        "settings": doc.settings,
                    }))?
                ),
                Output::Table => {
                    let mut out = format!("cluster settings, version {}\n", doc.version);
                    let mut keys: Vec<_> = doc.settings.iter().collect();
                    keys.sort();
                    for (k, v) in keys {
                        let _ = writeln!(out, "  {k} = {v}");
                    }
                    if doc.settings.is_empty() {
                        out.push_str("  (none: every node uses its own)\n");
                    }
                    print!("{out}");
                }
            }
        }
        ConfigCmd::Show {
            node: Some(n),
            output,
        } => {
            let r = node_config(client, endpoints, Some(n)).await?;
            match output {
                Output::Json => {
                    let rows: Vec<_> = r
                        .effective
                        .iter()
                        .map(|v| {
                            serde_json::json!({
                                "key": v.key, "value": v.value,
                                "source": v.source, "dynamic": v.dynamic,
                            })
                        })
                        .collect();
                    println!(
                        "{}",
                        json(&serde_json::json!({
                            "node": r.node_id,
                            "cluster_version": r.cluster.as_ref().map_or(0, |c| c.version),
                            "settings": rows,
                        }))?
                    );
                }
                Output::Table => print!("{}", render(&r)),
            }
        }
    }
    Ok(())
}

fn json(v: &serde_json::Value) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Internal(e.to_string()))
}

/// The settings of one node as aligned columns.
fn render(r: &GetConfigResponse) -> String {
    let width = r.effective.iter().map(|v| v.key.len()).max().unwrap_or(0);
    let vwidth = r.effective.iter().map(|v| v.value.len()).max().unwrap_or(0);
    let mut out = format!(
        "node {} (cluster settings version {})\n",
        r.node_id,
        r.cluster.as_ref().map_or(0, |c| c.version)
    );
    let _ = writeln!(
        out,
        "{:width$}  {:vwidth$}  {:8} CHANGE",
        "KEY", "VALUE", "SOURCE"
    );
    for v in &r.effective {
        let change = if v.dynamic { "config set" } else { "restart" };
        let _ = writeln!(
            out,
            "{:width$}  {:vwidth$}  {:8} {change}",
            v.key, v.value, v.source
        );
    }
    out
}

/// Asks node `node` (found in the routing table), or the first endpoint.
async fn node_config(
    client: &Client,
    endpoints: &[String],
    node: Option<u64>,
) -> Result<GetConfigResponse> {
    let addr = match node {
        None => endpoints
            .first()
            .cloned()
            .ok_or_else(|| Error::invalid("endpoints", "none given"))?,
        Some(n) => client
            .routing_table()
            .await?
            .nodes
            .iter()
            .find(|i| i.node_id == n)
            .map(|i| i.addr.clone())
            .ok_or_else(|| Error::invalid("node", format!("node {n} is not a member")))?,
    };
    client.node_config(&addr).await
}
