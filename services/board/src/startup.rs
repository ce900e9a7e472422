use opd_shared::events::BOARD_DURABLE;
use opd_shared::infra::Infra;
use opd_shared::service::{Extras, Service, Subscription};
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::projection::projector;
use crate::routes;
use crate::view::{Board, watcher};

static MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/board");

/// The projection's durable consumer, shared by every replica of this service.
pub const PROJECTION_CONSUMER: &str = BOARD_DURABLE.name;

pub static SERVICE: Service = Service {
    name: "board",
    port: 9094,
    title: "Board Service",
    version: env!("CARGO_PKG_VERSION"),
    migrations: &MIGRATIONS,
    home: "/opd/board/",
    routes: routes::router,
    consumers: &[Subscription::custom(&BOARD_DURABLE, projector::CONSUMER)],
    locate: None,
    extras: Some(extras),
};

/// The instance's view of the board, handed to the routes, and its watcher.
fn extras(infra: &Infra, shutdown: CancellationToken) -> anyhow::Result<Extras> {
    let board = Board::new(infra.settings.board.clone(), shutdown.clone());
    let watcher = watcher::run(board.clone(), infra.jetstream.clone(), shutdown);
    Ok(Extras {
        layer: Box::new(move |router| router.layer(axum::Extension(board))),
        tasks: vec![("board watcher", Box::pin(watcher))],
    })
}
