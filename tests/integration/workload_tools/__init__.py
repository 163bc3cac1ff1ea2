"""A workload the integration tests load through JobModules, as a user's own would be."""

from tests.integration.workload_tools import jobs as jobs
