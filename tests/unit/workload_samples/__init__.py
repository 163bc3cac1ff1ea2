"""Small workload modules the unit tests load through TAREFA_JOB_MODULES-style loading."""
