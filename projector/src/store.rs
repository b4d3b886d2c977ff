//! The CQL adapter: one session per process.

use std::sync::Arc;

use hookline_config::CqlOptions;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

#[derive(Debug, thiserror::Error)]
pub enum CqlError {
    #[error("connecting to CQL nodes {nodes:?}: {source}")]
    Connect {
        nodes: Vec<String>,
        #[source]
        source: Box<scylla::errors::NewSessionError>,
    },
    #[error("CQL statement `{statement}`: {source}")]
    Execute {
        statement: String,
        #[source]
        source: Box<scylla::errors::ExecutionError>,
    },
    #[error("preparing `{statement}`: {source}")]
    Prepare {
        statement: String,
        #[source]
        source: Box<scylla::errors::PrepareError>,
    },
    #[error("reading rows of `{statement}`: {reason}")]
    Rows { statement: String, reason: String },
}

/// A connected session and the keyspace it works in.
#[derive(Clone)]
pub struct Store {
    pub session: Arc<Session>,
    pub keyspace: String,
}

impl Store {
    pub async fn connect(opts: &CqlOptions) -> Result<Self, CqlError> {
        let session = SessionBuilder::new()
            .known_nodes(&opts.nodes)
            .build()
            .await
            .map_err(|e| CqlError::Connect { nodes: opts.nodes.clone(), source: Box::new(e) })?;
        Ok(Self { session: Arc::new(session), keyspace: opts.keyspace.clone() })
    }

    /// Runs one unprepared statement (DDL, admin).
    pub async fn execute_ddl(&self, statement: &str) -> Result<(), CqlError> {
        self.session
            .query_unpaged(statement, ())
            .await
            .map(|_| ())
            .map_err(|e| CqlError::Execute { statement: statement.to_string(), source: Box::new(e) })
    }

    /// The server's release version (readiness check).
    pub async fn release_version(&self) -> Result<String, CqlError> {
        const Q: &str = "SELECT release_version FROM system.local";
        let result = self
            .session
            .query_unpaged(Q, ())
            .await
            .map_err(|e| CqlError::Execute { statement: Q.into(), source: Box::new(e) })?;
        let rows =
            result.into_rows_result().map_err(|e| CqlError::Rows { statement: Q.into(), reason: e.to_string() })?;
        let (v,): (String,) =
            rows.single_row().map_err(|e| CqlError::Rows { statement: Q.into(), reason: e.to_string() })?;
        Ok(v)
    }
}
