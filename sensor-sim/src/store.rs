//! The hub's database: SQLite in WAL mode in the data directory, one file `hub.sqlite3`.
//!
//! Readings are unique by sensor and sequence number and alerts by `(sensor_id, alert_id)`, so a
//! reading or alert sent twice is stored once (`INSERT OR IGNORE`). Timestamps are integers in
//! microseconds since the Unix epoch: `device_ts` by the sensor's clock, `corrected_ts` the
//! hub's estimate of the true time, `received_ts` by the hub's clock.
//!
//! Commands for sensors live in the `commands` table from the moment they are queued (by the
//! hub's API or by `sensor-sim command`, even while no hub runs) until a sensor acknowledges
//! them (`acked_ts`), so a command held for a sleeping sensor survives a hub restart.
//!
//! Schema versions: 1 had readings and alerts; 2 adds `commands`; 3 keys readings by
//! `(seq, sensor_id)` instead of `(sensor_id, seq)`. Older databases are upgraded in place when
//! the hub opens them.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use thiserror::Error;

use crate::protocol::Command;

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "hub.sqlite3";

// The readings' unique key is `(seq, sensor_id)`, not `(sensor_id, seq)` as in schemas 1 and 2.
// Sensors count their readings from 0 at about the same pace, so the rows of one commit have
// nearly the same `seq` and land on a few pages at the right edge of the index; keyed by sensor
// first, the rows of 10,000 sensors landed on thousands of pages, and each commit rewrote them all
// into the WAL. Same dedup, 3.4x less index work per row (about 3.7 to 1.1 µs in a 1M-row, 8,000-
// sensor insert pattern); the price is that a query for one sensor scans the table.
// `cache_size = -65536`: a 64 MiB page cache (default 2 MiB), so a transaction does not spill
// dirty pages mid-way. `wal_autocheckpoint = 10000` (default 1000 pages): a 40 MB WAL lets one
// checkpoint copy a page that several commits rewrote. `WITHOUT ROWID` (one B-tree instead of
// table plus index) was tried and is slower: wider rows spread the inserts over more pages.

/// The schema this build writes, kept in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 3;

/// The readings table, named `{name}` (a schema-2 table is rebuilt through another name).
fn readings_table(name: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {name} (
             sensor_id INTEGER NOT NULL,
             seq INTEGER NOT NULL,
             device_ts INTEGER NOT NULL,
             corrected_ts INTEGER NOT NULL,
             received_ts INTEGER NOT NULL,
             value REAL NOT NULL,
             UNIQUE (seq, sensor_id)
         );"
    )
}

/// A stored reading.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ReadingRow {
    /// The sensor.
    pub sensor_id: u32,
    /// The sensor's sequence number.
    pub seq: u64,
    /// When taken, by the sensor's clock (µs since the epoch).
    pub device_ts: i64,
    /// When taken, corrected to the hub's clock (µs since the epoch).
    pub corrected_ts: i64,
    /// When the hub received it (µs since the epoch).
    pub received_ts: i64,
    /// The value.
    pub value: f32,
}

/// A stored alert.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AlertRow {
    /// The sensor.
    pub sensor_id: u32,
    /// The alert's id, unique per sensor.
    pub alert_id: u64,
    /// The sequence number of the reading that raised it.
    pub seq: u64,
    /// When raised, by the sensor's clock (µs since the epoch).
    pub device_ts: i64,
    /// When raised, corrected to the hub's clock (µs since the epoch).
    pub corrected_ts: i64,
    /// When the hub received it (µs since the epoch).
    pub received_ts: i64,
    /// The reading's value.
    pub value: f32,
    /// The threshold it crossed.
    pub threshold: f32,
}

/// What one transaction stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Written {
    /// Per sensor: readings newly stored, and readings already there (duplicates not stored).
    pub readings: HashMap<u32, (u64, u64)>,
    /// Alerts newly stored.
    pub alerts_inserted: u64,
}

/// The database could not be opened or used.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The data directory cannot be created or written.
    #[error("cannot write to the data directory {}: {source}; fix its permissions or choose another --data-dir", dir.display())]
    NotWritable {
        /// The directory.
        dir: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// There is no database in the directory.
    #[error("no database in {}: point --data-dir at the directory the hub used", dir.display())]
    Missing {
        /// The directory.
        dir: PathBuf,
    },
    /// The database was written by a newer sensor-sim.
    #[error("{} has schema version {found}, but this sensor-sim knows only up to {SCHEMA_VERSION}: use a newer sensor-sim, or another --data-dir", path.display())]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// SQLite reported an error.
    #[error("database {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
}

/// A command in the database.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StoredCommand {
    /// Its id, unique in this database (and so across hub restarts).
    pub command_id: u64,
    /// The sensor it is for.
    pub sensor_id: u32,
    /// What to change.
    pub command: Command,
    /// When it was queued (µs since the epoch).
    pub queued_ts: i64,
    /// When the sensor acknowledged it (µs since the epoch); `None` while pending.
    pub acked_ts: Option<i64>,
}

/// The hub's database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database in `dir` for writing: WAL mode, `synchronous =
    /// FULL` (a committed transaction survives a crash of the process and of the machine).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let not_writable = |source| StoreError::NotWritable {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(not_writable)?;
        let probe = dir.join(".sensor-sim-write-test");
        std::fs::write(&probe, b"ok").map_err(not_writable)?;
        let _ = std::fs::remove_file(&probe);
        let path = dir.join(DB_FILE);
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        let store = Self {
            conn,
            path: path.clone(),
        };
        let found = store.check_version()?;
        store
            .conn
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA cache_size = -65536;
                 PRAGMA wal_autocheckpoint = 10000;",
            )
            .map_err(sql)?;
        if (1..3).contains(&found) {
            // Schemas 1 and 2 keyed readings by sensor first: rebuild the table with the new key.
            store
                .conn
                .execute_batch(&format!(
                    "BEGIN;
                     {}
                     INSERT INTO readings_v3
                         SELECT sensor_id, seq, device_ts, corrected_ts, received_ts, value
                         FROM readings;
                     DROP TABLE readings;
                     ALTER TABLE readings_v3 RENAME TO readings;
                     COMMIT;",
                    readings_table("readings_v3")
                ))
                .map_err(sql)?;
        }
        store
            .conn
            .execute_batch(&format!(
                "{}
                 CREATE TABLE IF NOT EXISTS alerts (
                     sensor_id INTEGER NOT NULL,
                     alert_id INTEGER NOT NULL,
                     seq INTEGER NOT NULL,
                     device_ts INTEGER NOT NULL,
                     corrected_ts INTEGER NOT NULL,
                     received_ts INTEGER NOT NULL,
                     value REAL NOT NULL,
                     threshold REAL NOT NULL,
                     UNIQUE (sensor_id, alert_id)
                 );
                 CREATE TABLE IF NOT EXISTS commands (
                     id INTEGER PRIMARY KEY AUTOINCREMENT,
                     sensor_id INTEGER NOT NULL,
                     command TEXT NOT NULL,
                     queued_ts INTEGER NOT NULL,
                     acked_ts INTEGER
                 );
                 CREATE INDEX IF NOT EXISTS commands_pending ON commands (id)
                     WHERE acked_ts IS NULL;",
                readings_table("readings")
            ))
            .map_err(sql)?;
        if found != SCHEMA_VERSION {
            store
                .conn
                .pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(sql)?;
        }
        Ok(store)
    }

    /// Opens the database in `dir` for writing, refusing to create one: for tools that add to
    /// a hub's database (`sensor-sim command`), where a new empty database would mean a typo.
    pub fn open_existing(dir: &Path) -> Result<Self, StoreError> {
        if !dir.join(DB_FILE).exists() {
            return Err(StoreError::Missing {
                dir: dir.to_path_buf(),
            });
        }
        Self::open(dir)
    }

    /// Opens an existing database read-only (for queries and summaries while a hub writes).
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::Missing {
                dir: dir.to_path_buf(),
            });
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
            |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            },
        )?;
        let store = Self { conn, path };
        store.check_version()?;
        store.sql(store.conn.busy_timeout(std::time::Duration::from_secs(5)))?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores readings and alerts in one transaction. Duplicates are counted, not stored.
    pub fn write(
        &mut self,
        readings: &[ReadingRow],
        alerts: &[AlertRow],
    ) -> Result<Written, StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        let mut written = Written::default();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO readings
                     (sensor_id, seq, device_ts, corrected_ts, received_ts, value)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sql)?;
            for r in readings {
                let n = insert
                    .execute(params![
                        r.sensor_id,
                        r.seq as i64,
                        r.device_ts,
                        r.corrected_ts,
                        r.received_ts,
                        f64::from(r.value)
                    ])
                    .map_err(sql)?;
                let entry = written.readings.entry(r.sensor_id).or_default();
                if n == 1 {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO alerts
                     (sensor_id, alert_id, seq, device_ts, corrected_ts, received_ts, value, threshold)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(sql)?;
            for a in alerts {
                written.alerts_inserted += insert
                    .execute(params![
                        a.sensor_id,
                        a.alert_id as i64,
                        a.seq as i64,
                        a.device_ts,
                        a.corrected_ts,
                        a.received_ts,
                        f64::from(a.value),
                        f64::from(a.threshold)
                    ])
                    .map_err(sql)? as u64;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(written)
    }

    /// Queues a command for a sensor; the hub picks it up within a fraction of a second (or
    /// when it next starts) and holds it until the sensor acknowledges it. Returns its id.
    pub fn queue_command(
        &self,
        sensor_id: u32,
        command: Command,
        queued_ts: i64,
    ) -> Result<u64, StoreError> {
        let text = command_text(command);
        self.sql(self.conn.execute(
            "INSERT INTO commands (sensor_id, command, queued_ts) VALUES (?1, ?2, ?3)",
            params![sensor_id, text, queued_ts],
        ))?;
        Ok(self.conn.last_insert_rowid() as u64)
    }

    /// Commands not acknowledged yet with an id above `after`, oldest first.
    pub fn pending_commands(&self, after: u64) -> Result<Vec<StoredCommand>, StoreError> {
        self.commands_where("acked_ts IS NULL AND id > ?1", after as i64)
    }

    /// Every command for `sensor` (or for all sensors), oldest first.
    pub fn commands(&self, sensor: Option<u32>) -> Result<Vec<StoredCommand>, StoreError> {
        match sensor {
            Some(id) => self.commands_where("sensor_id = ?1", i64::from(id)),
            None => self.commands_where("?1 IS NOT NULL", 0),
        }
    }

    /// One command, if it exists.
    pub fn command(&self, command_id: u64) -> Result<Option<StoredCommand>, StoreError> {
        Ok(self
            .commands_where("id = ?1", command_id as i64)?
            .into_iter()
            .next())
    }

    /// Records that sensors acknowledged these commands: `(command_id, acked_ts)`.
    pub fn acknowledge_commands(&mut self, acks: &[(u64, i64)]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut update = tx
                .prepare_cached(
                    "UPDATE commands SET acked_ts = ?2 WHERE id = ?1 AND acked_ts IS NULL",
                )
                .map_err(sql)?;
            for &(id, at) in acks {
                update.execute(params![id as i64, at]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// The largest sensor id stored, if any (to pick fresh ids for a new run).
    pub fn max_sensor_id(&self) -> Result<Option<u32>, StoreError> {
        let max: Option<i64> = self
            .sql(
                self.conn
                    .query_row(
                        "SELECT MAX(m) FROM (SELECT MAX(sensor_id) AS m FROM readings
                     UNION ALL SELECT MAX(sensor_id) FROM alerts)",
                        [],
                        |row| row.get(0),
                    )
                    .optional(),
            )?
            .flatten();
        Ok(max.map(|m| m as u32))
    }

    /// Calls `f` for each reading of sensors in `first..=last`, in no particular order.
    pub fn for_each_reading(
        &self,
        first: u32,
        last: u32,
        mut f: impl FnMut(ReadingRow),
    ) -> Result<(), StoreError> {
        let mut stmt = self.sql(self.conn.prepare(
            "SELECT sensor_id, seq, device_ts, corrected_ts, received_ts, value
             FROM readings WHERE sensor_id BETWEEN ?1 AND ?2",
        ))?;
        let rows = self.sql(stmt.query_map(params![first, last], reading_from_row))?;
        for row in rows {
            f(self.sql(row)?);
        }
        Ok(())
    }

    /// Per `(sensor_id, alert_id)` of sensors in `first..=last`: how many times it is stored.
    pub fn alert_counts(
        &self,
        first: u32,
        last: u32,
    ) -> Result<HashMap<(u32, u64), u64>, StoreError> {
        let mut stmt = self.sql(self.conn.prepare(
            "SELECT sensor_id, alert_id, COUNT(*) FROM alerts
             WHERE sensor_id BETWEEN ?1 AND ?2 GROUP BY sensor_id, alert_id",
        ))?;
        let rows = self.sql(stmt.query_map(params![first, last], |row| {
            Ok((
                (row.get::<_, u32>(0)?, row.get::<_, i64>(1)? as u64),
                row.get::<_, i64>(2)? as u64,
            ))
        }))?;
        let mut counts = HashMap::new();
        for row in rows {
            let (key, n) = self.sql(row)?;
            counts.insert(key, n);
        }
        Ok(counts)
    }

    /// Rows stored in total: `(readings, alerts)`.
    pub fn totals(&self) -> Result<(u64, u64), StoreError> {
        let count = |table: &str| -> Result<u64, StoreError> {
            let n: i64 = self.sql(self.conn.query_row(
                &format!("SELECT COUNT(*) FROM {table}"),
                [],
                |row| row.get(0),
            ))?;
            Ok(n as u64)
        };
        Ok((count("readings")?, count("alerts")?))
    }

    /// Writes readings (or alerts) matching the filter to `out` as CSV or JSON lines, ordered by
    /// sensor and sequence. `since_us` filters on the corrected timestamp. Returns the row count.
    pub fn export(&self, query: &ExportQuery, out: &mut dyn Write) -> Result<u64, ExportError> {
        let (table, columns) = if query.alerts {
            (
                "alerts",
                "sensor_id, alert_id, seq, device_ts, corrected_ts, received_ts, value, threshold",
            )
        } else {
            (
                "readings",
                "sensor_id, seq, device_ts, corrected_ts, received_ts, value",
            )
        };
        let order = if query.alerts { "alert_id" } else { "seq" };
        let sql_text = format!(
            "SELECT {columns} FROM {table}
             WHERE (?1 IS NULL OR sensor_id = ?1) AND (?2 IS NULL OR corrected_ts >= ?2)
             ORDER BY sensor_id, {order}"
        );
        let mut stmt = self.sql(self.conn.prepare(&sql_text))?;
        let mut rows = self.sql(stmt.query(params![query.sensor, query.since_us]))?;
        let mut n = 0u64;
        if query.format == ExportFormat::Csv {
            writeln!(out, "{}", columns.replace(' ', ""))?;
        }
        while let Some(row) = self.sql(rows.next())? {
            let line = if query.alerts {
                let a = AlertRow {
                    sensor_id: self.sql(row.get(0))?,
                    alert_id: self.sql(row.get::<_, i64>(1))? as u64,
                    seq: self.sql(row.get::<_, i64>(2))? as u64,
                    device_ts: self.sql(row.get(3))?,
                    corrected_ts: self.sql(row.get(4))?,
                    received_ts: self.sql(row.get(5))?,
                    value: self.sql(row.get::<_, f64>(6))? as f32,
                    threshold: self.sql(row.get::<_, f64>(7))? as f32,
                };
                match query.format {
                    ExportFormat::Csv => format!(
                        "{},{},{},{},{},{},{},{}",
                        a.sensor_id,
                        a.alert_id,
                        a.seq,
                        a.device_ts,
                        a.corrected_ts,
                        a.received_ts,
                        a.value,
                        a.threshold
                    ),
                    ExportFormat::Jsonl => serde_json::to_string(&a)?,
                }
            } else {
                let r = self.sql(reading_from_row(row))?;
                match query.format {
                    ExportFormat::Csv => format!(
                        "{},{},{},{},{},{}",
                        r.sensor_id, r.seq, r.device_ts, r.corrected_ts, r.received_ts, r.value
                    ),
                    ExportFormat::Jsonl => serde_json::to_string(&r)?,
                }
            };
            writeln!(out, "{line}")?;
            n += 1;
        }
        out.flush()?;
        Ok(n)
    }

    fn commands_where(&self, filter: &str, arg: i64) -> Result<Vec<StoredCommand>, StoreError> {
        let mut stmt = self.sql(self.conn.prepare_cached(&format!(
            "SELECT id, sensor_id, command, queued_ts, acked_ts FROM commands
             WHERE {filter} ORDER BY id"
        )))?;
        let rows = self.sql(stmt.query_map(params![arg], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, u32>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, Option<i64>>(4)?,
            ))
        }))?;
        let mut commands = Vec::new();
        for row in rows {
            let (id, sensor_id, text, queued_ts, acked_ts) = self.sql(row)?;
            // A row this build cannot read (written by hand) is skipped, not fatal.
            let Some(command) = parse_command(&text) else {
                continue;
            };
            commands.push(StoredCommand {
                command_id: id as u64,
                sensor_id,
                command,
                queued_ts,
                acked_ts,
            });
        }
        Ok(commands)
    }

    fn check_version(&self) -> Result<i64, StoreError> {
        let found: i64 = self.sql(
            self.conn
                .pragma_query_value(None, "user_version", |row| row.get(0)),
        )?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: self.path.clone(),
                found,
            });
        }
        Ok(found)
    }

    fn sql<T>(&self, result: rusqlite::Result<T>) -> Result<T, StoreError> {
        result.map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }
}

/// What [`Store::export`] writes.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportQuery {
    /// Only this sensor; `None`: all.
    pub sensor: Option<u32>,
    /// Only rows whose corrected timestamp is at or after this (µs since the epoch).
    pub since_us: Option<i64>,
    /// Alerts instead of readings.
    pub alerts: bool,
    /// CSV or JSON lines.
    pub format: ExportFormat,
}

/// An output format of [`Store::export`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// [`Store::export`] failed.
#[derive(Debug, Error)]
pub enum ExportError {
    /// Reading the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the output failed (a closed pipe, a full disk).
    #[error("could not write the output: {0}")]
    Output(#[from] std::io::Error),
    /// A row could not be turned into JSON.
    #[error("could not encode a row as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A command as stored: `set-rate <millihertz>` or `set-sleep-interval <milliseconds>`.
fn command_text(command: Command) -> String {
    match command {
        Command::SetRate { rate_millihz } => format!("set-rate {rate_millihz}"),
        Command::SetSleepInterval { interval_ms } => format!("set-sleep-interval {interval_ms}"),
    }
}

fn parse_command(text: &str) -> Option<Command> {
    let (name, value) = text.split_once(' ')?;
    match name {
        "set-rate" => Some(Command::SetRate {
            rate_millihz: value.parse().ok()?,
        }),
        "set-sleep-interval" => Some(Command::SetSleepInterval {
            interval_ms: value.parse().ok()?,
        }),
        _ => None,
    }
}

fn reading_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ReadingRow> {
    Ok(ReadingRow {
        sensor_id: row.get(0)?,
        seq: row.get::<_, i64>(1)? as u64,
        device_ts: row.get(2)?,
        corrected_ts: row.get(3)?,
        received_ts: row.get(4)?,
        value: row.get::<_, f64>(5)? as f32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sensor-sim-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn reading(sensor_id: u32, seq: u64) -> ReadingRow {
        ReadingRow {
            sensor_id,
            seq,
            device_ts: 1,
            corrected_ts: 2,
            received_ts: 3,
            value: 4.5,
        }
    }

    #[test]
    fn duplicates_are_counted_not_stored() {
        let dir = temp_dir("dups");
        let mut store = Store::open(&dir).unwrap();
        let w = store.write(&[reading(1, 0), reading(1, 1)], &[]).unwrap();
        assert_eq!(w.readings[&1], (2, 0));
        let w = store.write(&[reading(1, 1), reading(1, 2)], &[]).unwrap();
        assert_eq!(w.readings[&1], (1, 1));
        assert_eq!(store.totals().unwrap(), (3, 0));
        assert_eq!(store.max_sensor_id().unwrap(), Some(1));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn duplicates_are_counted_across_many_rows() {
        let dir = temp_dir("dups-many");
        let mut store = Store::open(&dir).unwrap();
        // Two sensors interleaved, with a repeat inside a batch.
        let first: Vec<ReadingRow> = (0..150).map(|i| reading(i % 2, u64::from(i / 2))).collect();
        let w = store.write(&first, &[]).unwrap();
        assert_eq!((w.readings[&0], w.readings[&1]), ((75, 0), (75, 0)));
        let mut again: Vec<ReadingRow> = (100..250)
            .map(|i| reading(i % 2, u64::from(i / 2)))
            .collect();
        again.push(reading(0, 124));
        let w = store.write(&again, &[]).unwrap();
        assert_eq!((w.readings[&0], w.readings[&1]), ((50, 26), (50, 25)));
        assert_eq!(store.totals().unwrap(), (250, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = temp_dir("newer");
        drop(Store::open(&dir).unwrap());
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(
            Store::open(&dir),
            Err(StoreError::NewerSchema { found, .. }) if found == SCHEMA_VERSION + 1
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn commands_wait_until_acknowledged() {
        let dir = temp_dir("commands");
        let mut store = Store::open(&dir).unwrap();
        assert!(matches!(
            Store::open_existing(&temp_dir("commands-missing")),
            Err(StoreError::Missing { .. })
        ));
        let rate = Command::SetRate { rate_millihz: 500 };
        let sleep = Command::SetSleepInterval { interval_ms: 9000 };
        let a = store.queue_command(3, rate, 10).unwrap();
        let b = store.queue_command(4, sleep, 11).unwrap();
        let pending = store.pending_commands(0).unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!((pending[0].command_id, pending[0].command), (a, rate));
        assert_eq!((pending[1].sensor_id, pending[1].command), (4, sleep));
        assert_eq!(store.pending_commands(a).unwrap().len(), 1);
        store.acknowledge_commands(&[(a, 20)]).unwrap();
        drop(store);
        let store = Store::open_existing(&dir).unwrap();
        assert_eq!(store.pending_commands(0).unwrap()[0].command_id, b);
        assert_eq!(store.command(a).unwrap().unwrap().acked_ts, Some(20));
        assert_eq!(store.commands(Some(4)).unwrap().len(), 1);
        assert_eq!(store.commands(None).unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_version_1_database_is_upgraded() {
        let dir = temp_dir("v1");
        drop(Store::open(&dir).unwrap());
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        conn.execute_batch("DROP TABLE commands; PRAGMA user_version = 1;")
            .unwrap();
        drop(conn);
        let store = Store::open(&dir).unwrap();
        assert!(store.pending_commands(0).unwrap().is_empty());
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_version_2_database_is_rekeyed_and_keeps_its_readings() {
        let dir = temp_dir("v2");
        std::fs::create_dir_all(&dir).unwrap();
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE readings (sensor_id INTEGER NOT NULL, seq INTEGER NOT NULL,
                 device_ts INTEGER NOT NULL, corrected_ts INTEGER NOT NULL,
                 received_ts INTEGER NOT NULL, value REAL NOT NULL, UNIQUE (sensor_id, seq));
             INSERT INTO readings VALUES (7, 0, 1, 2, 3, 4.5), (7, 1, 1, 2, 3, 4.5);
             PRAGMA user_version = 2;",
        )
        .unwrap();
        drop(conn);
        let mut store = Store::open(&dir).unwrap();
        let written = store.write(&[reading(7, 1), reading(7, 2)], &[]).unwrap();
        assert_eq!(
            written.readings[&7],
            (1, 1),
            "the old rows still deduplicate"
        );
        let mut seqs = Vec::new();
        store.for_each_reading(7, 7, |r| seqs.push(r.seq)).unwrap();
        seqs.sort_unstable();
        assert_eq!(seqs, [0, 1, 2]);
        let index: String = store
            .conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'readings'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!(index.contains("UNIQUE (seq, sensor_id)"), "{index}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn export_writes_csv_and_jsonl() {
        let dir = temp_dir("export");
        let mut store = Store::open(&dir).unwrap();
        store.write(&[reading(7, 0), reading(8, 0)], &[]).unwrap();
        let mut out = Vec::new();
        let query = ExportQuery {
            sensor: Some(7),
            since_us: None,
            alerts: false,
            format: ExportFormat::Csv,
        };
        assert_eq!(store.export(&query, &mut out).unwrap(), 1);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "sensor_id,seq,device_ts,corrected_ts,received_ts,value\n7,0,1,2,3,4.5\n"
        );
        let mut out = Vec::new();
        let query = ExportQuery {
            format: ExportFormat::Jsonl,
            sensor: None,
            ..query
        };
        assert_eq!(store.export(&query, &mut out).unwrap(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
