"""The store's clock in SQL, for statements that read it themselves."""

# Seconds since the epoch, read by the statement itself (one round trip less
# than Store.now(), which is the same clock: the machine's for an SQLite
# file, the server's on PostgreSQL).
EPOCH_NOW = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "EXTRACT(EPOCH FROM clock_timestamp())::float8",
}
