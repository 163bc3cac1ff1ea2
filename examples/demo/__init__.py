"""The example workload: one job type, `demo.greet`, that shows every part of a job author's
toolkit. Loaded by naming it in TAREFA_JOB_MODULES (the template's JobModules parameter)."""

from demo import jobs as jobs
