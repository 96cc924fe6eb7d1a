"""The registry: datasets, jobs and model versions in one database (SQLite in DSFT_HOME, or
PostgreSQL by URL), so several workers on several machines share one queue and one lineage.

db       engine, sessions, migrations (Alembic)
schema   the tables (SQLAlchemy 2 declarative)
store    datasets, model versions (immutable), aliases (movable, logged), diffs
jobs     the queue: submit, claim atomically, heartbeat, re-queue the stale, events, cancel
worker   claims jobs and runs each in a child process; calls the schedules on every poll
child    runs one job's task in its own process (cancel, events, exit codes)
kinds    the table of job kinds (name -> task) and schedules: the only module that knows the workflows
tasks    the steps a job runs (prepare, train, eval), inside that child
pipeline, continuous   workflows built from those steps (one job kind each)
rollout  deployments (canary, rollback)
abtest   A/B tests (assignment, counters, results); abstats: the decision's statistics
"""
