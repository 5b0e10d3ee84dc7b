"""The dead-letter queue: tasks that failed for good, recorded (`record`), replayed (`replay`)
and shown to operators (`cli`, behind `demeter dlq`)."""
