"""The guests workload (seed 004): events with promoters' links, a phone check, registration and
login as jobs, entry passes as QR codes and the door's check-in. Loaded by naming `guests.jobs`
in TAREFA_JOB_MODULES."""
