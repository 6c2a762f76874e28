//! Reading observed snapshots and comparing two of them.

use sqlx::any::AnyRow;

use super::{json_diff, JsonChange, SnapshotInfo, Store, StoreError};

const SNAPSHOT_COLUMNS: &str = "o.id, o.provider, o.blob_hash, b.size, o.first_run, o.last_run, \
     o.first_seen_at, o.last_seen_at";

impl Store {
    /// The latest `limit` observed snapshots, of one provider or of all; newest first.
    pub async fn list_snapshots(
        &self,
        provider: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SnapshotInfo>, StoreError> {
        let filter = if provider.is_some() {
            "WHERE o.provider = $2"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM observed_snapshots o \
             JOIN blobs b ON b.hash = o.blob_hash {filter} ORDER BY o.id DESC LIMIT $1"
        );
        let mut query = sqlx::query(&sql).bind(i64::from(limit));
        if let Some(provider) = provider {
            query = query.bind(provider);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_err("listing observed snapshots"))?;
        rows.iter().map(|r| self.snapshot_info(r)).collect()
    }

    /// The body of observed snapshot `id`, or `None` when there is no such snapshot.
    pub async fn snapshot(&self, id: i64) -> Result<Option<serde_json::Value>, StoreError> {
        let row = sqlx::query(
            "SELECT b.body, b.packed, b.size FROM observed_snapshots o \
             JOIN blobs b ON b.hash = o.blob_hash \
             WHERE o.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_err("reading an observed snapshot"))?;
        row.map(|r| self.json(&self.body(&r)?)).transpose()
    }

    /// What changed from observed snapshot `a` to `b` (see [`json_diff`]).
    pub async fn diff_snapshots(&self, a: i64, b: i64) -> Result<Vec<JsonChange>, StoreError> {
        let body = |id| async move {
            self.snapshot(id).await?.ok_or(StoreError::NotFound {
                what: "observed snapshot",
                id,
            })
        };
        let before = body(a).await?;
        let after = body(b).await?;
        Ok(json_diff(&before, &after))
    }

    fn snapshot_info(&self, r: &AnyRow) -> Result<SnapshotInfo, StoreError> {
        Ok(SnapshotInfo {
            id: self.get(r, "id")?,
            provider: self.get(r, "provider")?,
            blob_hash: self.get(r, "blob_hash")?,
            size: self.get(r, "size")?,
            first_run: self.get(r, "first_run")?,
            last_run: self.get(r, "last_run")?,
            first_seen_at: self.get(r, "first_seen_at")?,
            last_seen_at: self.get(r, "last_seen_at")?,
        })
    }
}
