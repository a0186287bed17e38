//! The benchmark's own databases: SQLite files in a new temporary directory, or two fresh
//! PostgreSQL databases, dropped again when the run ends.

use access_token::SecretString;
use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database};
use std::path::PathBuf;
use uuid::Uuid;

/// The two services' databases.
pub struct Databases {
    pub auth_url: String,
    pub task_url: String,
    pub description: String,
    pub shared_secret: SecretString,
    cleanup: Cleanup,
}

enum Cleanup {
    Directory(PathBuf),
    Postgres {
        admin_url: String,
        names: Vec<String>,
    },
}

impl Databases {
    /// SQLite files in a new temporary directory, or two fresh PostgreSQL databases beside
    /// the one `postgres_url` names.
    pub async fn create(postgres_url: Option<&str>) -> anyhow::Result<Self> {
        let shared_secret = SecretString::from(random_hex(32)?);
        let Some(base) = postgres_url else {
            let dir = std::env::temp_dir().join(format!("load-bench-{}", Uuid::now_v7().simple()));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let url = |file: &str| format!("sqlite://{}", dir.join(file).display());
            return Ok(Self {
                auth_url: url("auth.db"),
                task_url: url("tasks.db"),
                description: format!("SQLite files in {}", dir.display()),
                shared_secret,
                cleanup: Cleanup::Directory(dir),
            });
        };
        if !(base.starts_with("postgres://") || base.starts_with("postgresql://")) {
            bail!("--database-url must be postgres://user@host:port/database");
        }
        let (server, _) = base
            .rsplit_once('/')
            .context("--database-url needs a database path, e.g. /postgres")?;
        let suffix = Uuid::now_v7().simple().to_string();
        let names = vec![
            format!("loadbench_auth_{suffix}"),
            format!("loadbench_task_{suffix}"),
        ];
        let admin = Database::connect(base).await?;
        for name in &names {
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await?;
        }
        admin.close().await?;
        Ok(Self {
            auth_url: format!("{server}/{}", names[0]),
            task_url: format!("{server}/{}", names[1]),
            description: format!(
                "PostgreSQL: {} and {} at {}",
                names[0],
                names[1],
                service_db::redact_url(server)
            ),
            shared_secret,
            cleanup: Cleanup::Postgres {
                admin_url: base.to_owned(),
                names,
            },
        })
    }

    pub async fn drop_all(self) -> anyhow::Result<()> {
        match self.cleanup {
            Cleanup::Directory(dir) => std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove {}", dir.display())),
            Cleanup::Postgres { admin_url, names } => {
                let admin = Database::connect(&admin_url).await?;
                for name in &names {
                    admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await?;
                }
                admin.close().await?;
                Ok(())
            }
        }
    }
}

/// `bytes` random bytes, hex.
fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
