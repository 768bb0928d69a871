//! The operator endpoints (`<prefix>sop.admin.<name>`), in the query service: register a team,
//! read dead letters, list and republish parked outbox messages. They carry no actor and no
//! signature — a team's first registration has no system to sign it — so who may ask is NATS's
//! decision: `deploy/nats/roles.conf` lets only the `operator` user publish here.

use std::collections::HashMap;

use async_nats::service::Service;
use futures::StreamExt;
use sea_orm::DatabaseConnection;

use super::queries::{answer_room, body, parse, reply};
use super::streams::TeamStreams;
use crate::application::command::Signing;
use crate::application::{Rejection, admin};
use crate::wire::admin::{
    AdminName, DeadLetterRequest, IssueToken, ListTokens, ParkedRequest, RepublishRequest,
    RevokeToken, TeamSpec,
};
use crate::wire::subjects::Subjects;

/// Requests one endpoint answers at once: operators ask rarely.
const CONCURRENCY: usize = 4;

async fn respond(
    db: &DatabaseConnection,
    team_streams: &TeamStreams,
    signing: Signing,
    name: AdminName,
    bytes: &[u8],
    room: usize,
) -> Result<Vec<u8>, Rejection> {
    let n = name.as_str();
    match name {
        AdminName::ApplyTeam => {
            let spec: TeamSpec = parse(bytes)?;
            let applied = admin::apply_team(db, &spec, signing).await;
            if let Ok(team) = &applied {
                // Its agents may make consumers on it before its first event.
                team_streams.ensure(&team.name).await.map_err(|e| {
                    Rejection::new(
                        crate::domain::error::ErrorCode::Internal,
                        format!(
                            "team {} is registered, but its events stream could not be created \
                             ({e}): apply it again",
                            team.name
                        ),
                    )
                })?;
            }
            body(n, applied, room)
        }
        AdminName::DeadLetters => {
            let q: DeadLetterRequest = parse(bytes)?;
            body(n, admin::dead_letters(db, q.limit, room).await, room)
        }
        AdminName::ParkedOutbox => {
            let _: ParkedRequest = parse(bytes)?;
            body(n, admin::parked(db).await, room)
        }
        AdminName::RepublishOutbox => {
            let q: RepublishRequest = parse(bytes)?;
            body(n, admin::republish(db, &q.seqs, q.all).await, room)
        }
        AdminName::IssueToken => {
            let q: IssueToken = parse(bytes)?;
            body(
                n,
                admin::issue_token(db, &q, chrono::Utc::now()).await,
                room,
            )
        }
        AdminName::RevokeToken => {
            let q: RevokeToken = parse(bytes)?;
            body(
                n,
                admin::revoke_token(db, q.token_id, chrono::Utc::now()).await,
                room,
            )
        }
        AdminName::ListTokens => {
            let q: ListTokens = parse(bytes)?;
            body(n, admin::tokens(db, q.system_id).await, room)
        }
    }
}

/// Adds one endpoint per operator request to `service`, each answered by its own task.
pub async fn start(
    service: &Service,
    nats: &async_nats::Client,
    db: DatabaseConnection,
    subjects: &Subjects,
    signing: Signing,
    team_streams: TeamStreams,
) -> Result<(), async_nats::Error> {
    let group = service.group(subjects.admin_group());
    for name in AdminName::ALL.iter().copied() {
        let metadata = HashMap::from([
            ("admin".to_owned(), name.as_str().to_owned()),
            (
                "schema".to_owned(),
                super::queries::contract_pointer(&format!("sop.admin.{}", name.as_str())),
            ),
        ]);
        let endpoint = group
            .endpoint_builder()
            .name(format!("admin_{}", name.as_str().replace('.', "_")))
            .metadata(metadata)
            .add(name.as_str())
            .await?;
        let db = db.clone();
        let nats = nats.clone();
        let team_streams = team_streams.clone();
        tokio::spawn(endpoint.for_each_concurrent(CONCURRENCY, move |request| {
            let db = db.clone();
            let room = answer_room(nats.max_payload());
            let nats = nats.clone();
            let team_streams = team_streams.clone();
            async move {
                let result = respond(
                    &db,
                    &team_streams,
                    signing,
                    name,
                    &request.message.payload,
                    room,
                )
                .await;
                reply(request, &nats, name.as_str(), result).await;
            }
        }));
    }
    Ok(())
}
