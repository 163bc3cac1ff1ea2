"""A workload the sensitive-field tests load through JobModules, as a user's own would be."""

from tests.integration.sensitive_workload import jobs as jobs
