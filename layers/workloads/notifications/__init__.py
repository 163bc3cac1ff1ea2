"""The e-mail notifications workload (seed 001's email queue): `POST /notifications/email` stores
a notification and enqueues `notifications.email.send`, which sends it through Amazon SES or
Resend exactly once in effect. Loaded by naming `notifications.jobs` in TAREFA_JOB_MODULES."""
