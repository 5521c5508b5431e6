//! Tenant management statements, for the admin of a server with tenants (`journeydb serve
//! --tenants FILE`):
//!
//! ```sql
//! CREATE TENANT name [WITH (key_type = 'bigint', max_running = 4, query_memory_mb = 2048,
//!                           disk_max_mb = 10240)]
//! ALTER TENANT name SET (max_running = 8, disk_max_mb = 0)
//! DROP TENANT name
//! CREATE TOKEN name FOR TENANT tenant      -- returns the new token, once
//! DROP TOKEN name
//! SHOW TENANTS
//! ```
//!
//! PostgreSQL's grammar has none of them, so [`parse`] reads them from the token stream before
//! the SQL parser; the engine hands them to its [`AdminHook`] (the server's tenant registry).

use sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{QueryError, Result};
use crate::types::DType;
use crate::Output;

/// One tenant management statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    /// `CREATE TENANT name [WITH (option = value, ..)]`.
    CreateTenant {
        /// Tenant name.
        name: String,
        /// Options, names lower-case, values as written (strings without quotes).
        options: Vec<(String, String)>,
    },
    /// `ALTER TENANT name SET (option = value, ..)`.
    AlterTenant {
        /// Tenant name.
        name: String,
        /// Options, as in [`AdminCommand::CreateTenant`].
        options: Vec<(String, String)>,
    },
    /// `DROP TENANT name`.
    DropTenant {
        /// Tenant name.
        name: String,
    },
    /// `CREATE TOKEN name FOR TENANT tenant`.
    CreateToken {
        /// Token name (the PostgreSQL user name it logs in as).
        name: String,
        /// The tenant it opens.
        tenant: String,
    },
    /// `DROP TOKEN name`.
    DropToken {
        /// Token name.
        name: String,
    },
    /// `SHOW TENANTS`.
    ShowTenants,
}

impl std::fmt::Display for AdminCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opts = |o: &[(String, String)]| {
            o.iter()
                .map(|(k, v)| format!("{k} = '{}'", v.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            AdminCommand::CreateTenant { name, options } if options.is_empty() => {
                write!(f, "CREATE TENANT {name}")
            }
            AdminCommand::CreateTenant { name, options } => {
                write!(f, "CREATE TENANT {name} WITH ({})", opts(options))
            }
            AdminCommand::AlterTenant { name, options } => {
                write!(f, "ALTER TENANT {name} SET ({})", opts(options))
            }
            AdminCommand::DropTenant { name } => write!(f, "DROP TENANT {name}"),
            AdminCommand::CreateToken { name, tenant } => {
                write!(f, "CREATE TOKEN {name} FOR TENANT {tenant}")
            }
            AdminCommand::DropToken { name } => write!(f, "DROP TOKEN {name}"),
            AdminCommand::ShowTenants => write!(f, "SHOW TENANTS"),
        }
    }
}

/// What carries out [`AdminCommand`]s: the server's tenant registry.
pub trait AdminHook: Send + Sync + std::fmt::Debug {
    /// Runs one command.
    fn run(&self, cmd: &AdminCommand) -> Result<Output>;
    /// The columns a command returns (`None`: no rows).
    fn describe(&self, cmd: &AdminCommand) -> Option<Vec<(String, DType)>>;
}

fn word(t: Option<&TokenWithSpan>) -> Option<String> {
    match t.map(|t| &t.token) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// A name: a plain word (lower-cased) or a quoted identifier (as written).
fn name(t: Option<&TokenWithSpan>, what: &str) -> Result<String> {
    match t.map(|t| &t.token) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Ok(w.value.to_ascii_lowercase()),
        Some(Token::Word(w)) => Ok(w.value.clone()),
        _ => Err(QueryError::Syntax(format!("expected a {what} name"))),
    }
}

/// `(name = value, ..)` from `tokens[i]` on; the options and the index after them.
fn options(tokens: &[&TokenWithSpan], mut i: usize) -> Result<(Vec<(String, String)>, usize)> {
    let bad = || QueryError::Syntax("expected (option = value, ..)".into());
    if !matches!(tokens.get(i).map(|t| &t.token), Some(Token::LParen)) {
        return Err(bad());
    }
    i += 1;
    let mut out = Vec::new();
    loop {
        let key = name(tokens.get(i).copied(), "option")?;
        if !matches!(tokens.get(i + 1).map(|t| &t.token), Some(Token::Eq)) {
            return Err(bad());
        }
        let value = match tokens.get(i + 2).map(|t| &t.token) {
            Some(Token::Number(n, _)) => n.clone(),
            Some(Token::SingleQuotedString(s)) => s.clone(),
            Some(Token::Word(w)) => w.value.to_ascii_lowercase(),
            _ => return Err(bad()),
        };
        out.push((key, value));
        i += 3;
        match tokens.get(i).map(|t| &t.token) {
            Some(Token::Comma) => i += 1,
            Some(Token::RParen) => return Ok((out, i + 1)),
            _ => return Err(bad()),
        }
    }
}

/// The admin command `tokens` (one statement's, whitespace included) spell, if they start like
/// one; an error when they start like one but do not parse.
pub fn parse(tokens: &[TokenWithSpan]) -> Result<Option<AdminCommand>> {
    let solid: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .collect();
    let w = |i: usize| word(solid.get(i).copied());
    let (first, second) = (w(0), w(1));
    let (cmd, end) = match (first.as_deref(), second.as_deref()) {
        (Some("CREATE"), Some("TENANT")) => {
            let name = name(solid.get(2).copied(), "tenant")?;
            let (options, end) = if w(3).as_deref() == Some("WITH") {
                options(&solid, 4)?
            } else {
                (Vec::new(), 3)
            };
            (AdminCommand::CreateTenant { name, options }, end)
        }
        (Some("ALTER"), Some("TENANT")) => {
            let name = name(solid.get(2).copied(), "tenant")?;
            if w(3).as_deref() != Some("SET") {
                return Err(QueryError::Syntax(
                    "expected ALTER TENANT name SET (option = value, ..)".into(),
                ));
            }
            let (options, end) = options(&solid, 4)?;
            (AdminCommand::AlterTenant { name, options }, end)
        }
        (Some("DROP"), Some("TENANT")) => (
            AdminCommand::DropTenant {
                name: name(solid.get(2).copied(), "tenant")?,
            },
            3,
        ),
        (Some("CREATE"), Some("TOKEN")) => {
            let name = name(solid.get(2).copied(), "token")?;
            if w(3).as_deref() != Some("FOR") || w(4).as_deref() != Some("TENANT") {
                return Err(QueryError::Syntax(
                    "expected CREATE TOKEN name FOR TENANT tenant".into(),
                ));
            }
            let tenant = name_at(&solid, 5, "tenant")?;
            (AdminCommand::CreateToken { name, tenant }, 6)
        }
        (Some("DROP"), Some("TOKEN")) => (
            AdminCommand::DropToken {
                name: name(solid.get(2).copied(), "token")?,
            },
            3,
        ),
        (Some("SHOW"), Some("TENANTS")) => (AdminCommand::ShowTenants, 2),
        _ => return Ok(None),
    };
    match solid.get(end).map(|t| &t.token) {
        None | Some(Token::SemiColon) => {}
        Some(other) => {
            return Err(QueryError::Syntax(format!(
                "unexpected {other} after the tenant statement"
            )))
        }
    }
    if solid
        .get(end + 1..)
        .is_some_and(|rest| rest.iter().any(|t| !matches!(t.token, Token::SemiColon)))
    {
        return Err(QueryError::Syntax(
            "a tenant statement runs on its own, not with other statements".into(),
        ));
    }
    Ok(Some(cmd))
}

fn name_at(solid: &[&TokenWithSpan], i: usize, what: &str) -> Result<String> {
    name(solid.get(i).copied(), what)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(sql: &str) -> Result<Option<AdminCommand>> {
        let tokens =
            sqlparser::tokenizer::Tokenizer::new(&sqlparser::dialect::PostgreSqlDialect {}, sql)
                .tokenize_with_location()
                .unwrap();
        parse(&tokens)
    }

    #[test]
    fn tenant_statements_parse() {
        assert_eq!(
            p("create tenant Marketing with (max_running = 4, key_type = 'bigint')").unwrap(),
            Some(AdminCommand::CreateTenant {
                name: "marketing".into(),
                options: vec![
                    ("max_running".into(), "4".into()),
                    ("key_type".into(), "bigint".into())
                ]
            })
        );
        assert_eq!(
            p("CREATE TOKEN ci FOR TENANT m;").unwrap(),
            Some(AdminCommand::CreateToken {
                name: "ci".into(),
                tenant: "m".into()
            })
        );
        assert_eq!(p("SHOW TENANTS").unwrap(), Some(AdminCommand::ShowTenants));
        assert_eq!(
            p("ALTER TENANT m SET (disk_max_mb = 0)").unwrap(),
            Some(AdminCommand::AlterTenant {
                name: "m".into(),
                options: vec![("disk_max_mb".into(), "0".into())]
            })
        );
        assert_eq!(p("CREATE TABLE t (k VARCHAR PRIMARY KEY)").unwrap(), None);
        assert_eq!(p("SELECT 'CREATE TENANT x'").unwrap(), None);
        assert!(p("CREATE TENANT").is_err());
        assert!(p("CREATE TENANT m WITH (x)").is_err());
        assert!(p("DROP TENANT m; SELECT 1").is_err());
        assert!(p("DROP TENANT m junk").is_err());
        assert!(p("CREATE TOKEN t FOR m").is_err());
    }
}
