"""The messaging workload (seeds 003, 002, 001): WhatsApp sessions, outgoing and incoming
messages and their statuses as jobs, over the Cloud API or Evolution API. Loaded by naming
`messaging.jobs` in TAREFA_JOB_MODULES."""
