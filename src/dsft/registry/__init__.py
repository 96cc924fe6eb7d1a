"""The registry: datasets, jobs and model versions in one database (SQLite in DSFT_HOME, or
PostgreSQL by URL), so several workers on several machines share one queue and one lineage.

db       engine, sessions, migrations (Alembic)
schema   the tables (SQLAlchemy 2 declarative)
store    datasets, model versions (immutable), aliases (movable, logged), diffs
jobs     the queue: submit, claim atomically, heartbeat, re-queue the stale, events, cancel
worker   claims jobs and runs each in a child process
tasks    what a job does (prepare, train, eval, pipeline, retrain), run inside that child
"""
