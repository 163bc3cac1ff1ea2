"""The payments workload (seed 000): charges, PIX with verification, refunds, renewals and the
gateway's webhooks as jobs. Loaded by naming `payments.jobs` in TAREFA_JOB_MODULES."""
