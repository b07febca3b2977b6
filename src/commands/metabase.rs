//! `caller metabase reader` and `caller metabase provision`.

use anyhow::Context;

use crate::cli::{MetabaseCommand, MetabaseProvisionArgs};
use crate::metabase::api::MetabaseClient;
use crate::metabase::provision::{self, Change, DatabaseConnection};
use crate::metabase::{Definitions, reader};
use crate::secret::redact_url;
use crate::settings::Settings;

/// Runs one `caller metabase` subcommand.
pub(super) async fn metabase_command(
    settings: &Settings,
    command: MetabaseCommand,
) -> anyhow::Result<()> {
    match command {
        MetabaseCommand::Reader { role, password } => {
            let url = settings
                .database
                .owner_url
                .clone()
                .unwrap_or_else(|| settings.database.url.clone());
            let mut owner = <sqlx::PgConnection as sqlx::Connection>::connect(url.expose())
                .await
                .with_context(|| {
                    format!("connect as the owner to `{}`", redact_url(url.expose()))
                })?;
            let change = reader::ensure_reader(&mut owner, &role, &password).await?;
            let verb = match change {
                reader::RoleChange::Created => "created",
                reader::RoleChange::Updated => "updated",
            };
            println!("{verb} role `{role}`: member of caller_analytics_reader, reads every tenant");
        }
        MetabaseCommand::Provision(args) => provision_command(args).await?,
    }
    Ok(())
}

async fn provision_command(args: MetabaseProvisionArgs) -> anyhow::Result<()> {
    let definitions = Definitions::load(&args.dir)?;
    let mut client = MetabaseClient::new(&args.url);
    client.health().await.context("check metabase health")?;
    client.login(&args.user, &args.password).await?;
    let connection = DatabaseConnection {
        host: args.db_host,
        port: args.db_port,
        dbname: args.db_name,
        user: args.db_user,
        password: args.db_password,
        ssl: args.db_ssl,
        update_password: args.update_password,
    };
    let outcomes = provision::provision(&client, &definitions, &connection).await?;
    for outcome in outcomes {
        let change = match outcome.change {
            Change::Created => "created  ",
            Change::Updated => "updated  ",
            Change::Unchanged => "unchanged",
        };
        println!(
            "{change} {} {} `{}`",
            outcome.kind, outcome.id, outcome.name
        );
    }
    Ok(())
}
