"""Adapters: the only modules that import boto3 (and, later, redis)."""
