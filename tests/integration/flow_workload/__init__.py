"""The flow-control tests' workload, loaded through JobModules as a user's own module would be."""

from tests.integration.flow_workload import jobs as jobs
