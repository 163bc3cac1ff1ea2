"""The chaos run's workload, loaded through JobModules as a user's own module would be."""

from tests.integration.chaos_workload import jobs as jobs
