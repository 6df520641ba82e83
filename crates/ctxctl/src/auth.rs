//! `ctxctl auth`: turn auth on or off, manage users, roles, grants and tokens.

use crate::Output;
use clap::Subcommand;
use ctxstore_client::proto::{
    auth_change::Op, Access, AuthChange, AuthChangeResponse, AuthStore, Permission, ResourceKind,
    RolePermission, UserRole,
};
use ctxstore_client::{Client, Error, Result};
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum AuthCmd {
    /// Turn auth on: every call then needs a token or a client certificate naming a
    /// user. Refused until a user has the role root, and on nodes without TLS and
    /// peer certificates.
    Enable,
    /// Turn auth off (root).
    Disable,
    /// Who the cluster takes this client for, and whether auth is on.
    Whoami,
    /// Users, their roles and token ids; roles and their grants.
    List {
        /// `table` (default) or `json`.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Users.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Roles and what they grant.
    Role {
        #[command(subcommand)]
        cmd: RoleCmd,
    },
    /// Bearer tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// A tenant in one step: role NAME with read-write on the kv prefix, conversation
    /// namespace, thread prefix and model prefix `NAME/`, user NAME with that role,
    /// and a token for it (printed once).
    Tenant {
        #[command(subcommand)]
        cmd: TenantCmd,
    },
}

#[derive(Subcommand)]
pub(crate) enum UserCmd {
    /// Add a user (no roles, no tokens).
    Add { name: String },
    /// Delete a user and its tokens.
    Delete { name: String },
    /// Give a user a role (`root` for administration).
    Grant { name: String, role: String },
    /// Take a role from a user.
    Revoke { name: String, role: String },
}

#[derive(Subcommand)]
pub(crate) enum RoleCmd {
    /// Add a role (no grants).
    Add { name: String },
    /// Delete a role no user has.
    Delete { name: String },
    /// Let a role read, write or both (`read`, `write`, `readwrite`) the names of a
    /// kind (`kv`, `conversation`, `thread`, `model`) starting with PREFIX ("" for
    /// all; a conversation's name is `<namespace>/<id>`).
    Grant {
        role: String,
        kind: String,
        prefix: String,
        access: String,
    },
    /// Remove a grant (the same four words it was given with).
    Revoke {
        role: String,
        kind: String,
        prefix: String,
        access: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum TokenCmd {
    /// Make a token for USER and print it: it is shown only now.
    Create { user: String },
    /// Revoke a token by its id (the 16 hex digits after `ctx_`; `auth list` shows
    /// them). Returns once every up node refuses it.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub(crate) enum TenantCmd {
    /// Role, user and token for tenant NAME.
    Add { name: String },
}

fn kind(s: &str) -> Result<ResourceKind> {
    Ok(match s {
        "kv" => ResourceKind::Kv,
        "conversation" => ResourceKind::Conversation,
        "thread" => ResourceKind::Thread,
        "model" => ResourceKind::Model,
        _ => {
            return Err(Error::invalid(
                "kind",
                format!("`{s}`: one of kv, conversation, thread, model"),
            ))
        }
    })
}

fn access(s: &str) -> Result<Access> {
    Ok(match s {
        "read" => Access::Read,
        "write" => Access::Write,
        "readwrite" => Access::Readwrite,
        _ => {
            return Err(Error::invalid(
                "access",
                format!("`{s}`: one of read, write, readwrite"),
            ))
        }
    })
}

fn permission(role: String, k: &str, prefix: String, a: &str) -> Result<RolePermission> {
    Ok(RolePermission {
        role,
        permission: Some(Permission {
            kind: kind(k)? as i32,
            prefix: prefix.into_bytes().into(),
            access: access(a)? as i32,
        }),
    })
}

async fn change(client: &Client, op: Op) -> Result<AuthChangeResponse> {
    client.auth_change(AuthChange { op: Some(op) }).await
}

/// Prints the outcome of a change; exit 3 when some up node did not confirm it.
fn report(what: &str, r: &AuthChangeResponse) -> ExitCode {
    println!("{what} (auth revision {})", r.revision);
    if r.nodes_behind.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "warning: nodes {:?} had not confirmed revision {} yet; they may still act on the previous one",
        r.nodes_behind, r.revision
    );
    ExitCode::from(3)
}

pub(crate) async fn run(client: &Client, cmd: AuthCmd) -> Result<ExitCode> {
    let code = match cmd {
        AuthCmd::Enable => report("auth enabled", &change(client, Op::SetEnabled(true)).await?),
        AuthCmd::Disable => report(
            "auth disabled",
            &change(client, Op::SetEnabled(false)).await?,
        ),
        AuthCmd::Whoami => {
            let w = client.who_am_i().await?;
            println!(
                "{} (by {}; roles: {}; auth {})",
                w.name,
                w.method,
                if w.roles.is_empty() {
                    "none".to_string()
                } else {
                    w.roles.join(", ")
                },
                if w.auth_enabled { "on" } else { "off" }
            );
            ExitCode::SUCCESS
        }
        AuthCmd::List { output } => {
            let store = client.auth_get().await?;
            match output {
                Output::Json => println!("{}", json(&store)),
                Output::Table => print!("{}", table(&store)),
            }
            ExitCode::SUCCESS
        }
        AuthCmd::User { cmd } => match cmd {
            UserCmd::Add { name } => report(
                &format!("user {name} added"),
                &change(client, Op::AddUser(name.clone())).await?,
            ),
            UserCmd::Delete { name } => report(
                &format!("user {name} deleted"),
                &change(client, Op::DeleteUser(name.clone())).await?,
            ),
            UserCmd::Grant { name, role } => report(
                &format!("user {name} has role {role}"),
                &change(
                    client,
                    Op::GrantRole(UserRole {
                        user: name.clone(),
                        role: role.clone(),
                    }),
                )
                .await?,
            ),
            UserCmd::Revoke { name, role } => report(
                &format!("user {name} no longer has role {role}"),
                &change(
                    client,
                    Op::RevokeRole(UserRole {
                        user: name.clone(),
                        role: role.clone(),
                    }),
                )
                .await?,
            ),
        },
        AuthCmd::Role { cmd } => match cmd {
            RoleCmd::Add { name } => report(
                &format!("role {name} added"),
                &change(client, Op::AddRole(name.clone())).await?,
            ),
            RoleCmd::Delete { name } => report(
                &format!("role {name} deleted"),
                &change(client, Op::DeleteRole(name.clone())).await?,
            ),
            RoleCmd::Grant {
                role,
                kind,
                prefix,
                access,
            } => {
                let p = permission(role.clone(), &kind, prefix.clone(), &access)?;
                report(
                    &format!("role {role} may {access} {kind} {prefix:?}"),
                    &change(client, Op::GrantPermission(p)).await?,
                )
            }
            RoleCmd::Revoke {
                role,
                kind,
                prefix,
                access,
            } => {
                let p = permission(role.clone(), &kind, prefix.clone(), &access)?;
                report(
                    &format!("role {role} no longer may {access} {kind} {prefix:?}"),
                    &change(client, Op::RevokePermission(p)).await?,
                )
            }
        },
        AuthCmd::Token { cmd } => match cmd {
            TokenCmd::Create { user } => {
                let r = change(client, Op::CreateToken(user)).await?;
                // The token alone on stdout, for `TOKEN=$(ctxctl auth token create u)`.
                println!("{}", r.token);
                eprintln!("(shown only now; auth revision {})", r.revision);
                ExitCode::SUCCESS
            }
            TokenCmd::Revoke { id } => {
                let id = id
                    .strip_prefix("ctx_")
                    .map(|rest| rest.split('_').next().unwrap_or(rest))
                    .unwrap_or(&id)
                    .to_string();
                report(
                    &format!("token {id} revoked"),
                    &change(client, Op::RevokeToken(id.clone())).await?,
                )
            }
        },
        AuthCmd::Tenant {
            cmd: TenantCmd::Add { name },
        } => {
            // One change, all or nothing: a tenant is never left half made.
            let r = client.add_tenant(&name).await?;
            println!("{}", r.token);
            eprintln!(
                "tenant {name}: role and user {name} (read-write on kv, conversation, thread and model names starting with {name}/); the token above is shown only now"
            );
            ExitCode::SUCCESS
        }
    };
    Ok(code)
}

fn kind_name(k: i32) -> &'static str {
    match ResourceKind::try_from(k) {
        Ok(ResourceKind::Kv) => "kv",
        Ok(ResourceKind::Conversation) => "conversation",
        Ok(ResourceKind::Thread) => "thread",
        Ok(ResourceKind::Model) => "model",
        _ => "?",
    }
}

fn access_name(a: i32) -> &'static str {
    match Access::try_from(a) {
        Ok(Access::Read) => "read",
        Ok(Access::Write) => "write",
        Ok(Access::Readwrite) => "readwrite",
        _ => "?",
    }
}

fn table(store: &AuthStore) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "auth {} (revision {})",
        if store.enabled { "on" } else { "off" },
        store.revision
    );
    let _ = writeln!(out, "{:<24} {:<30} TOKENS", "USER", "ROLES");
    for u in &store.users {
        let tokens: Vec<&str> = u.tokens.iter().map(|t| t.id.as_str()).collect();
        let _ = writeln!(
            out,
            "{:<24} {:<30} {}",
            u.name,
            u.roles.join(","),
            tokens.join(",")
        );
    }
    let _ = writeln!(out, "{:<24} GRANTS", "ROLE");
    for r in &store.roles {
        let grants: Vec<String> = r
            .permissions
            .iter()
            .map(|p| {
                format!(
                    "{} {} {:?}",
                    access_name(p.access),
                    kind_name(p.kind),
                    String::from_utf8_lossy(&p.prefix)
                )
            })
            .collect();
        let _ = writeln!(out, "{:<24} {}", r.name, grants.join("; "));
    }
    out
}

fn json(store: &AuthStore) -> String {
    let users: Vec<serde_json::Value> = store
        .users
        .iter()
        .map(|u| {
            serde_json::json!({
                "name": u.name,
                "roles": u.roles,
                "tokens": u.tokens.iter().map(|t| serde_json::json!({"id": t.id, "created_ms": t.created_ms})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let roles: Vec<serde_json::Value> = store
        .roles
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "permissions": r.permissions.iter().map(|p| serde_json::json!({
                    "kind": kind_name(p.kind),
                    "prefix": String::from_utf8_lossy(&p.prefix),
                    "access": access_name(p.access),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "enabled": store.enabled,
        "revision": store.revision,
        "users": users,
        "roles": roles,
    })
    .to_string()
}
