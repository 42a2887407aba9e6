//! The nodes serving one database (`cluster_nodes`): registration at start, heartbeats while
//! running, the shutdown record, and the list every node reads for the cluster view.

use diesel::RunQueryDsl;
use diesel::sql_types::{BigInt, Text};

use crate::sql::Sql;
use crate::{Store, StoreError};

/// A node as the database last heard of it (times in milliseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node's id.
    pub instance_id: String,
    /// When it started.
    pub startup: i64,
    /// Its last heartbeat.
    pub heartbeat: i64,
    /// When it shut down (0 while it runs).
    pub shutdown: i64,
    /// The configuration generation it served at its last heartbeat.
    pub generation: i64,
}

impl Store {
    /// Registers a node that starts now (a restarted node keeps its id and starts afresh).
    pub fn register_node(&self, instance_id: &str, now: i64, generation: i64) -> Result<(), StoreError> {
        let mut sql =
            Sql::cached("INSERT INTO cluster_nodes (instance_id, startup, heartbeat, shutdown, generation) VALUES (");
        sql.bind_text(instance_id)
            .push(", ")
            .bind_i64(now)
            .push(", ")
            .bind_i64(now)
            .push(", 0, ")
            .bind_i64(generation)
            .push(
                ") ON CONFLICT (instance_id) DO UPDATE SET startup = excluded.startup, \
                 heartbeat = excluded.heartbeat, shutdown = 0, generation = excluded.generation",
            );
        self.write(|conn| Ok((&sql).execute(conn)?)).map(drop)
    }

    /// Records that a running node is alive at `now`, serving `generation`.
    pub fn node_heartbeat(&self, instance_id: &str, now: i64, generation: i64) -> Result<(), StoreError> {
        let mut sql = Sql::cached("UPDATE cluster_nodes SET heartbeat = ");
        sql.bind_i64(now)
            .push(", generation = ")
            .bind_i64(generation)
            .push(" WHERE instance_id = ")
            .bind_text(instance_id);
        self.write(|conn| Ok((&sql).execute(conn)?)).map(drop)
    }

    /// Records a node's shutdown.
    pub fn node_shutdown(&self, instance_id: &str, now: i64) -> Result<(), StoreError> {
        let mut sql = Sql::cached("UPDATE cluster_nodes SET shutdown = ");
        sql.bind_i64(now).push(" WHERE instance_id = ").bind_text(instance_id);
        self.write(|conn| Ok((&sql).execute(conn)?)).map(drop)
    }

    /// Every node the database knows, by id.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let sql = Sql::cached(
            "SELECT instance_id, startup, heartbeat, shutdown, generation FROM cluster_nodes ORDER BY instance_id",
        );
        let rows: Vec<(String, i64, i64, i64, i64)> =
            self.read(|conn| Ok(sql.typed::<(Text, BigInt, BigInt, BigInt, BigInt)>().load(conn)?))?;
        Ok(rows
            .into_iter()
            .map(|(instance_id, startup, heartbeat, shutdown, generation)| NodeRecord {
                instance_id,
                startup,
                heartbeat,
                shutdown,
                generation,
            })
            .collect())
    }
}
