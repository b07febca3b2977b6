//! Operator commands for a client's schedule: `caller schedule …` and `caller campaign …`.
//!
//! They call the same `tenancy::schedule` and `tenancy::follow_ups` functions as the
//! management API, in a transaction for the client, with the operator as the audit actor.

use std::collections::HashMap;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::tenant::{operator, resolve, service_error};
use crate::cli::{CampaignCommand, ScheduleCommand};
use crate::settings::Settings;
use crate::store::Store;
use crate::store::follow_up_campaigns::Campaign;
use crate::store::scheduled_jobs::Job;
use crate::tenancy::follow_ups;
use crate::tenancy::schedule::{self, JobQuery};

pub(super) async fn schedule_command(
    settings: &Settings,
    command: ScheduleCommand,
) -> anyhow::Result<()> {
    let store = Store::connect(&settings.database).await?;
    let actor = operator();
    match command {
        ScheduleCommand::List {
            client,
            phone,
            crm_contact_id,
            campaign,
            state,
            limit,
        } => {
            let client = resolve(&store, &client).await?;
            let query = JobQuery {
                phone,
                crm_contact_id,
                campaign_id: campaign,
                call_id: None,
                state,
                limit: Some(limit),
            };
            let mut transaction = store.begin_tenant(client.id).await?;
            let jobs = schedule::list(&mut transaction, client.id, &query)
                .await
                .map_err(service_error)?;
            let campaigns = follow_ups::list(&mut transaction, client.id)
                .await
                .map_err(service_error)?;
            transaction.rollback().await?;
            if jobs.is_empty() {
                println!("no scheduled attempts");
                return Ok(());
            }
            print_table(&job_rows(&jobs, &campaigns));
        }
        ScheduleCommand::Cancel {
            client,
            job,
            reason,
        } => {
            let client = resolve(&store, &client).await?;
            let id = job_id(&job)?;
            let mut transaction = store.begin_tenant(client.id).await?;
            let cancelled =
                schedule::cancel(&mut transaction, &actor, client.id, id, reason.as_deref())
                    .await
                    .map_err(service_error)
                    .with_context(|| format!("cancel attempt {job}"))?;
            transaction.commit().await?;
            println!(
                "cancelled attempt {} of client {} ({})",
                cancelled.id,
                client.slug,
                cancelled.cancel_reason.as_deref().unwrap_or("-")
            );
        }
        ScheduleCommand::CancelLead {
            client,
            phone,
            crm_contact_id,
            reason,
        } => {
            let client = resolve(&store, &client).await?;
            let mut transaction = store.begin_tenant(client.id).await?;
            let cancelled = schedule::cancel_for_lead(
                &mut transaction,
                &actor,
                client.id,
                phone.as_deref(),
                crm_contact_id.as_deref(),
                reason.as_deref(),
            )
            .await
            .map_err(service_error)
            .context("cancel the lead's attempts")?;
            transaction.commit().await?;
            println!(
                "cancelled {cancelled} scheduled attempts of the lead (client {})",
                client.slug
            );
        }
        ScheduleCommand::Reschedule { client, job, at } => {
            let client = resolve(&store, &client).await?;
            let id = job_id(&job)?;
            let mut transaction = store.begin_tenant(client.id).await?;
            let moved =
                schedule::reschedule(&mut transaction, &actor, client.id, id, at, Utc::now())
                    .await
                    .map_err(service_error)
                    .with_context(|| format!("reschedule attempt {job}"))?;
            transaction.commit().await?;
            println!(
                "attempt {} of client {} is due {} ({} on the lead's clock)",
                moved.id,
                client.slug,
                utc(moved.due_at),
                lead_clock(&moved)
            );
        }
    }
    Ok(())
}

pub(super) async fn campaign_command(
    settings: &Settings,
    command: CampaignCommand,
) -> anyhow::Result<()> {
    let store = Store::connect(&settings.database).await?;
    let (client, campaign, paused) = match command {
        CampaignCommand::List { client } => {
            let client = resolve(&store, &client).await?;
            let mut transaction = store.begin_tenant(client.id).await?;
            let campaigns = follow_ups::list(&mut transaction, client.id)
                .await
                .map_err(service_error)?;
            transaction.rollback().await?;
            if campaigns.is_empty() {
                println!("no follow-up campaigns");
                return Ok(());
            }
            print_table(&campaign_rows(&campaigns));
            return Ok(());
        }
        CampaignCommand::Pause { client, campaign } => (client, campaign, true),
        CampaignCommand::Resume { client, campaign } => (client, campaign, false),
    };
    let client = resolve(&store, &client).await?;
    let mut transaction = store.begin_tenant(client.id).await?;
    let change =
        follow_ups::set_paused(&mut transaction, &operator(), client.id, &campaign, paused)
            .await
            .map_err(service_error)
            .with_context(|| {
                format!(
                    "{} campaign `{campaign}`",
                    if paused { "pause" } else { "resume" }
                )
            })?;
    transaction.commit().await?;
    println!(
        "campaign `{}` of client {} is {}: {} attempts {}",
        change.campaign.name,
        client.slug,
        change.campaign.state,
        change.jobs_moved,
        if paused { "paused" } else { "pending again" }
    );
    Ok(())
}

fn job_id(text: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| anyhow::anyhow!("`{text}` is not an attempt id (a UUID)"))
}

/// The list as table rows, a header first.
fn job_rows(jobs: &[Job], campaigns: &[Campaign]) -> Vec<Vec<String>> {
    let names: HashMap<Uuid, &str> = campaigns
        .iter()
        .map(|campaign| (campaign.id, campaign.name.as_str()))
        .collect();
    let header = [
        "ID",
        "STATE",
        "KIND",
        "DUE (UTC)",
        "DUE (LEAD)",
        "PHONE",
        "WHICH",
        "REASON",
    ];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for job in jobs {
        let which = match (job.campaign_id, job.stage_index) {
            (Some(campaign), Some(stage)) => format!(
                "{} stage {}",
                names.get(&campaign).copied().unwrap_or("?"),
                stage + 1
            ),
            _ => format!("attempt {}", job.attempt_number),
        };
        let reason = match (&job.state[..], &job.cancel_reason) {
            ("cancelled", Some(why)) => format!("{} (cancelled: {why})", job.reason),
            _ => job.reason.clone(),
        };
        rows.push(vec![
            job.id.to_string(),
            job.state.clone(),
            job.kind.clone(),
            utc(job.due_at),
            lead_clock(job),
            job.to_number.clone(),
            which,
            reason,
        ]);
    }
    rows
}

fn campaign_rows(campaigns: &[Campaign]) -> Vec<Vec<String>> {
    let header = ["ID", "NAME", "STATE", "STAGES", "TRIGGERS"];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for campaign in campaigns {
        let stages: Vec<String> = campaign
            .stages
            .iter()
            .map(|stage| format!("day {} {}", stage.day_offset, stage.time))
            .collect();
        rows.push(vec![
            campaign.id.to_string(),
            campaign.name.clone(),
            campaign.state.clone(),
            stages.join(", "),
            campaign.triggers.len().to_string(),
        ]);
    }
    rows
}

fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

/// The due time on the lead's clock; `?` marks a zone that was the client's fallback.
fn lead_clock(job: &Job) -> String {
    let Ok(tz) = job.timezone.parse::<chrono_tz::Tz>() else {
        return format!("? ({})", job.timezone);
    };
    let guessed = if job.timezone_fallback { " ?" } else { "" };
    format!(
        "{} {}{guessed}",
        job.due_at.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        tz.name()
    )
}

/// Prints rows as columns padded to their widest cell (the last column is not padded).
fn print_table(rows: &[Vec<String>]) {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[column]));
            }
        }
        println!("{}", line.trim_end());
    }
}
